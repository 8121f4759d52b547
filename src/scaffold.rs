//! `takehome new-task`: a task scaffolded from one CSV table, ready for `check`.
//!
//! Data cleaning: the table is the clean truth; a dirty copy is made of it (deterministically:
//! text in other case or padded with spaces, decimals written with a comma, a few rows twice), the
//! rows split in halves by a hash of their key (`public/raw.csv` and `public/clean.csv`;
//! `hidden/input/raw.csv` and `hidden/clean.csv`), the scale's zero where passing the dirty table
//! through gets, the starter passes it through. Model training, below.
//!
//! Writes `datasets/<id>/` (a deterministic public/hidden split: a row is hidden when a hash of
//! its id says so, whatever the order of the rows; `public/train.csv` with the target,
//! `hidden/features/test.csv` without it, `hidden/labels.csv` with the id and the target, and
//! `MANIFEST.sha256`) and `tasks/<id>/` (task.yaml with a metric and a scale drawn from the data,
//! a placeholder brief, a starter that predicts the most common label or the mean, and a
//! `baseline` fixture that proves such a starter earns nothing). The author then edits the brief,
//! the starter and the scale, and adds a reference solution.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::grading::records::{self, Field, Sink, Stop, Want};

/// One row in this many is hidden (20 %).
const HIDDEN_ONE_IN: u64 = 5;

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub kind: crate::task::TaskKind,
    pub from_csv: PathBuf,
    /// The column to predict (model training; unused for data cleaning).
    pub target: String,
    /// The id column; `None`: a column `id` is added (the row's number).
    pub id_column: Option<String>,
    /// The project folder (holds tasks/, datasets/, runner-images/).
    pub root: PathBuf,
}

/// Why a task could not be scaffolded: each says the file or folder and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(transparent)]
    Id(#[from] crate::task::InvalidTaskId),
    #[error("{} exists already; choose another id or remove it", .0.display())]
    Exists(PathBuf),
    #[error("{}: no runner-images/python (run from the project folder or pass --root)", .0.display())]
    NotAProject(PathBuf),
    /// The table cannot make a task as it is (a column missing, too few rows, a repeated id...).
    #[error("{}: {message}", path.display())]
    Table { path: PathBuf, message: String },
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    /// The dirty table could not be graded against the clean one to set the scale's zero.
    #[error("grading the dirty table against the clean one, to set the scale")]
    Scale(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn table(path: &Path, message: impl Into<String>) -> ScaffoldError {
    ScaffoldError::Table { path: path.to_path_buf(), message: message.into() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |e| ScaffoldError::Io(path.to_path_buf(), e)
}

/// What was made, for the author.
#[derive(Debug, Clone)]
pub struct Made {
    pub task_dir: PathBuf,
    pub dataset_dir: PathBuf,
    pub public_rows: usize,
    pub hidden_rows: usize,
    pub metric: &'static str,
}

pub fn new_task(request: &NewTask) -> Result<Made, ScaffoldError> {
    let id = crate::task::TaskId::parse(&request.id)?;
    let task_dir = crate::task::Catalog::new(&request.root).dir(&id);
    let dataset_dir = request.root.join("datasets").join(id.as_str());
    for dir in [&task_dir, &dataset_dir] {
        if dir.exists() {
            return Err(ScaffoldError::Exists(dir.to_path_buf()));
        }
    }
    if !request.root.join("runner-images/python").is_dir() {
        return Err(ScaffoldError::NotAProject(request.root.clone()));
    }
    let source = &request.from_csv;
    let header = records::header(source).map_err(|message| table(source, message))?;
    if request.kind == crate::task::TaskKind::DataCleaning {
        return new_cleaning_task(request, &header, &task_dir, &dataset_dir);
    }
    if !header.contains(&request.target) {
        return Err(table(source, format!("no column {:?} to predict (its columns: {})", request.target, header.join(", "))));
    }
    let Keyed { key: id_name, columns, rows } = keyed_rows(request, &header, "id")?;
    let target_at = columns.iter().position(|n| n == &request.target).expect("checked");
    let id_at = columns.iter().position(|n| n == &id_name).expect("the id column");
    if rows.iter().any(|row| row[target_at].trim().is_empty()) {
        return Err(table(source, format!("rows without a {:?}: drop or fill them first", request.target)));
    }

    let (test, train) = split(id.as_str(), &rows, id_at, HIDDEN_ONE_IN, source)?;

    // What to predict: numbers with many values are a regression, anything else labels.
    let values: Vec<&str> = rows.iter().map(|row| row[target_at].trim()).collect();
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite())).collect();
    let distinct: BTreeMap<&str, usize> = values.iter().fold(BTreeMap::new(), |mut counts, v| {
        *counts.entry(*v).or_default() += 1;
        counts
    });
    let regression = numbers.is_some() && distinct.len() > 20;
    let truth_values: Vec<&str> = test.iter().map(|row| row[target_at].trim()).collect();
    let (metric, scale, starter_guess) = if regression {
        // Zero points for predicting the training mean; full points for a perfect prediction.
        let train_numbers: Vec<f64> = train.iter().map(|row| row[target_at].trim().parse::<f64>().expect("numbers")).collect();
        let mean = train_numbers.iter().sum::<f64>() / train_numbers.len() as f64;
        let rmse = (truth_values.iter().map(|v| (v.parse::<f64>().expect("numbers") - mean).powi(2)).sum::<f64>() / truth_values.len() as f64).sqrt();
        ("rmse", format!("{{ zero_at: {}, full_at: 0.0 }}", round_up(rmse)), "mean")
    } else {
        // Zero points for predicting the most common training label.
        let mut train_counts: BTreeMap<&str, usize> = BTreeMap::new();
        for row in &train {
            *train_counts.entry(row[target_at].trim()).or_default() += 1;
        }
        let most_common = train_counts.iter().max_by_key(|(label, n)| (**n, std::cmp::Reverse(**label))).map(|(l, _)| *l).unwrap_or("");
        let baseline = truth_values.iter().filter(|v| **v == most_common).count() as f64 / truth_values.len() as f64;
        ("accuracy", format!("{{ zero_at: {}, full_at: 1.0 }}", round_up(baseline).min(0.99)), "mode")
    };

    // The data set.
    let features: Vec<usize> = (0..columns.len()).filter(|&i| i != target_at).collect();
    let write = |path: PathBuf, header: Vec<&str>, lines: Vec<Vec<&str>>| -> Result<(), ScaffoldError> {
        std::fs::create_dir_all(path.parent().expect("a parent")).map_err(io(&path))?;
        let mut text = csv_line(&header);
        for line in lines {
            text.push_str(&csv_line(&line));
        }
        std::fs::write(&path, text).map_err(io(&path))
    };
    let all: Vec<&str> = columns.iter().map(String::as_str).collect();
    write(dataset_dir.join("public/train.csv"), all.clone(), train.iter().map(|row| row.iter().map(String::as_str).collect()).collect())?;
    write(
        dataset_dir.join("hidden/features/test.csv"),
        features.iter().map(|&i| columns[i].as_str()).collect(),
        test.iter().map(|row| features.iter().map(|&i| row[i].as_str()).collect()).collect(),
    )?;
    write(
        dataset_dir.join("hidden/labels.csv"),
        vec![id_name.as_str(), request.target.as_str()],
        test.iter().map(|row| vec![row[id_at].as_str(), row[target_at].trim()]).collect(),
    )?;
    write_manifest(&dataset_dir)?;

    // The task.
    let target = &request.target;
    let title = format!("Predict {target} from {}", source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let task_yaml = format!(
        "id: {id}\n\
         title: {title:?}\n\
         kind: model-training\n\
         time_box: 4h\n\
         image: python\n\
         brief: brief.md\n\
         starter: starter\n\
         dataset: {id}\n\
         steps:\n  - name: train\n    run: python train.py\n    inputs: [public]\n    timeout: 5m\n    memory: 2GiB\n\
         \x20 - name: predict\n    run: python predict.py\n    inputs: [hidden/features]\n    timeout: 2m\n    memory: 1GiB\n\
         grading:\n  output: predictions.csv\n  truth: hidden/labels.csv\n  id: {id_name:?}\n  target: {target:?}\n  metric: {metric}\n\
         \x20 # Drawn from the data: zero points for the starter's guess ({starter_guess} of the training {target}).\n\
         \x20 scale: {scale}\n\
         \x20 weights: {{ accuracy: 70, code_quality: 15, runtime: 15 }}\n\
         runtime: {{ full_under: 60s }}\n\
         storage: {{ workspace: 512MiB, output: 256MiB }}\n"
    );
    let brief = format!(
        "# {title}\n\n\
         TODO (author): say what the data is, what a good model is worth to the team, and what you\n\
         will look at beyond the score.\n\n\
         ## What you get\n\
         - `data/public/train.csv`: {n_train} rows with the column `{target}` to learn.\n\
         - Hidden: `test.csv` with the same columns but `{target}`, read by `predict.py` at\n  `/data/features/test.csv` when your push is graded.\n\n\
         ## What to hand in\n\
         `train.py` (reads `/data/public/train.csv`, saves what it learns under `/workspace`) and\n\
         `predict.py` (reads `/data/features/test.csv` and `/workspace`, writes\n\
         `/output/predictions.csv` with the columns `{id_name}` and `{target}`). The graded metric is\n\
         `{metric}`. Add a short `NOTES.md`: your approach, the trade-offs, what you would do with more time.\n\n\
         ## Run it locally\n\
         The test features are hidden, so try `predict.py` on a slice of the training data:\n\n\
         ```sh\n\
         mkdir -p work out features && python - <<'EOF'\n\
         import pandas as pd\n\
         t = pd.read_csv('data/public/train.csv'); t.drop(columns=['{target}']).tail(200).to_csv('features/test.csv', index=False)\n\
         EOF\n\
         DATA=data WORKSPACE=work python train.py && DATA=. WORKSPACE=work OUTPUT=out python predict.py\n\
         ```\n",
        n_train = train.len(),
    );
    let train_py = format!(
        "\"\"\"Learn {target} from /data/public/train.csv and save the model under /workspace.\"\"\"\n\n\
         import os\nimport pickle\n\nimport pandas as pd\n\n\
         DATA = os.environ.get(\"DATA\", \"/data\")\nWORKSPACE = os.environ.get(\"WORKSPACE\", \"/workspace\")\n\n\n\
         def main() -> None:\n    train = pd.read_csv(f\"{{DATA}}/public/train.csv\")\n\
         \x20   # TODO: build features and fit a real model. This one only remembers one value.\n\
         \x20   guess = {guess}\n\
         \x20   with open(f\"{{WORKSPACE}}/model.pkl\", \"wb\") as handle:\n        pickle.dump(guess, handle)\n\n\n\
         if __name__ == \"__main__\":\n    main()\n",
        guess = if regression { format!("float(train[{target:?}].mean())") } else { format!("train[{target:?}].mode()[0]") },
    );
    let predict_py = format!(
        "\"\"\"Predict {target} for each row of /data/features/test.csv into /output/predictions.csv.\"\"\"\n\n\
         import os\nimport pickle\n\nimport pandas as pd\n\n\
         DATA = os.environ.get(\"DATA\", \"/data\")\nWORKSPACE = os.environ.get(\"WORKSPACE\", \"/workspace\")\nOUTPUT = os.environ.get(\"OUTPUT\", \"/output\")\n\n\n\
         def main() -> None:\n    test = pd.read_csv(f\"{{DATA}}/features/test.csv\")\n\
         \x20   with open(f\"{{WORKSPACE}}/model.pkl\", \"rb\") as handle:\n        guess = pickle.load(handle)\n\
         \x20   predictions = pd.DataFrame({{{id_name:?}: test[{id_name:?}], {target:?}: guess}})\n\
         \x20   predictions.to_csv(f\"{{OUTPUT}}/predictions.csv\", index=False)\n\n\n\
         if __name__ == \"__main__\":\n    main()\n"
    );
    let files: Vec<(PathBuf, String)> = vec![
        (task_dir.join("task.yaml"), task_yaml),
        (task_dir.join("brief.md"), brief),
        (task_dir.join("starter/train.py"), train_py.clone()),
        (task_dir.join("starter/predict.py"), predict_py.clone()),
        (task_dir.join("fixtures/baseline/train.py"), train_py),
        (task_dir.join("fixtures/baseline/predict.py"), predict_py),
        (
            task_dir.join("fixtures/baseline/expect.yaml"),
            "# The starter's guess: graded, and worth nothing (the scale starts there).\n\
             status: graded\nsteps: { train: ok, predict: ok }\naccuracy: [0, 5]\nscore: [0, 5]\n"
                .to_string(),
        ),
    ];
    write_files(files)?;
    Ok(Made { task_dir, dataset_dir, public_rows: train.len(), hidden_rows: test.len(), metric })
}

/// A table as text, with its key column.
struct Keyed {
    key: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// The rows of a table as text, with its key column (the table's own, or `key_default` added,
/// numbering the rows).
fn keyed_rows(request: &NewTask, header: &[String], key_default: &str) -> Result<Keyed, ScaffoldError> {
    let source = &request.from_csv;
    let wanted: Vec<(&str, Want)> = header.iter().map(|name| (name.as_str(), Want::Label)).collect();
    let parts = records::read(source, &wanted, u64::MAX, Rows::default).map_err(|message| table(source, message))?;
    let rows: Vec<Vec<String>> = parts.into_iter().flat_map(|(part, _)| part.0).collect();
    if rows.len() < 20 {
        return Err(table(source, format!("{} rows; a task needs at least 20 to split", rows.len())));
    }
    match &request.id_column {
        Some(column) => {
            let at = header
                .iter()
                .position(|n| n == column)
                .ok_or_else(|| table(source, format!("no id column {column:?} (its columns: {})", header.join(", "))))?;
            let mut seen = std::collections::HashSet::new();
            for (number, row) in rows.iter().enumerate() {
                if row[at].trim().is_empty() || !seen.insert(row[at].clone()) {
                    return Err(table(source, format!("row {}: the id {:?} is empty or repeated; ids must be unique", number + 2, row[at])));
                }
            }
            Ok(Keyed { key: column.clone(), columns: header.to_vec(), rows })
        }
        None => {
            if header.iter().any(|n| n == key_default) {
                return Err(table(source, format!("has a column {key_default:?}; name it with --id")));
            }
            let columns = std::iter::once(key_default.to_string()).chain(header.iter().cloned()).collect();
            let rows = rows.into_iter().enumerate().map(|(n, row)| std::iter::once((n + 1).to_string()).chain(row).collect()).collect();
            Ok(Keyed { key: key_default.to_string(), columns, rows })
        }
    }
}

/// A number from 0 to 999 drawn from the task, a row's key and a salt: the same every run.
fn draw(task: &str, key: &str, salt: &str) -> u64 {
    let digest = Sha256::digest(format!("takehome-mess\0{task}\0{key}\0{salt}").as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("eight bytes")) % 1000
}

/// A cell as a careless export might have written it (a third of them), or as it is.
fn mess_cell(task: &str, key: &str, column: &str, value: &str) -> String {
    let roll = draw(task, key, column);
    if roll >= 333 || value.trim().is_empty() {
        return value.to_string();
    }
    if value.parse::<f64>().is_ok() {
        // Decimals with a comma; whole numbers are left alone (they would read back the same).
        return if value.contains('.') { value.replace('.', ",") } else { value.to_string() };
    }
    if roll % 2 == 0 {
        value.to_uppercase()
    } else {
        format!("  {value} ")
    }
}

fn new_cleaning_task(request: &NewTask, header: &[String], task_dir: &Path, dataset_dir: &Path) -> Result<Made, ScaffoldError> {
    let id = &request.id;
    let Keyed { key, columns, rows } = keyed_rows(request, header, "row_id")?;
    let key_at = columns.iter().position(|n| n == &key).expect("the key column");
    let (test, train) = split(id, &rows, key_at, 2, &request.from_csv)?;
    let mess = |rows: &[&Vec<String>]| -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for row in rows {
            let dirty: Vec<String> = row
                .iter()
                .zip(&columns)
                .map(|(value, column)| if column == &key { value.clone() } else { mess_cell(id, &row[key_at], column, value) })
                .collect();
            // One row in thirty appears twice.
            let twice = draw(id, &row[key_at], "\0twice") < 33;
            out.push(dirty.clone());
            if twice {
                out.push(dirty);
            }
        }
        out
    };
    let write = |path: PathBuf, lines: Vec<Vec<String>>| -> Result<(), ScaffoldError> {
        std::fs::create_dir_all(path.parent().expect("a parent")).map_err(io(&path))?;
        let mut text = csv_line(&columns.iter().map(String::as_str).collect::<Vec<_>>());
        for line in &lines {
            text.push_str(&csv_line(&line.iter().map(String::as_str).collect::<Vec<_>>()));
        }
        std::fs::write(&path, text).map_err(io(&path))
    };
    let clean = |rows: &[&Vec<String>]| rows.iter().map(|row| (*row).clone()).collect::<Vec<_>>();
    write(dataset_dir.join("public/raw.csv"), mess(&train))?;
    write(dataset_dir.join("public/clean.csv"), clean(&train))?;
    write(dataset_dir.join("hidden/input/raw.csv"), mess(&test))?;
    write(dataset_dir.join("hidden/clean.csv"), clean(&test))?;
    write_manifest(dataset_dir)?;

    // Zero points for handing the dirty table back: graded as the starter's output would be.
    let spec = crate::task::GradingSpec {
        output: "clean.csv".into(),
        truth: "hidden/clean.csv".into(),
        id: Some(key.clone()),
        target: None,
        positive: None,
        classes: None,
        columns: Vec::new(),
        metric: crate::task::Metric::CellAccuracy,
        scale: crate::task::Scale { zero_at: 0.0, full_at: 1.0 },
        weight: 1.0,
        tolerance: crate::task::DEFAULT_TOLERANCE,
        missing: crate::task::GradingSpec::default_missing(),
        slices: Vec::new(),
    };
    let passed_through = crate::grading::grade_output(&spec, &dataset_dir.join("hidden/input/raw.csv"), &dataset_dir.join("hidden/clean.csv"))
        .map_err(|e| ScaffoldError::Scale(Box::new(e)))?
        .value
        .ok_or_else(|| ScaffoldError::Scale("the output has no value".into()))?;
    let zero_at = round_up(passed_through).min(0.99);
    let title = format!("Clean {}", request.from_csv.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let task_yaml = format!(
        "id: {id}\ntitle: {title:?}\nkind: data-cleaning\ntime_box: 2h\nimage: python\nbrief: brief.md\nstarter: starter\ndataset: {id}\n\
         steps:\n  - name: clean\n    run: python clean.py\n    inputs: [hidden/input]\n    timeout: 2m\n    memory: 1GiB\n\
         grading:\n  output: clean.csv\n  truth: hidden/clean.csv\n  key: {key:?}\n  metric: cell_accuracy\n  tolerance: 0.000001\n\
         \x20 # Drawn from the data: zero points for handing the dirty table back ({passed_through:.3} of the cells).\n\
         \x20 scale: {{ zero_at: {zero_at}, full_at: 1.0 }}\n\
         \x20 weights: {{ accuracy: 70, code_quality: 15, runtime: 15 }}\n\
         runtime: {{ full_under: 60s }}\nstorage: {{ workspace: 256MiB, output: 256MiB }}\n"
    );
    let brief = format!(
        "# {title}\n\nTODO (author): say where the table comes from and what a clean table is for.\n\n\
         ## What you get\n\
         - `data/public/raw.csv`: {n} rows as they were exported, and `data/public/clean.csv`: the same rows cleaned.\n\
         - Hidden: another `raw.csv` like it, read by `clean.py` at `/data/input/raw.csv` when your push is graded.\n\n\
         ## What to hand in\n\
         `clean.py`, writing `/output/clean.csv` with the same columns, one row per `{key}`. It is graded cell by cell\n\
         against the hidden clean table. Add a short `NOTES.md`: your approach, the trade-offs, what you would do with more time.\n\n\
         ## Run it locally\n\
         `mkdir -p input out && cp data/public/raw.csv input/ && DATA=. OUTPUT=out python clean.py`, then compare\n\
         `out/clean.csv` with `data/public/clean.csv`.\n",
        n = train.len(),
    );
    let clean_py = "\"\"\"Clean /data/input/raw.csv into /output/clean.csv.\"\"\"\n\n\
         import os\n\nimport pandas as pd\n\n\
         DATA = os.environ.get(\"DATA\", \"/data\")\nOUTPUT = os.environ.get(\"OUTPUT\", \"/output\")\n\n\n\
         def main() -> None:\n    raw = pd.read_csv(f\"{DATA}/input/raw.csv\", dtype=str, keep_default_na=False)\n\
         \x20   # TODO: clean every column. This hands the table back as it came.\n\
         \x20   raw.to_csv(f\"{OUTPUT}/clean.csv\", index=False)\n\n\n\
         if __name__ == \"__main__\":\n    main()\n"
        .to_string();
    let files: Vec<(PathBuf, String)> = vec![
        (task_dir.join("task.yaml"), task_yaml),
        (task_dir.join("brief.md"), brief),
        (task_dir.join("starter/clean.py"), clean_py.clone()),
        (task_dir.join("fixtures/baseline/clean.py"), clean_py),
        (
            task_dir.join("fixtures/baseline/expect.yaml"),
            "# The dirty table handed back: graded, and worth nothing (the scale starts there).\n\
             status: graded\nsteps: { clean: ok }\naccuracy: [0, 5]\nscore: [0, 5]\n"
                .to_string(),
        ),
    ];
    write_files(files)?;
    Ok(Made {
        task_dir: task_dir.to_path_buf(),
        dataset_dir: dataset_dir.to_path_buf(),
        public_rows: train.len(),
        hidden_rows: test.len(),
        metric: "cell_accuracy",
    })
}

/// Rows hidden and public: a row is hidden when a hash of the task and its key says so (one in
/// `one_in`), whatever the order of the rows. Both sides must have rows.
fn split<'r>(task: &str, rows: &'r [Vec<String>], key_at: usize, one_in: u64, source: &Path) -> Result<Split<'r>, ScaffoldError> {
    let hidden = |row: &Vec<String>| {
        let digest = Sha256::digest(format!("takehome-split\0{task}\0{}", row[key_at]).as_bytes());
        u64::from_be_bytes(digest[..8].try_into().expect("eight bytes")) % one_in == 0
    };
    let (test, train): Split<'r> = rows.iter().partition(|row| hidden(row));
    if test.is_empty() || train.is_empty() {
        return Err(table(source, "the split left one side empty; add rows"));
    }
    Ok((test, train))
}

/// The hidden rows, then the public ones.
type Split<'r> = (Vec<&'r Vec<String>>, Vec<&'r Vec<String>>);

/// Writes each file, making its folder.
fn write_files(files: Vec<(PathBuf, String)>) -> Result<(), ScaffoldError> {
    for (path, text) in files {
        std::fs::create_dir_all(path.parent().expect("a parent")).map_err(io(&path))?;
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

/// Every row of a table as text.
#[derive(Default)]
struct Rows(Vec<Vec<String>>);

impl Sink for Rows {
    fn record(&mut self, _row: u64, fields: &[Field<'_>]) -> Result<(), Stop> {
        self.0.push(
            fields
                .iter()
                .map(|field| match field {
                    Field::Null => String::new(),
                    Field::Text(text) => text.to_string(),
                    Field::Int(i) => i.to_string(),
                    Field::Float(x) => x.to_string(),
                })
                .collect(),
        );
        Ok(())
    }
}

/// One CSV line, fields quoted where they need it.
fn csv_line(fields: &[&str]) -> String {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            let _ = write!(line, "\"{}\"", field.replace('"', "\"\""));
        } else {
            line.push_str(field);
        }
    }
    line.push('\n');
    line
}

/// A scale bound a little above `value`, written short (three decimals).
fn round_up(value: f64) -> f64 {
    (value * 1000.0).ceil() / 1000.0
}

/// `MANIFEST.sha256`: every file of the data set with its sha256, as `sha256sum` writes it.
fn write_manifest(dataset_dir: &Path) -> Result<(), ScaffoldError> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dataset_dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.into_path())
        .filter(|path| path.file_name().is_some_and(|n| n != "MANIFEST.sha256"))
        .collect();
    files.sort();
    let mut text = String::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(io(&file))?;
        let relative = file.strip_prefix(dataset_dir).expect("inside").to_string_lossy().into_owned();
        let _ = writeln!(text, "{}  {relative}", hex::encode(Sha256::digest(&bytes)));
    }
    let manifest = dataset_dir.join("MANIFEST.sha256");
    std::fs::write(&manifest, text).map_err(io(&manifest))
}
