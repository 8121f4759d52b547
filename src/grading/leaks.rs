//! Data checks for task authors (`takehome check`): hidden ids that also appear in public files,
//! and single features that give the hidden label away. Reads the author's data only.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::table::{self, column_names};
use super::{Offence, EXAMPLES};

/// Hidden ids (the truth's `id` column) found in a public file's column of the same name.
#[derive(Debug, Clone)]
pub struct SharedIds {
    pub file: PathBuf,
    pub shared: Offence,
}

fn text_set(path: &Path, column: &str) -> Result<Option<Vec<String>>, String> {
    let table = table::read_text(path)?;
    let Ok(values) = table.column(column) else { return Ok(None) };
    let values = values.as_materialized_series().str().map_err(|e| e.to_string())?;
    Ok(Some(values.iter().flatten().map(|v| v.trim().to_string()).collect()))
}

/// For each `public` table that has the id column, the hidden ids it contains.
pub fn shared_ids(truth: &Path, id: &str, public: &[PathBuf]) -> Result<Vec<SharedIds>, String> {
    let hidden: HashSet<String> = text_set(truth, id)?.ok_or_else(|| format!("{}: no column {id:?}", truth.display()))?.into_iter().collect();
    let mut out = Vec::new();
    for file in public {
        let Some(values) = text_set(file, id).map_err(|message| format!("{}: {message}", file.display()))? else { continue };
        let mut shared = Offence::new("hidden ids");
        for value in values.iter().filter(|v| hidden.contains(*v)) {
            shared.add(|| value.clone());
        }
        if shared.count > 0 {
            out.push(SharedIds { file: file.clone(), shared });
        }
    }
    Ok(out)
}

/// A feature whose value alone tells the hidden label.
#[derive(Debug, Clone)]
pub struct Giveaway {
    pub file: PathBuf,
    pub column: String,
    /// The share of hidden rows whose label is their value's majority label.
    pub purity: f64,
    pub n_values: usize,
}

/// Features of the hidden inputs that predict the hidden label suspiciously well: for every
/// column with fewer distinct values than half the rows (ids and continuous measurements are
/// left out: they would match trivially), the accuracy of "the majority label of this value".
/// Reported when it reaches `threshold` and beats always guessing the most common label.
pub fn label_giveaways(truth: &Path, id: &str, target: &str, inputs: &[PathBuf], threshold: f64) -> Result<Vec<Giveaway>, String> {
    let truth_table = table::read_text(truth)?;
    let column = |name: &str| -> Result<Vec<Option<String>>, String> {
        let values = truth_table.column(name).map_err(|_| format!("{}: no column {name:?}", truth.display()))?;
        Ok(values.as_materialized_series().str().map_err(|e| e.to_string())?.iter().map(|v| v.map(|v| v.trim().to_string())).collect())
    };
    let label_of: HashMap<String, String> = column(id)?.into_iter().zip(column(target)?).filter_map(|(k, v)| Some((k?, v.unwrap_or_default()))).collect();
    let mut label_counts: HashMap<&str, usize> = HashMap::new();
    for label in label_of.values() {
        *label_counts.entry(label.as_str()).or_default() += 1;
    }
    let baseline = label_counts.values().max().copied().unwrap_or(0) as f64 / label_of.len().max(1) as f64;
    let mut out = Vec::new();
    for file in inputs {
        let table = table::read_text(file).map_err(|message| format!("{}: {message}", file.display()))?;
        let Ok(ids) = table.column(id) else { continue };
        let ids: Vec<Option<&str>> = ids.as_materialized_series().str().map_err(|e| e.to_string())?.iter().collect();
        for name in column_names(&table).into_iter().filter(|n| n != id && n != target) {
            let values: Vec<Option<&str>> = table.column(&name).expect("listed").as_materialized_series().str().map_err(|e| e.to_string())?.iter().collect();
            let mut by_value: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
            let mut n_rows = 0;
            for (row_id, value) in ids.iter().zip(&values) {
                let Some(label) = row_id.and_then(|row_id| label_of.get(row_id.trim())) else { continue };
                *by_value.entry(value.unwrap_or("")).or_default().entry(label.as_str()).or_default() += 1;
                n_rows += 1;
            }
            if n_rows == 0 || by_value.len() * 2 > n_rows || by_value.len() < 2 {
                continue;
            }
            let majority: usize = by_value.values().map(|labels| labels.values().max().copied().unwrap_or(0)).sum();
            let purity = majority as f64 / n_rows as f64;
            if purity >= threshold && purity > baseline + 0.05 {
                out.push(Giveaway { file: file.clone(), column: name, purity, n_values: by_value.len() });
            }
        }
    }
    out.truncate(EXAMPLES * 4);
    Ok(out)
}
