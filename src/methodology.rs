//! Methodology findings: what a submission's own Python says about how its model was validated.
//! Read on the host with tree-sitter (never run), file by file, a notebook's code cells in order.
//! Each finding names its rule, file and line and says in one sentence why it matters. They are
//! signals for the assessor, not scores.
//!
//! The rules read calls: which constructor made a variable (`scaler = StandardScaler()`), which
//! method is called on it and with what (`scaler.fit_transform(X)`), where the train/validation
//! split is (`train_test_split`, `KFold`, `cross_val_score`, ...), which metric scores what. They
//! are heuristics of what such code looks like in practice; names are the evidence (`X_test`,
//! `y_train`), so a finding says "looks like", and the assessor reads the line.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Bytes of one file read, and of all files.
pub const MAX_FILE_BYTES: usize = 1 << 20;
pub const MAX_BYTES: usize = 8 << 20;
/// Findings kept per rule (the first ones, in file and line order).
const MAX_PER_RULE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A transformer fitted on every row before the train/validation split.
    PreprocessingBeforeSplit,
    /// A transformer or model fitted on the rows to predict.
    FitOnTest,
    /// A model fitted, and no rows held out anywhere.
    NoValidation,
    /// A random estimator or split with no seed.
    UnseededRandomness,
    /// The target column among the features.
    TargetAsFeature,
    /// Metrics computed on the training rows only.
    TrainOnlyEvaluation,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::PreprocessingBeforeSplit => "preprocessing-before-split",
            Rule::FitOnTest => "fit-on-test",
            Rule::NoValidation => "no-validation",
            Rule::UnseededRandomness => "unseeded-randomness",
            Rule::TargetAsFeature => "target-as-feature",
            Rule::TrainOnlyEvaluation => "train-only-evaluation",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    pub file: String,
    /// 1-based; in a notebook, the line within its cell.
    pub line: u64,
    /// In a notebook: the cell, counted from 1 over all its cells, markdown ones included (as
    /// the code view shows them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<u64>,
    pub message: String,
}

impl Finding {
    /// Where it is, as a reader finds it: `train.py:12`, `eda.ipynb, cell 4, line 2`.
    pub fn place(&self) -> String {
        place(&self.file, self.cell, self.line)
    }
}

/// A file and line, a notebook's with its cell.
pub fn place(file: &str, cell: Option<u64>, line: u64) -> String {
    match cell {
        Some(cell) => format!("{file}, cell {cell}, line {line}"),
        None => format!("{file}:{line}"),
    }
}

/// Notebooks' findings at their cell and the line within it (the rules read a notebook's code
/// cells joined in order).
pub(crate) fn in_cells<T>(items: &mut [T], files: &[(String, String)], at: impl Fn(&mut T) -> Option<(&str, &mut u64, &mut Option<u64>)>) {
    let mut starts: HashMap<String, Option<crate::environment::CellStarts>> = HashMap::new();
    for item in items.iter_mut() {
        let Some((file, line, cell)) = at(item) else { continue };
        if !file.ends_with(".ipynb") || cell.is_some() {
            continue;
        }
        let known = starts.entry(file.to_string()).or_insert_with(|| {
            let (_, text) = files.iter().find(|(path, _)| path == file)?;
            crate::environment::notebook_python_cells(text).map(|(_, starts)| starts)
        });
        if let Some((at_cell, within)) = known.as_ref().and_then(|s| s.locate(*line)) {
            *cell = Some(at_cell);
            *line = within;
        }
    }
}

/// What the rules need to know of the task.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The target columns the task grades (`sex`, `cut`).
    pub targets: Vec<String>,
    /// Files run by a step that predicts (reads the rows to predict): any fit there that is not
    /// on training rows fits on the test rows.
    pub prediction_files: Vec<String>,
}

impl Context {
    /// What a task tells the rules: the target columns it grades (the label of a prediction;
    /// none for a cleaned table, which has no single target), and the files of its predicting
    /// step (the last step, when there are several and it reads hidden rows: `predict.py`, and the
    /// notebook that may replace it).
    pub fn of(task: &crate::task::TaskSpec) -> Context {
        let targets = task.outputs.iter().filter(|o| o.metric.input() != crate::task::MetricInput::Table).filter_map(|o| o.target.clone()).collect();
        let prediction_files = match task.steps.as_slice() {
            [_, .., last] if last.reads_hidden() => {
                let mut files: Vec<String> = last.choices.iter().map(|c| c.when.clone()).collect();
                if files.is_empty() {
                    // `run: python predict.py`: the script it names.
                    files.extend(last.run.split_whitespace().find(|word| word.ends_with(".py")).map(str::to_string));
                }
                files
            }
            _ => Vec::new(),
        };
        Context { targets, prediction_files }
    }
}

/// Transformers: fitted, they learn statistics of the rows they see.
const TRANSFORMERS: &[&str] = &[
    "StandardScaler",
    "MinMaxScaler",
    "RobustScaler",
    "MaxAbsScaler",
    "Normalizer",
    "SimpleImputer",
    "KNNImputer",
    "IterativeImputer",
    "OneHotEncoder",
    "OrdinalEncoder",
    "TargetEncoder",
    "PCA",
    "TruncatedSVD",
    "KernelPCA",
    "TfidfVectorizer",
    "CountVectorizer",
    "PolynomialFeatures",
    "SelectKBest",
    "SelectPercentile",
    "VarianceThreshold",
    "PowerTransformer",
    "QuantileTransformer",
    "KBinsDiscretizer",
    "FeatureHasher",
    "RFE",
    "RFECV",
];

/// Estimators (models) whose fit is training.
pub(crate) const ESTIMATORS: &[&str] = &[
    "LogisticRegression",
    "LinearRegression",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "SGDClassifier",
    "SGDRegressor",
    "RidgeClassifier",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "AdaBoostClassifier",
    "AdaBoostRegressor",
    "BaggingClassifier",
    "BaggingRegressor",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "KNeighborsClassifier",
    "KNeighborsRegressor",
    "SVC",
    "SVR",
    "LinearSVC",
    "LinearSVR",
    "GaussianNB",
    "MultinomialNB",
    "BernoulliNB",
    "MLPClassifier",
    "MLPRegressor",
    "XGBClassifier",
    "XGBRegressor",
    "LGBMClassifier",
    "LGBMRegressor",
    "CatBoostClassifier",
    "CatBoostRegressor",
    "Pipeline",
    "make_pipeline",
    "VotingClassifier",
    "StackingClassifier",
    "VotingRegressor",
    "StackingRegressor",
    "GridSearchCV",
    "RandomizedSearchCV",
];

/// Constructors of what is random and takes a `random_state` (XGBoost, LightGBM and CatBoost
/// default to a fixed seed and are left out; so are estimators that only break ties).
const RANDOM: &[&str] = &[
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "AdaBoostClassifier",
    "AdaBoostRegressor",
    "BaggingClassifier",
    "BaggingRegressor",
    "MLPClassifier",
    "MLPRegressor",
    "SGDClassifier",
    "SGDRegressor",
    "KMeans",
    "train_test_split",
    "ShuffleSplit",
    "StratifiedShuffleSplit",
    "RandomizedSearchCV",
];

/// Calls that hold rows out.
pub(crate) const VALIDATION: &[&str] = &[
    "train_test_split",
    "cross_val_score",
    "cross_validate",
    "cross_val_predict",
    "KFold",
    "StratifiedKFold",
    "GroupKFold",
    "RepeatedKFold",
    "RepeatedStratifiedKFold",
    "TimeSeriesSplit",
    "ShuffleSplit",
    "StratifiedShuffleSplit",
    "LeaveOneOut",
    "GridSearchCV",
    "RandomizedSearchCV",
    "HalvingGridSearchCV",
    "HalvingRandomSearchCV",
    "LogisticRegressionCV",
    "RidgeCV",
    "LassoCV",
    "ElasticNetCV",
    "learning_curve",
    "validation_curve",
    "PredefinedSplit",
];

/// Calls that split rows (the split the preprocessing rule measures against).
const SPLITS: &[&str] = &["train_test_split", "cross_val_score", "cross_validate", "cross_val_predict", "GridSearchCV", "RandomizedSearchCV"];

/// Metrics: scoring functions (`accuracy_score(y, p)`).
const METRICS: &[&str] = &[
    "accuracy_score",
    "balanced_accuracy_score",
    "f1_score",
    "precision_score",
    "recall_score",
    "roc_auc_score",
    "log_loss",
    "mean_squared_error",
    "mean_absolute_error",
    "root_mean_squared_error",
    "r2_score",
    "classification_report",
    "confusion_matrix",
    "cohen_kappa_score",
    "matthews_corrcoef",
];

/// Calls that seed the global generators (which sklearn's `random_state=None` then follows).
const GLOBAL_SEEDS: &[&str] =
    &["np.random.seed", "numpy.random.seed", "random.seed", "torch.manual_seed", "tf.random.set_seed", "set_seed", "set_random_seed", "seed_everything"];

/// One call in the source.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub line: u64,
    /// The callee as written (`scaler.fit_transform`, `train_test_split`).
    pub callee: String,
    /// The last name of the callee (`fit_transform`, `train_test_split`).
    pub name: String,
    /// For a method call: the object's text (`scaler`, `StandardScaler()`).
    pub receiver: Option<String>,
    pub positional: Vec<String>,
    pub keywords: Vec<(String, String)>,
    /// The names this call's value is assigned to (`scaler = StandardScaler()`).
    pub assigned: Vec<String>,
}

/// A list of strings assigned to a name (`features = ["a", "b"]`, `X = df[["a", "b"]]`).
#[derive(Debug, Clone)]
struct Listed {
    line: u64,
    target: String,
    strings: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Source {
    pub calls: Vec<Call>,
    lists: Vec<Listed>,
    /// Columns made by assignment (`frame["price_per_carat"] = ...`): (line, frame, column).
    pub columns_made: Vec<(u64, String, String)>,
    /// R functions of the candidate's own (`name <- function(...)`): (line, name).
    pub functions: Vec<(u64, String)>,
}

/// The findings of a submission's Python files and notebooks (`(path, text)`; a notebook's text is
/// its JSON), in file and line order, at most [`MAX_PER_RULE`] per rule.
pub fn analyse(files: &[(String, String)], context: &Context) -> Vec<Finding> {
    let mut sources: Vec<(String, Source)> = Vec::new();
    let mut r_sources: Vec<(String, Source)> = Vec::new();
    let mut budget = MAX_BYTES;
    for (path, text) in files {
        if text.len() > MAX_FILE_BYTES || text.len() > budget {
            continue;
        }
        budget -= text.len();
        match read_any(path, text) {
            Some((Language::Python, source)) => sources.push((path.clone(), source)),
            Some((Language::R, source)) => r_sources.push((path.clone(), source)),
            None => {}
        }
    }
    let mut findings = Vec::new();
    let seeded =
        sources.iter().any(|(_, s)| s.calls.iter().any(|c| GLOBAL_SEEDS.iter().any(|seed| c.callee == *seed || c.callee.ends_with(&format!(".{seed}")))));
    let r_validates = r_sources.iter().any(|(_, s)| s.calls.iter().any(r_holds_out));
    // A metric on rows named as test rows (`roc_auc_score(y_test, ...)`) is a held-out score too:
    // labelled test rows came from somewhere other than the rows trained on.
    let scores_test_rows = |c: &Call| is_metric(c) && c.positional.iter().chain(c.keywords.iter().map(|(_, v)| v)).any(|a| mentions(a, "test"));
    let validates = r_validates || sources.iter().any(|(_, s)| s.calls.iter().any(|c| holds_out(c) || scores_test_rows(c)));
    r_rules(&r_sources, validates, &mut findings);
    let kinds: Vec<HashMap<String, Kind>> = sources.iter().map(|(_, source)| variable_kinds(source)).collect();
    for ((path, source), kinds) in sources.iter().zip(&kinds) {
        let prediction_file = context.prediction_files.iter().any(|f| f == path);
        preprocessing_before_split(path, source, kinds, &mut findings);
        fit_on_test(path, source, kinds, prediction_file, &mut findings);
        if !seeded {
            unseeded(path, source, &mut findings);
        }
        target_as_feature(path, source, &context.targets, &mut findings);
    }
    // Across files: a model fitted with nothing held out.
    if !validates {
        let first_fit = sources
            .iter()
            .zip(&kinds)
            .find_map(|((path, source), kinds)| source.calls.iter().find(|c| is_fit(c) && receiver_kind(c, kinds) == Some(Kind::Estimator)).map(|c| (path, c)));
        if let Some((path, call)) = first_fit {
            findings.push(Finding {
                cell: None,
                rule: Rule::NoValidation,
                file: path.clone(),
                line: call.line,
                message: format!(
                    "`{}` trains the model, and nothing in the submission holds rows out (no split, cross-validation or validation set): its quality was never measured before it was handed in.",
                    call.callee
                ),
            });
        }
    }
    // Metrics of training rows only: with nothing held out, or with rows held out that nothing
    // ever predicts, scores or watches (a split made and then forgotten).
    let metric_calls: Vec<(&String, &Call)> = sources.iter().flat_map(|(path, s)| s.calls.iter().filter(|c| is_metric(c)).map(move |c| (path, c))).collect();
    let held_out_used = r_validates
        || sources.iter().any(|(_, s)| {
            s.calls.iter().any(|c| {
                let args = || c.positional.iter().chain(c.keywords.iter().map(|(_, v)| v));
                matches!(
                    c.name.as_str(),
                    "cross_val_score"
                        | "cross_validate"
                        | "cross_val_predict"
                        | "GridSearchCV"
                        | "RandomizedSearchCV"
                        | "HalvingGridSearchCV"
                        | "HalvingRandomSearchCV"
                        | "learning_curve"
                        | "validation_curve"
                ) || c.name.ends_with("CV")
                    || c.keywords.iter().any(|(k, _)| matches!(k.as_str(), "validation_split" | "validation_data" | "eval_set"))
                    || (matches!(c.name.as_str(), "predict" | "predict_proba" | "decision_function" | "score" | "evaluate") || is_metric(c))
                        && args().any(|a| mentions(a, "test") || mentions_validation(a))
            })
        });
    if !metric_calls.is_empty() && metric_calls.iter().all(|(_, c)| scores_training_rows(c)) && (!validates || !held_out_used) {
        let (path, call) = metric_calls[0];
        findings.push(Finding {
            cell: None,
            rule: Rule::TrainOnlyEvaluation,
            file: path.clone(),
            line: call.line,
            message: format!(
                "`{}` scores the model on the rows it was trained on, and nothing scores it on held-out rows: the figure measures memory, not how it does on new data.",
                call.callee
            ),
        });
    }
    findings.sort_by(|a, b| (&a.file, a.line, a.rule).cmp(&(&b.file, b.line, b.rule)));
    let mut per_rule: BTreeMap<Rule, usize> = BTreeMap::new();
    findings.retain(|f| {
        let n = per_rule.entry(f.rule).or_default();
        *n += 1;
        *n <= MAX_PER_RULE
    });
    in_cells(&mut findings, files, |f| Some((f.file.as_str(), &mut f.line, &mut f.cell)));
    findings
}

/// The language a file's code is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    Python,
    R,
}

/// A file's code read in its language: Python files and notebooks, R scripts, R Markdown (its R
/// chunks, at their lines) and R notebooks. `None` for other files and unreadable notebooks.
pub(crate) fn read_any(path: &str, text: &str) -> Option<(Language, Source)> {
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "py" => Some((Language::Python, read(text))),
        "r" => Some((Language::R, read_r(text))),
        "rmd" => Some((Language::R, read_r(&crate::notebook::rmd_r_lines(text)))),
        "ipynb" => {
            let code = crate::environment::notebook_python(text)?;
            match crate::notebook::language_of_text(text).as_deref() {
                Some("r") => Some((Language::R, read_r(&code))),
                _ => Some((Language::Python, read(&code))),
            }
        }
        _ => None,
    }
}

/// R calls that train a model.
pub(crate) const R_MODELS: &[&str] = &[
    "lm",
    "glm",
    "randomForest",
    "ranger",
    "rpart",
    "train",
    "xgboost",
    "xgb.train",
    "svm",
    "naiveBayes",
    "multinom",
    "glmnet",
    "cv.glmnet",
    "knn",
    "lda",
    "qda",
    "gbm",
    "C5.0",
    "ctree",
    "nnet",
    "lightgbm",
    "lgb.train",
    "fit",
];
/// R calls that hold rows out or cross-validate.
pub(crate) const R_VALIDATION: &[&str] = &[
    "initial_split",
    "initial_validation_split",
    "createDataPartition",
    "createFolds",
    "sample.split",
    "vfold_cv",
    "bootstraps",
    "trainControl",
    "cv.glmnet",
    "fit_resamples",
    "tune_grid",
    "tune_bayes",
    "validation_split",
    "training",
    "testing",
    "rfcv",
    "xgb.cv",
    "lgb.cv",
    "crossv_kfold",
    "sample",
    "sample_frac",
    "slice_sample",
    // caret's `train` resamples (25 bootstraps) unless told not to.
    "train",
];
/// R calls that draw random numbers (with no `set.seed` anywhere, each is a finding). xgboost
/// is left out, as in Python: it draws only when told to subsample.
const R_RANDOM: &[&str] = &[
    "sample",
    "sample_n",
    "sample_frac",
    "slice_sample",
    "initial_split",
    "initial_validation_split",
    "createDataPartition",
    "createFolds",
    "vfold_cv",
    "sample.split",
    "randomForest",
    "ranger",
    "kmeans",
    "train",
    "bootstraps",
    "runif",
    "rnorm",
    // caret's feature selection resamples; gbm bags half the rows by default; parsnip's forest.
    "rfe",
    "sbf",
    "gbm",
    "rand_forest",
];

/// An R call that holds rows out: a split or resampling, or a model watching a validation set
/// (`xgb.train(..., watchlist)`, `randomForest(xtest = ...)`).
fn r_holds_out(call: &Call) -> bool {
    // `predict(model, test)`, `predict(fit, new_data = valid_tbl)`, `predict(m, cv.rows)`: rows
    // split off by hand (a filter on dates, a row index) and predicted on.
    let held_out_rows = |text: &str| {
        mentions(text, "test") || mentions_validation(text) || text.to_ascii_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).any(|p| p == "cv")
    };
    let predicts_held_out = call.name == "predict"
        && (call.positional.iter().skip(1).any(|p| held_out_rows(p))
            || call.keywords.iter().any(|(k, v)| matches!(k.as_str(), "newdata" | "new_data") && held_out_rows(v)));
    predicts_held_out
        || R_VALIDATION.contains(&call.name.as_str())
        || call.keywords.iter().any(|(k, _)| matches!(k.as_str(), "watchlist" | "evals" | "valids" | "xtest" | "validation_data"))
        || call.positional.iter().any(|p| p.contains("watchlist"))
}

/// The rules that read R cheaply: no validation anywhere, randomness with no seed.
fn r_rules(sources: &[(String, Source)], validates: bool, findings: &mut Vec<Finding>) {
    // A script runs top to bottom in its own R session: a seed set later, or in another file,
    // does not fix what is drawn here.
    let seeded_before = |source: &Source, line: u64| source.calls.iter().any(|c| c.name == "set.seed" && c.line <= line);
    if !validates {
        // `fit` is parsnip's; `lm` and `glm` of a model kept (assigned), not a one-off summary.
        let first_fit = sources.iter().find_map(|(path, source)| source.calls.iter().find(|c| R_MODELS.contains(&c.name.as_str())).map(|c| (path, c)));
        if let Some((path, call)) = first_fit {
            findings.push(Finding {
                cell: None,
                rule: Rule::NoValidation,
                file: path.clone(),
                line: call.line,
                message: format!(
                    "`{}` trains the model, and nothing in the submission holds rows out (no split, resampling or cross-validation): its quality was never measured before it was handed in.",
                    call.name
                ),
            });
        }
    }
    {
        for (path, source) in sources {
            // parsnip's boosted trees draw when told to subsample rows or columns.
            let random = |c: &Call| {
                R_RANDOM.contains(&c.name.as_str())
                    || (c.name == "boost_tree" && c.keywords.iter().any(|(k, v)| matches!(k.as_str(), "sample_size" | "mtry") && v.trim() != "1"))
            };
            for call in source.calls.iter().filter(|c| random(c) && !seeded_before(source, c.line)) {
                // `train()` is caret's (random through its resampling); `sample(x)` of a plain
                // vector shuffles too.
                findings.push(Finding {
                    cell: None,
                    rule: Rule::UnseededRandomness,
                    file: path.clone(),
                    line: call.line,
                    message: format!(
                        "`{}` is random and no `set.seed` comes before it: another run gives another result, so it cannot be reproduced.",
                        call.name
                    ),
                });
            }
        }
    }
}

/// The calls of R code (tree-sitter-r): `f(x, n = 3)`, `pkg::f(...)`, `obj$f(...)`, each with
/// its positional and named arguments and the name it is assigned to (`<-`, `=`, `->`).
pub(crate) fn read_r(code: &str) -> Source {
    let mut out = Source::default();
    let Some(tree) = parse(code, &tree_sitter_r::LANGUAGE.into()) else { return out };
    let text = |node: tree_sitter::Node| node.utf8_text(code.as_bytes()).unwrap_or("").to_string();
    each_node(&tree, |node| match node.kind() {
        "call" => out.calls.extend(r_call_of(node, &text)),
        "binary_operator" => {
            let operator = node.child_by_field_name("operator").map(text).unwrap_or_default();
            let (lhs, rhs) = (node.child_by_field_name("lhs"), node.child_by_field_name("rhs"));
            if let (true, Some(lhs), Some(rhs)) = (matches!(operator.as_str(), "<-" | "="), lhs, rhs) {
                if rhs.kind() == "function_definition" && lhs.kind() == "identifier" {
                    out.functions.push((node.start_position().row as u64 + 1, text(lhs)));
                }
            }
        }
        _ => {}
    });
    out
}

/// The parse tree of `code` in `language` (`None` when tree-sitter cannot make one).
fn parse(code: &str, language: &tree_sitter::Language) -> Option<tree_sitter::Tree> {
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(language).ok()?;
    parser.parse(code, None)
}

fn r_call_of(node: tree_sitter::Node, text: &dyn Fn(tree_sitter::Node) -> String) -> Option<Call> {
    let function = node.child_by_field_name("function")?;
    let (name, receiver) = match function.kind() {
        "identifier" => (text(function), None),
        "namespace_operator" => (text(function.child_by_field_name("rhs")?), None),
        "extract_operator" => (text(function.child_by_field_name("rhs")?), function.child_by_field_name("lhs").map(text)),
        _ => return None,
    };
    let (mut positional, mut keywords) = (Vec::new(), Vec::new());
    if let Some(arguments) = node.child_by_field_name("arguments") {
        let mut walk = arguments.walk();
        for argument in arguments.named_children(&mut walk).filter(|a| a.kind() == "argument") {
            let value = argument.child_by_field_name("value").map(text).unwrap_or_default();
            match argument.child_by_field_name("name") {
                Some(name) => keywords.push((text(name), value)),
                None => positional.push(value),
            }
        }
    }
    let mut assigned = Vec::new();
    if let Some(parent) = node.parent().filter(|p| p.kind() == "binary_operator") {
        let operator = parent.child_by_field_name("operator").map(text).unwrap_or_default();
        let (lhs, rhs) = (parent.child_by_field_name("lhs"), parent.child_by_field_name("rhs"));
        match operator.as_str() {
            "<-" | "<<-" | "=" if rhs.is_some_and(|r| r.id() == node.id()) => assigned.extend(lhs.map(text)),
            "->" | "->>" if lhs.is_some_and(|l| l.id() == node.id()) => assigned.extend(rhs.map(text)),
            _ => {}
        }
    }
    Some(Call { line: node.start_position().row as u64 + 1, callee: text(function), name, receiver, positional, keywords, assigned })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transformer,
    Estimator,
}

fn kind_of_constructor(name: &str) -> Option<Kind> {
    if TRANSFORMERS.contains(&name) {
        Some(Kind::Transformer)
    } else if ESTIMATORS.contains(&name) {
        Some(Kind::Estimator)
    } else {
        None
    }
}

/// What each variable was made as (its last assignment from a known constructor).
fn variable_kinds(source: &Source) -> HashMap<String, Kind> {
    let mut kinds = HashMap::new();
    for call in &source.calls {
        if let Some(kind) = kind_of_constructor(&call.name) {
            for name in &call.assigned {
                kinds.insert(name.clone(), kind);
            }
        }
    }
    kinds
}

/// The kind of what a method is called on: a known variable, or a constructor called in place
/// (`StandardScaler().fit_transform(X)`).
fn receiver_kind(call: &Call, kinds: &HashMap<String, Kind>) -> Option<Kind> {
    let receiver = call.receiver.as_deref()?;
    if let Some(kind) = kinds.get(receiver) {
        return Some(*kind);
    }
    let constructor = receiver.split('(').next()?.rsplit('.').next()?;
    receiver.contains('(').then(|| kind_of_constructor(constructor)).flatten()
}

fn is_fit(call: &Call) -> bool {
    matches!(call.name.as_str(), "fit" | "fit_transform" | "fit_resample") && call.receiver.is_some()
}

fn holds_out(call: &Call) -> bool {
    VALIDATION.contains(&call.name.as_str())
        || call.keywords.iter().any(|(k, _)| matches!(k.as_str(), "validation_split" | "validation_data" | "eval_set" | "early_stopping_rounds"))
        || call.assigned.iter().any(|name| mentions_validation(name))
        || call.positional.iter().chain(call.keywords.iter().map(|(_, v)| v)).any(|text| mentions_validation(text))
}

fn is_metric(call: &Call) -> bool {
    METRICS.contains(&call.name.as_str()) || (call.name == "score" && call.receiver.is_some() && !call.positional.is_empty())
}

/// A metric whose arguments all name training rows (`y_train`, `model.predict(X_train)`).
fn scores_training_rows(call: &Call) -> bool {
    let args: Vec<&String> = call.positional.iter().chain(call.keywords.iter().map(|(_, v)| v)).collect();
    !args.is_empty() && args.iter().any(|a| mentions(a, "train")) && !args.iter().any(|a| mentions_validation(a) || mentions(a, "test"))
}

/// Whether an identifier-ish text holds `word` as a part of a name (`X_train`, `train_df`,
/// `trainX`, `Xtest`; not `latest`), case-insensitively.
fn mentions(text: &str, word: &str) -> bool {
    text.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|part| part.starts_with(word) || ["x", "y", "df", "data"].iter().any(|prefix| part.strip_prefix(prefix) == Some(word)))
}

fn mentions_validation(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.split(|c: char| !c.is_ascii_alphanumeric()).any(|part| {
        matches!(part, "val" | "valid" | "validation" | "holdout" | "dev")
            || part.starts_with("valid")
            || part.ends_with("val") && part.len() <= 5 && part != "interval"
    })
}

fn preprocessing_before_split(path: &str, source: &Source, kinds: &HashMap<String, Kind>, out: &mut Vec<Finding>) {
    let Some(split) = source.calls.iter().find(|c| SPLITS.contains(&c.name.as_str())) else { return };
    for call in source.calls.iter().filter(|c| c.line < split.line && is_fit(c) && receiver_kind(c, kinds) == Some(Kind::Transformer)) {
        let Some(first) = call.positional.first() else { continue };
        if mentions(first, "train") {
            continue;
        }
        out.push(Finding {
            cell: None,
            rule: Rule::PreprocessingBeforeSplit,
            file: path.to_string(),
            line: call.line,
            message: format!(
                "`{}` learns from every row before the train/validation split at line {}: the validation rows leak into the preprocessing, so the validation score is optimistic.",
                call.callee, split.line
            ),
        });
    }
}

fn fit_on_test(path: &str, source: &Source, kinds: &HashMap<String, Kind>, prediction_file: bool, out: &mut Vec<Finding>) {
    for call in source.calls.iter().filter(|c| is_fit(c)) {
        let Some(first) = call.positional.first() else { continue };
        let on_test = mentions(first, "test") && !mentions(first, "train");
        // In the step that predicts, a transformer or model fitted on anything but training rows
        // fits on the rows it predicts.
        let in_prediction = prediction_file && receiver_kind(call, kinds).is_some() && !mentions(first, "train");
        if on_test || in_prediction {
            out.push(Finding {
                cell: None,
                rule: Rule::FitOnTest,
                file: path.to_string(),
                line: call.line,
                message: format!(
                    "`{}` fits on `{}`, which looks like the rows to predict: what is learned from the test rows makes the result depend on them, and no score of it says how it does on new data.",
                    call.callee,
                    short(first, 60)
                ),
            });
        }
    }
}

fn unseeded(path: &str, source: &Source, out: &mut Vec<Finding>) {
    for call in source.calls.iter().filter(|c| RANDOM.contains(&c.name.as_str())) {
        if call.keywords.iter().any(|(k, v)| matches!(k.as_str(), "random_state" | "seed" | "random_seed") && v.trim() != "None") {
            continue;
        }
        out.push(Finding {
            cell: None,
            rule: Rule::UnseededRandomness,
            file: path.to_string(),
            line: call.line,
            message: format!(
                "`{}` is random and has no `random_state` (and nothing seeds NumPy): another run gives another {}, so the result cannot be reproduced.",
                call.name,
                if matches!(call.name.as_str(), "train_test_split" | "ShuffleSplit" | "StratifiedShuffleSplit") { "split" } else { "model" }
            ),
        });
    }
    // A Keras network starts from random weights; only a global seed fixes them.
    for call in source.calls.iter().filter(|c| c.name == "Sequential" && c.callee != "nn.Sequential" && !c.callee.starts_with("torch")) {
        out.push(Finding {
            cell: None,
            rule: Rule::UnseededRandomness,
            file: path.to_string(),
            line: call.line,
            message: "This Keras network starts from random weights and nothing seeds them (`keras.utils.set_random_seed`): another run trains another model."
                .to_string(),
        });
    }
    // KFold shuffles only when asked to.
    for call in source.calls.iter().filter(|c| matches!(c.name.as_str(), "KFold" | "StratifiedKFold")) {
        let shuffles = call.keywords.iter().any(|(k, v)| k == "shuffle" && v.trim() == "True");
        if shuffles && !call.keywords.iter().any(|(k, v)| k == "random_state" && v.trim() != "None") {
            out.push(Finding {
                cell: None,
                rule: Rule::UnseededRandomness,
                file: path.to_string(),
                line: call.line,
                message: format!(
                    "`{}` shuffles with no `random_state`: another run gives other folds, so the cross-validated score cannot be reproduced.",
                    call.name
                ),
            });
        }
    }
}

fn target_as_feature(path: &str, source: &Source, targets: &[String], out: &mut Vec<Finding>) {
    if targets.is_empty() {
        return;
    }
    for listed in &source.lists {
        let name = listed.target.to_ascii_lowercase();
        let features = name == "x"
            || name.starts_with("x_")
            || name.starts_with("feature")
            || name.contains("predictor")
            || name == "cols"
            || name.ends_with("_cols")
            || name.ends_with("_columns");
        if !features || name.contains("target") || name.contains("drop") || name.contains("label") {
            continue;
        }
        if let Some(target) = targets.iter().find(|t| listed.strings.iter().any(|s| s == *t)) {
            out.push(Finding {
                cell: None,
                rule: Rule::TargetAsFeature,
                file: path.to_string(),
                line: listed.line,
                message: format!(
                    "`{}` lists the target `{target}` among the features: the model can read the answer, so any score of it is meaningless.",
                    listed.target
                ),
            });
        }
    }
}

/// Code shown in a sentence: on one line, at most `max` characters (then `…`).
pub(crate) fn short(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > max {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    } else {
        one_line
    }
}

/// Calls `visit` with every node of a parse tree, in order (depth first).
fn each_node<'t>(tree: &'t tree_sitter::Tree, mut visit: impl FnMut(tree_sitter::Node<'t>)) {
    let mut cursor = tree.walk();
    loop {
        visit(cursor.node());
        if cursor.goto_first_child() {
            continue;
        }
        while !cursor.goto_next_sibling() {
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// The calls and string lists of one Python source, in order.
pub(crate) fn read(code: &str) -> Source {
    let mut out = Source::default();
    let Some(tree) = parse(code, &tree_sitter_python::LANGUAGE.into()) else { return out };
    let text = |node: tree_sitter::Node| node.utf8_text(code.as_bytes()).unwrap_or("").to_string();
    each_node(&tree, |node| match node.kind() {
        "call" => out.calls.extend(call_of(node, &text)),
        "assignment" => {
            if let (Some(left), Some(right)) = (node.child_by_field_name("left"), node.child_by_field_name("right")) {
                let strings = list_strings(right, code);
                let line = node.start_position().row as u64 + 1;
                if !strings.is_empty() {
                    out.lists.push(Listed { line, target: text(left), strings });
                }
                // `frame["name"] = ...`: a column made (its key a plain string).
                if left.kind() == "subscript" {
                    let key = left.child_by_field_name("subscript").filter(|k| k.kind() == "string").map(text);
                    let frame = left.child_by_field_name("value").map(text);
                    if let (Some(key), Some(frame)) = (key, frame) {
                        let key = key.trim_matches(['"', '\'']).to_string();
                        if !key.is_empty() && key.len() <= 60 {
                            out.columns_made.push((line, frame, key));
                        }
                    }
                }
            }
        }
        _ => {}
    });
    out
}

fn call_of(node: tree_sitter::Node, text: &dyn Fn(tree_sitter::Node) -> String) -> Option<Call> {
    let function = node.child_by_field_name("function")?;
    let (name, receiver) = match function.kind() {
        "attribute" => (text(function.child_by_field_name("attribute")?), function.child_by_field_name("object").map(text)),
        "identifier" => (text(function), None),
        _ => return None,
    };
    let mut positional = Vec::new();
    let mut keywords = Vec::new();
    if let Some(arguments) = node.child_by_field_name("arguments") {
        let mut walk = arguments.walk();
        for argument in arguments.named_children(&mut walk) {
            match argument.kind() {
                "keyword_argument" => {
                    let key = argument.child_by_field_name("name").map(text).unwrap_or_default();
                    let value = argument.child_by_field_name("value").map(text).unwrap_or_default();
                    keywords.push((key, value));
                }
                "comment" => {}
                _ => positional.push(text(argument)),
            }
        }
    }
    // `a = f(...)`, `a, b = f(...)`, `self.a = f(...)`: the names on the left of this call.
    let mut assigned = Vec::new();
    if let Some(parent) = node.parent() {
        if parent.kind() == "assignment" && parent.child_by_field_name("right").is_some_and(|r| r.id() == node.id()) {
            if let Some(left) = parent.child_by_field_name("left") {
                if matches!(left.kind(), "pattern_list" | "tuple_pattern") {
                    let mut walk = left.walk();
                    assigned.extend(left.named_children(&mut walk).map(text));
                } else {
                    assigned.push(text(left));
                }
            }
        }
    }
    Some(Call { line: node.start_position().row as u64 + 1, callee: text(function), name, receiver, positional, keywords, assigned })
}

/// The string literals of a list on the right of an assignment (`["a", "b"]`, `df[["a", "b"]]`).
fn list_strings(right: tree_sitter::Node, code: &str) -> Vec<String> {
    let list = match right.kind() {
        "list" => Some(right),
        "subscript" => right.child_by_field_name("subscript").filter(|s| s.kind() == "list"),
        _ => None,
    };
    let Some(list) = list else { return Vec::new() };
    let mut walk = list.walk();
    let strings: HashSet<String> = list
        .named_children(&mut walk)
        .filter(|n| n.kind() == "string")
        .filter_map(|n| n.utf8_text(code.as_bytes()).ok())
        .map(|s| s.trim_start_matches(['r', 'b', 'f', 'u', 'R', 'B', 'F', 'U']).trim_matches(['"', '\'']).to_string())
        .collect();
    let mut strings: Vec<String> = strings.into_iter().collect();
    strings.sort();
    strings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(code: &str, context: &Context) -> Vec<(Rule, u64)> {
        analyse(&[("train.py".to_string(), code.to_string())], context).iter().map(|f| (f.rule, f.line)).collect()
    }

    #[test]
    fn each_rule_on_a_small_example_and_silent_on_its_fix() {
        let none = Context::default();
        let leak = "from sklearn.preprocessing import StandardScaler\nscaler = StandardScaler()\nX = scaler.fit_transform(X)\nX_train, X_val, y_train, y_val = train_test_split(X, y, random_state=0)\n";
        assert_eq!(rules(leak, &none), [(Rule::PreprocessingBeforeSplit, 3)]);
        let fixed =
            "scaler = StandardScaler()\nX_train, X_val, y_train, y_val = train_test_split(X, y, random_state=0)\nX_train = scaler.fit_transform(X_train)\n";
        assert_eq!(rules(fixed, &none), []);

        let on_test = "X_train, X_val, y_train, y_val = train_test_split(X, y, random_state=0)\nscaler = StandardScaler()\nscaler.fit(X_train)\nX_test = scaler.fit_transform(X_test)\n";
        assert_eq!(rules(on_test, &none), [(Rule::FitOnTest, 4)]);

        let unseeded =
            "model = RandomForestClassifier(n_estimators=100)\nX_train, X_val, y_train, y_val = train_test_split(X, y)\nmodel.fit(X_train, y_train)\n";
        assert_eq!(rules(unseeded, &none), [(Rule::UnseededRandomness, 1), (Rule::UnseededRandomness, 2)]);
        let seeded = format!("import numpy as np\nnp.random.seed(0)\n{unseeded}");
        assert_eq!(rules(&seeded, &none), [], "a global seed makes them reproducible");

        let no_validation = "model = LogisticRegression()\nmodel.fit(X, y)\n";
        assert_eq!(rules(no_validation, &none), [(Rule::NoValidation, 2)]);
        let cross_validated = "model = LogisticRegression()\nprint(cross_val_score(model, X, y, cv=5))\nmodel.fit(X, y)\n";
        assert_eq!(rules(cross_validated, &none), []);

        let targets = Context { targets: vec!["sex".into()], ..Context::default() };
        let leaky_features = "features = ['bill_length_mm', 'sex', 'island']\nX = df[features]\n";
        assert_eq!(rules(leaky_features, &targets), [(Rule::TargetAsFeature, 1)]);
        assert_eq!(rules("features = ['bill_length_mm', 'island']\ny = df['sex']\n", &targets), []);

        let train_only = "model = LogisticRegression()\nmodel.fit(X_train, y_train)\nprint(accuracy_score(y_train, model.predict(X_train)))\n";
        assert_eq!(rules(train_only, &none), [(Rule::NoValidation, 2), (Rule::TrainOnlyEvaluation, 3)]);
    }

    #[test]
    fn a_prediction_step_that_fits_fits_on_the_rows_it_predicts() {
        let context = Context { prediction_files: vec!["predict.py".into()], ..Context::default() };
        let code = "scaler = StandardScaler()\nrows = scaler.fit_transform(rows)\nmodel = joblib.load('m')\nmodel.fit(X_train, y_train)\n";
        let found = analyse(&[("predict.py".to_string(), code.to_string())], &context);
        assert_eq!(found.iter().map(|f| (f.rule, f.line)).collect::<Vec<_>>(), [(Rule::FitOnTest, 2)]);
    }

    #[test]
    fn a_notebook_is_read_cell_by_cell_in_order() {
        let notebook = serde_json::json!({"cells": [
            {"cell_type": "code", "source": ["%matplotlib inline\n", "scaler = StandardScaler()\n"]},
            {"cell_type": "markdown", "source": ["# Split"]},
            {"cell_type": "code", "source": "X = scaler.fit_transform(X)\nX_train, X_val, y_train, y_val = train_test_split(X, y, random_state=1)"}
        ]});
        let found = analyse(&[("work.ipynb".to_string(), notebook.to_string())], &Context::default());
        // The third line of the code joined is the first of the notebook's third cell.
        assert_eq!(
            found.iter().map(|f| (f.rule, f.file.as_str(), f.cell, f.line)).collect::<Vec<_>>(),
            [(Rule::PreprocessingBeforeSplit, "work.ipynb", Some(3), 1)]
        );
        assert_eq!(found[0].place(), "work.ipynb, cell 3, line 1");
    }
}
