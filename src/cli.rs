//! The command line: `takehome grade`, `takehome score`, `takehome images build`,
//! `takehome validate`, `takehome cleanup`. Parses flags, sets up tracing and cancellation, prints results.
//! Exit codes: 0 done (a grade was produced, whatever the score), 1 our side failed,
//! 2 usage errors (bad flags, an invalid task file), 130 interrupted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::job::{self, ImageRef, JobError};
use crate::sandbox::image::{BuildMethod, Recipe};
use crate::sandbox::{DockerSandbox, Leftovers};
use crate::task;

#[derive(Parser, Debug)]
#[command(name = "takehome", version, about = "Run and grade take-home assessments in hardened containers")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run by git, not by people: our pre-receive hook (checks a pushed tree before it is accepted).
    #[command(hide = true)]
    IntakeHook {
        /// The hook's name; only `pre-receive` exists.
        name: String,
    },
    /// Grade one submission folder against a task's hidden data.
    Grade {
        /// The task folder (tasks/<id>).
        #[arg(long)]
        task: PathBuf,
        /// The candidate's solution folder (a git checkout or a plain folder).
        #[arg(long)]
        submission: PathBuf,
        /// Also write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write the report as a self-contained HTML page here (assessor view).
        #[arg(long)]
        html: Option<PathBuf>,
        /// Also write the report as Markdown here (assessor view).
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// The candidate's name or e-mail, for the report's header.
        #[arg(long)]
        candidate: Option<String>,
        /// How to build the runner image if it is missing.
        #[arg(long, value_enum, default_value_t = Method::Auto)]
        build: Method,
        /// The container runtime: runc, or runsc (gVisor, a second wall). A task may ask for runsc.
        #[arg(long, value_parser = parse_runtime, default_value = "runc")]
        runtime: crate::sandbox::Runtime,
    },
    /// Render a saved JSON report as HTML, Markdown or JSON, for assessors or for the candidate.
    /// With no output named, prints Markdown.
    Report {
        /// A report written by `takehome grade --json`.
        report: PathBuf,
        #[arg(long)]
        html: Option<PathBuf>,
        #[arg(long)]
        markdown: Option<PathBuf>,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Who reads it: the candidate's view leaves out scores and anything computed from hidden data.
        #[arg(long, value_enum, default_value_t = ViewArg::Assessor)]
        view: ViewArg,
    },
    /// Runner images.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Check task files without running anything.
    Validate {
        /// Task folders (default: every task under ROOT/tasks).
        tasks: Vec<PathBuf>,
        /// The project folder that holds tasks/ and datasets/.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Score a predictions file against a truth file with one metric (CSV or Parquet; rows
    /// match by id, in any order). Prints {"metric": ..., "value": ...}. With --task, the
    /// metric and the truth default to the task's.
    Score {
        #[arg(long, required_unless_present = "task")]
        metric: Option<String>,
        #[arg(long, required_unless_present = "task")]
        truth: Option<PathBuf>,
        #[arg(long)]
        predictions: PathBuf,
        /// The id column of both files (default: the task's, else `id`); for cell_accuracy, the
        /// row key (as --key).
        #[arg(long)]
        id: Option<String>,
        /// The predicted column (default: the truth's only column besides the id).
        #[arg(long)]
        target: Option<String>,
        /// The positive label, for binary precision, recall, f1, roc_auc and log_loss.
        #[arg(long)]
        positive: Option<String>,
        /// cell_accuracy: the row key of both tables (leave it out to match whole rows).
        #[arg(long)]
        key: Option<String>,
        /// cell_accuracy: numbers equal within TOL x max(|truth|, 1).
        #[arg(long)]
        tolerance: Option<f64>,
        /// cell_accuracy: a spelling of "missing" (repeat it; default: empty and NA).
        #[arg(long)]
        missing: Vec<String>,
        /// Grade as this task does (its metric's options, columns rules, key, tolerance, missing).
        #[arg(long)]
        task: Option<PathBuf>,
    },
    /// Prove that tasks grade as intended: task files, data sets, fixtures (graded twice) and the
    /// shared hostile fixtures. Exit 1 when any check fails.
    Check {
        /// Task folders (default: every task under ROOT/tasks).
        tasks: Vec<PathBuf>,
        /// The project folder that holds tasks/, datasets/, runner-images/ and fixtures/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Also write the results as JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// The container runtime: runc, or runsc (gVisor). A task may ask for runsc.
        #[arg(long, value_parser = parse_runtime, default_value = "runc")]
        runtime: crate::sandbox::Runtime,
        /// Grade only the fixtures whose name starts with this (for example `hostile/`).
        #[arg(long)]
        fixtures: Option<String>,
        /// Fixtures graded at once (default: what the cores and memory allow for the task's steps).
        #[arg(long)]
        jobs: Option<usize>,
        /// The author's fast loop: the static checks, the starter and the task's own fixtures,
        /// each graded once (no shared hostile fixtures, no determinism re-grade). CI runs the
        /// full check.
        #[arg(long)]
        quick: bool,
    },
    /// Scaffold a task from one CSV table: a deterministic public/hidden split (datasets/ID with
    /// its manifest; for data cleaning, a dirty copy of the table too), task.yaml with a metric
    /// and scale drawn from the data, a placeholder brief and starter, and a baseline fixture.
    /// Passes `check` as generated.
    NewTask {
        /// The new task's id (also its data set's).
        id: String,
        /// model-training, or data-cleaning (the table is the clean truth; a dirty copy is made).
        #[arg(long, default_value = "model-training")]
        kind: String,
        /// The table to split.
        #[arg(long)]
        from_csv: PathBuf,
        /// The column to predict (model training).
        #[arg(long)]
        target: Option<String>,
        /// The id (or, cleaning, key) column (default: a column `id` or `row_id` numbering the
        /// rows is added).
        #[arg(long = "id")]
        id_column: Option<String>,
        /// The project folder that holds tasks/, datasets/ and runner-images/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Run the daemon: git intake, the job queue and workers, the web UI and API.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Create an assignment: a repository seeded with the task's brief, starter code and public
    /// data. Prints the clone URL and the candidate's token (shown once).
    Assign {
        /// The task's id (a folder under tasks/).
        #[arg(long)]
        task: String,
        /// The candidate's e-mail address or name.
        #[arg(long)]
        candidate: String,
        /// The time box (default: the task's).
        #[arg(long)]
        time_box: Option<String>,
        /// When the clock starts: at the candidate's first clone, or now.
        #[arg(long, value_enum, default_value_t = Starts::OnClone)]
        starts: Starts,
        /// Send the invitation (clone command, token, time box, status page) to this address, and
        /// reminders and receipts after it (needs smtp_url; the running server sends them).
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Back up a server whose store is SQLite, while it runs: one .tar.gz with a consistent copy of
    /// the store and every candidate's repository. (PostgreSQL: pg_dump, see docs/scaling.md.)
    Backup {
        /// The file to write (.tar.gz).
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Erase everything held about a candidate (their right to erasure): each of their assignments'
    /// rows in the store, repository and files, keeping an audit record with nothing personal.
    Erase {
        /// The candidate's e-mail address or name, as given to `assign`.
        #[arg(long)]
        candidate: String,
        /// Who asks (for the audit record).
        #[arg(long, default_value = "operator")]
        by: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write everything held about a candidate to one file (a subject-access request): their
    /// assignments, submissions, reports, review items, extensions and repositories.
    ExportCandidate {
        /// The candidate's e-mail address or name, as given to `assign`.
        candidate: String,
        /// The file to write (.tar.gz).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Restore a backup into a new, empty data folder (the config's data_dir and database).
    Restore {
        /// A file written by `takehome backup`.
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run only the grading loop on this host's Docker engine, for a server whose store is shared
    /// (PostgreSQL): claims jobs that fit, fetches each commit from the server, stores the report.
    Worker {
        /// The server's base URL (commits are fetched from it with the worker token).
        #[arg(long)]
        server: String,
        /// The worker token (its SHA-256 is the server's worker_token_sha256).
        #[arg(long, env = "TAKEHOME_WORKER_TOKEN", hide_env_values = true)]
        token: String,
        /// Jobs graded at once on this host.
        #[arg(long, default_value_t = 1)]
        slots: usize,
        /// This worker's stable name (a new start with the same name replaces the old instance).
        #[arg(long)]
        name: Option<String>,
        /// Memory this worker may promise to its jobs at once, e.g. 8GiB (default: the host's).
        #[arg(long)]
        memory: Option<String>,
        /// GPUs this worker gives its jobs' steps (default: the host's, counted from
        /// /dev/nvidia0, /dev/nvidia1, ...; 0 claims no job that asks for one).
        #[arg(long)]
        gpus: Option<u32>,
        /// Serve /healthz and /metrics here (for example 127.0.0.1:9464).
        #[arg(long = "health-listen")]
        health_listen: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Mint a worker token: prints the token (for each worker's TAKEHOME_WORKER_TOKEN) and its
    /// SHA-256 (for the server's worker_token_sha256).
    WorkerToken,
    /// Hash an assessor's password (read from standard input) for the config file.
    HashPassword,
    /// Remove every container and volume labelled takehome (leftovers of crashed runs).
    Cleanup,
}

#[derive(Subcommand, Debug)]
enum ImagesCommand {
    /// Build runner images whose recipe changed (default: all under runner-images/).
    Build {
        names: Vec<String>,
        /// The project folder that holds runner-images/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        #[arg(long, value_enum, default_value_t = Method::Auto)]
        method: Method,
        /// Build even when an image for the recipe exists.
        #[arg(long)]
        force: bool,
    },
    /// Remove the images of ours that no current recipe builds (each recipe change leaves one:
    /// 0.8 to 10 GB), and, when no recipe is named, those of recipes no longer in runner-images/;
    /// images a container still uses are kept.
    Prune {
        names: Vec<String>,
        /// The project folder that holds runner-images/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Print every package an image holds, with its version (default: every image's).
    List {
        names: Vec<String>,
        /// The project folder that holds runner-images/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Starts {
    OnClone,
    Now,
}

fn parse_runtime(text: &str) -> Result<crate::sandbox::Runtime, String> {
    crate::sandbox::Runtime::parse(text).ok_or_else(|| format!("{text:?} is not a runtime (expected runc or runsc)"))
}

/// Where the daemon's configuration comes from: defaults, the file, TAKEHOME_* variables, flags.
#[derive(clap::Args, Debug)]
struct ConfigArgs {
    /// A YAML config file (README lists every key).
    #[arg(long, env = "TAKEHOME_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    listen: Option<String>,
    /// Jobs graded at once by this process (0: web and intake only, workers elsewhere).
    #[arg(long)]
    workers: Option<usize>,
    /// The store: sqlite:PATH (default: under the data folder) or postgres://USER@HOST:PORT/DB.
    #[arg(long)]
    database: Option<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<crate::config::Config, Failure> {
        let flags: std::collections::HashMap<&str, String> = [
            ("TAKEHOME_DATA_DIR", self.data_dir.as_ref().map(|p| p.display().to_string())),
            ("TAKEHOME_LISTEN", self.listen.clone()),
            ("TAKEHOME_WORKERS", self.workers.map(|n| n.to_string())),
            ("TAKEHOME_DATABASE", self.database.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        // Flags win over the environment, which wins over the file.
        crate::config::Config::load(self.config.as_deref(), |key| flags.get(key).cloned().or_else(|| std::env::var(key).ok())).map_err(usage)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ViewArg {
    Assessor,
    Candidate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Method {
    /// Offline when debootstrap is installed, else the Dockerfile.
    Auto,
    /// debootstrap + pip + import: needs only the Debian and PyPI archives.
    Offline,
    /// docker build of the recipe's Dockerfile: needs a registry for the base image.
    Dockerfile,
}

impl From<Method> for BuildMethod {
    fn from(method: Method) -> BuildMethod {
        match method {
            Method::Auto => BuildMethod::Auto,
            Method::Offline => BuildMethod::Offline,
            Method::Dockerfile => BuildMethod::Dockerfile,
        }
    }
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: error.into() }
}
fn ours(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 1, error: error.into() }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A daemon says where it listens, what it grades and what it stores; a one-shot command
    // prints only its progress and warnings.
    let daemon = matches!(cli.command, Command::Serve { .. } | Command::Worker { .. });
    init_tracing(cli.log_format, if daemon { "warn,takehome=info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("takehome: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("takehome: {}", describe_chain(&error));
            ExitCode::from(code)
        }
    }
}

/// An error and its causes, outermost first, joined by ": " (each error type says its own layer
/// only; see [`crate::errors`]).
pub fn describe_chain(error: &anyhow::Error) -> String {
    crate::errors::join(error.chain().map(ToString::to_string))
}

fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAKEHOME_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::IntakeHook { name } => {
            if name != "pre-receive" {
                return Err(usage(anyhow::anyhow!("unknown hook {name:?} (expected pre-receive)")));
            }
            let code = crate::intake::pre_receive(std::io::stdin().lock(), &mut std::io::stdout());
            std::process::exit(code);
        }
        Command::Grade { task, submission, json, html, markdown, candidate, build, runtime } => {
            let outputs = Outputs { json, html, markdown };
            grade(&task, &submission, &outputs, candidate, build.into(), runtime).await
        }
        Command::Report { report, html, markdown, json, view } => render_report(&report, &Outputs { json, html, markdown }, view),
        Command::Images { command: ImagesCommand::Build { names, root, method, force } } => build_images(&root, names, method.into(), force).await,
        Command::Images { command: ImagesCommand::List { names, root } } => list_images(&root, names).await,
        Command::Images { command: ImagesCommand::Prune { names, root } } => prune_images(&root, names).await,
        Command::Validate { tasks, root } => validate(tasks, root),
        Command::Check { tasks, root, junit, runtime, fixtures, jobs, quick } => {
            check(&root, tasks, junit.as_deref(), runtime, fixtures.as_deref(), jobs, quick).await
        }
        Command::Score { metric, truth, predictions, id, target, positive, key, tolerance, missing, task } => {
            score(metric.as_deref(), truth.as_deref(), &predictions, ScoreOptions { id, target, positive, key, tolerance, missing, task })
        }
        Command::NewTask { id, kind, from_csv, target, id_column, root } => {
            let kind = match kind.as_str() {
                "model-training" => task::TaskKind::ModelTraining,
                "data-cleaning" => task::TaskKind::DataCleaning,
                other => return Err(usage(anyhow::anyhow!("--kind {other:?}: expected model-training or data-cleaning"))),
            };
            if kind == task::TaskKind::ModelTraining && target.is_none() {
                return Err(usage(anyhow::anyhow!("a model-training task needs --target COL (the column to predict)")));
            }
            let target = target.unwrap_or_default();
            let made = crate::scaffold::new_task(&crate::scaffold::NewTask { id, kind, from_csv, target, id_column, root }).map_err(|e| match e {
                crate::scaffold::ScaffoldError::Io(..) | crate::scaffold::ScaffoldError::Scale(_) => ours(e),
                e => usage(e),
            })?;
            println!(
                "made {} and {} ({} public rows, {} hidden; metric {})\nnext: edit the brief and the starter, add a reference fixture, then `takehome check --quick {}`",
                made.task_dir.display(),
                made.dataset_dir.display(),
                made.public_rows,
                made.hidden_rows,
                made.metric,
                made.task_dir.display()
            );
            Ok(())
        }
        Command::Serve { config } => {
            let config = config.load()?;
            let shutdown = CancellationToken::new();
            let watcher = tokio::spawn(cancel_on_signal(shutdown.clone(), Stopping::Service("server")));
            let result = crate::daemon::serve(config, shutdown).await;
            watcher.abort();
            result.map_err(ours)
        }
        Command::Assign { task, candidate, time_box, starts, email, config } => {
            assign(&config.load()?, &task, &candidate, time_box.as_deref(), starts, email).await
        }
        Command::Backup { file, config } => {
            let config = config.load()?;
            let summary = tokio::task::spawn_blocking(move || crate::backup::backup(&config, &file).map(|s| (s, file)))
                .await
                .map_err(|e| ours(anyhow::Error::new(e)))?
                .map_err(backup_failure)?;
            let (summary, file) = summary;
            println!(
                "backup {}: the store ({}) and {}, {} before compression",
                file.display(),
                crate::units::count(summary.assignments, "assignment"),
                if summary.repositories == 1 { "1 repository".to_string() } else { format!("{} repositories", summary.repositories) },
                crate::units::format_size(summary.bytes)
            );
            Ok(())
        }
        Command::Erase { candidate, by, config } => {
            let config = config.load()?;
            let store =
                crate::store::open(&config.database).await.with_context(|| format!("cannot open the store {}", config.database.describe())).map_err(ours)?;
            let repos = crate::intake::Repos::new(config.repos_dir(), config.hooks_dir());
            match crate::erase::erase_candidate(store.as_ref(), &repos, &config.data_dir, &candidate, &by, "request").await {
                Ok(erased) => {
                    for e in &erased {
                        println!("erased an assignment of {}: {} rows, {} files or folders", e.task, e.rows, e.files);
                    }
                    Ok(())
                }
                Err(error @ crate::erase::EraseError::NoCandidate(_)) => Err(usage(error)),
                Err(error) => Err(ours(error)),
            }
        }
        Command::ExportCandidate { candidate, out, config } => {
            let config = config.load()?;
            let store =
                crate::store::open(&config.database).await.with_context(|| format!("cannot open the store {}", config.database.describe())).map_err(ours)?;
            let repos = crate::intake::Repos::new(config.repos_dir(), config.hooks_dir());
            match crate::erase::export_candidate(store.as_ref(), &repos, &candidate, &out).await {
                Ok(done) => {
                    println!(
                        "{}: {} and {} of {candidate}",
                        out.display(),
                        crate::units::count(done.assignments, "assignment"),
                        crate::units::count(done.submissions, "submission")
                    );
                    Ok(())
                }
                Err(error @ crate::erase::EraseError::NoCandidate(_)) => Err(usage(error)),
                Err(error) => Err(ours(error)),
            }
        }
        Command::Restore { file, config } => {
            let config = config.load()?;
            let data = config.data_dir.clone();
            let summary = tokio::task::spawn_blocking(move || crate::backup::restore(&config, &file))
                .await
                .map_err(|e| ours(anyhow::Error::new(e)))?
                .map_err(backup_failure)?;
            println!(
                "restored into {}: {} and {}; start `takehome serve` with the same config",
                data.display(),
                crate::units::count(summary.assignments, "assignment"),
                if summary.repositories == 1 { "1 repository".to_string() } else { format!("{} repositories", summary.repositories) }
            );
            Ok(())
        }
        Command::Worker { server, token, slots, name, memory, gpus, health_listen, config } => {
            let config = config.load()?;
            if !(server.starts_with("http://") || server.starts_with("https://")) {
                return Err(usage(anyhow::anyhow!("--server: expected the server's URL, like http://10.0.0.1:8080")));
            }
            if token.len() < 16 {
                return Err(usage(anyhow::anyhow!("--token (or TAKEHOME_WORKER_TOKEN): expected the worker token that `takehome worker-token` printed")));
            }
            let memory_bytes = memory.map(|m| crate::units::parse_size(&m).map_err(|e| usage(anyhow::anyhow!("--memory: {e}")))).transpose()?;
            let listen = health_listen
                .map(|a| a.parse().map_err(|_| usage(anyhow::anyhow!("--health-listen: {a:?} is not an address like 127.0.0.1:9464"))))
                .transpose()?;
            let name = name.unwrap_or_else(crate::daemon::host_name);
            let command = crate::daemon::WorkerCommand { server, token, name, slots: slots.max(1), memory_bytes, gpus, listen };
            let shutdown = CancellationToken::new();
            let watcher = tokio::spawn(cancel_on_signal(shutdown.clone(), Stopping::Service("worker")));
            let result = crate::daemon::work(config, command, shutdown).await;
            watcher.abort();
            result.map_err(ours)
        }
        Command::WorkerToken => {
            let token = crate::secret::new_token();
            println!("token:               {token}");
            println!("worker_token_sha256: {}", crate::secret::token_hash(&token));
            Ok(())
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("cannot read the password from standard input").map_err(usage)?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                return Err(usage(anyhow::anyhow!("the password is empty")));
            }
            println!("{}", crate::secret::hash_password(password));
            Ok(())
        }
        Command::Cleanup => {
            let sandbox = DockerSandbox::connect().await.map_err(ours)?;
            let removed = sandbox.remove_leftovers(Leftovers::All).await.map_err(ours)?;
            println!("removed {removed} container(s)");
            Ok(())
        }
    }
}

/// Prints a progress line on stderr (plain lines: they read well in CI logs too).
fn progress(line: &str) {
    eprintln!("takehome: {line}");
}

/// Where to write renderings of a report.
struct Outputs {
    json: Option<PathBuf>,
    html: Option<PathBuf>,
    markdown: Option<PathBuf>,
}

impl Outputs {
    fn is_empty(&self) -> bool {
        self.json.is_none() && self.html.is_none() && self.markdown.is_none()
    }

    fn write(&self, report: &crate::report::Report, view: crate::report::View) -> Result<(), Failure> {
        let write =
            |path: &Path, text: String| std::fs::write(path, text).with_context(|| format!("cannot write the report to {}", path.display())).map_err(ours);
        if let Some(path) = &self.json {
            write(path, report.to_json_view(view))?;
        }
        if let Some(path) = &self.html {
            write(path, report.to_html(view))?;
        }
        if let Some(path) = &self.markdown {
            write(path, report.to_markdown(view))?;
        }
        Ok(())
    }
}

fn render_report(path: &Path, outputs: &Outputs, view: ViewArg) -> Result<(), Failure> {
    use crate::report::{Report, View};
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display())).map_err(usage)?;
    let report: Report = serde_json::from_str(&text).with_context(|| format!("{}: not a takehome report", path.display())).map_err(usage)?;
    let view = match view {
        ViewArg::Assessor => View::Assessor,
        ViewArg::Candidate => View::Candidate,
    };
    if outputs.is_empty() {
        print!("{}", report.to_markdown(view));
        return Ok(());
    }
    outputs.write(&report, view)
}

async fn grade(
    task_dir: &Path,
    submission: &Path,
    outputs: &Outputs,
    candidate: Option<String>,
    method: BuildMethod,
    runtime: crate::sandbox::Runtime,
) -> Result<(), Failure> {
    let task = task::Catalog::load_folder(task_dir).map_err(usage)?;
    if !submission.is_dir() {
        return Err(usage(anyhow::anyhow!("{}: no such folder (expected the submission's folder)", submission.display())));
    }
    let sandbox = DockerSandbox::connect().await.map_err(ours)?.with_runtime(runtime);
    sandbox.check_runtime(runtime.max(task.min_runtime)).await.map_err(ours)?;
    sandbox.remove_leftovers(Leftovers::OfDeadProcesses).await.map_err(ours)?;
    // An extended image (python, 10 GB, for a task on python-slim) is built only for a
    // submission that imports what it adds; a run choice's image (r) always.
    let wanted = job::other_images(&task, submission);
    for other in wanted {
        let recipe = Recipe::load(&task.root, &other).map_err(ours)?;
        if sandbox.image_id(&recipe.tag()).await.map_err(ours)?.is_none() {
            progress(&format!(
                "runner image {} (for a run choice or what the submission imports) is missing; building it first (a few minutes, once)",
                recipe.tag()
            ));
        }
        sandbox.ensure_image(&recipe, method, &progress).await.map_err(ours)?;
    }
    let recipe = Recipe::load(&task.root, &task.image).map_err(ours)?;
    if sandbox.image_id(&recipe.tag()).await.map_err(ours)?.is_none() {
        progress(&format!("runner image {} is missing; building it first (a few minutes, once)", recipe.tag()));
    }
    let image = sandbox.ensure_image(&recipe, method, &progress).await.map_err(ours)?;

    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(cancel_on_signal(cancel.clone(), Stopping::Job));
    let job_id = job::new_job_id();
    progress(&format!("grading {} with {} (job {job_id})", submission.display(), task.id));
    let result = job::grade(&sandbox, &task, submission, &ImageRef { tag: image.tag, id: image.id }, &job_id, &cancel, &progress).await;
    watcher.abort();
    let mut report = match result {
        Ok(report) => report,
        Err(JobError::Cancelled) => return Err(Failure { code: 130, error: anyhow::anyhow!("interrupted; the job's containers were removed") }),
        Err(error) => return Err(ours(anyhow::Error::new(error).context("grading failed on our side (not the candidate's fault)"))),
    };
    report.candidate = candidate;
    print!("{}", report.summary());
    outputs.write(&report, crate::report::View::Assessor)
}

/// What a signal stops: one grading job (`grade`, `check`), or a long-running service (`serve`,
/// `worker`), which says so in its own words.
#[derive(Clone, Copy)]
enum Stopping {
    Job,
    Service(&'static str),
}

async fn cancel_on_signal(cancel: CancellationToken, stopping: Stopping) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    match stopping {
        Stopping::Job => progress("interrupted: stopping the running step and removing its containers"),
        Stopping::Service(what) => progress(&format!("{name}: the {what} is shutting down (running jobs are stopped and handed back to the queue)")),
    }
    cancel.cancel();
}

/// `takehome images list`: from the built image where the engine has it, else from the recipe.
async fn list_images(root: &Path, names: Vec<String>) -> Result<(), Failure> {
    let names = recipe_names(root, names)?;
    let sandbox = DockerSandbox::connect().await.ok();
    for name in names {
        let recipe = Recipe::load(root, &name).map_err(usage)?;
        let tag = recipe.tag();
        let built = match &sandbox {
            Some(sandbox) => sandbox.image_id(&tag).await.ok().flatten(),
            None => None,
        };
        let (installed, source) = match (&sandbox, built) {
            (Some(sandbox), Some(_)) => {
                let bytes = sandbox.image_file(&tag, crate::environment::IMAGE_LIST, 1 << 20).await.map_err(ours)?;
                let text = String::from_utf8_lossy(&bytes);
                let installed = crate::environment::Installed::of_image_list(&name, &text)
                    .map_err(|e| usage(anyhow::anyhow!("{tag}: {}: {e}", crate::environment::IMAGE_LIST)))?;
                (installed, tag.clone())
            }
            _ => {
                let installed = crate::environment::Installed::of_recipe(root, &name).map_err(|e| usage(anyhow::anyhow!(e)))?;
                (installed, format!("{tag} is not built: from its recipe, {}", recipe.dir.display()))
            }
        };
        println!("# {name} ({source}): {}", crate::units::count(installed.packages.len(), "package"));
        print!("{}", installed.listing());
    }
    Ok(())
}

/// The recipes named, or every recipe under `runner-images/`.
fn recipe_names(root: &Path, names: Vec<String>) -> Result<Vec<String>, Failure> {
    Ok(if names.is_empty() {
        let dir = root.join("runner-images");
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .with_context(|| format!("{}: cannot list runner images", dir.display()))
            .map_err(usage)?
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        found
    } else {
        names
    })
}

async fn prune_images(root: &Path, names: Vec<String>) -> Result<(), Failure> {
    // Named recipes: only their old images. None named: every recipe's, and the images of
    // recipes that are gone from runner-images/.
    let gone_under = names.is_empty().then_some(root);
    let names = recipe_names(root, names)?;
    let current: Vec<String> = names.iter().map(|name| Recipe::load(root, name).map(|r| r.tag())).collect::<Result<_, _>>().map_err(usage)?;
    let sandbox = DockerSandbox::connect().await.map_err(ours)?;
    let pruned = sandbox.prune_images(&current, &names, gone_under).await.map_err(ours)?;
    let mut freed = 0;
    for p in &pruned {
        match &p.kept {
            None => {
                freed += p.bytes;
                println!("removed {} ({})", p.tag, crate::units::format_size(p.bytes));
            }
            Some(why) => println!("kept {}: {why}", p.tag),
        }
    }
    println!(
        "{} old image{} removed, {} freed; current: {}",
        pruned.iter().filter(|p| p.kept.is_none()).count(),
        if pruned.len() == 1 { "" } else { "s" },
        crate::units::format_size(freed),
        current.join(", ")
    );
    Ok(())
}

async fn build_images(root: &Path, names: Vec<String>, method: BuildMethod, force: bool) -> Result<(), Failure> {
    let names = recipe_names(root, names)?;
    let sandbox = DockerSandbox::connect().await.map_err(ours)?;
    for name in names {
        let recipe = Recipe::load(root, &name).map_err(usage)?;
        let built =
            if force { sandbox.build_image(&recipe, method, &progress).await } else { sandbox.ensure_image(&recipe, method, &progress).await }.map_err(ours)?;
        let state = if built.built_now { "built" } else { "up to date" };
        println!("{name}: {} {state}", built.tag);
    }
    Ok(())
}

/// `takehome score`'s options beside the metric and the two files.
struct ScoreOptions {
    id: Option<String>,
    target: Option<String>,
    positive: Option<String>,
    key: Option<String>,
    tolerance: Option<f64>,
    missing: Vec<String>,
    task: Option<PathBuf>,
}

fn score(metric: Option<&str>, truth: Option<&Path>, predictions: &Path, options: ScoreOptions) -> Result<(), Failure> {
    use crate::grading;
    use crate::task::{GradingSpec, Metric, MetricInput, Scale};
    let metric = match metric {
        Some(name) => Some(Metric::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            usage(anyhow::anyhow!("unknown metric {name:?} (expected one of {})", known.join(", ")))
        })?),
        None => None,
    };
    let ScoreOptions { id, target, positive, key, tolerance, missing, task } = options;
    let output = predictions.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // The task's own truth is scored on its slices too.
    let mut slice_dataset = None;
    let (mut spec, truth) = match (&task, metric, truth) {
        (Some(dir), metric, truth) => {
            let spec = task::Catalog::load_folder(dir).map_err(usage)?;
            if truth.is_none() {
                slice_dataset = Some(spec.dataset_dir());
            }
            // The task's output graded with this metric (any, when none is named); of several,
            // the one with this file name.
            let matching: Vec<&GradingSpec> = spec.outputs.iter().filter(|o| metric.is_none_or(|m| o.metric == m)).collect();
            let chosen = match matching.as_slice() {
                [] => {
                    let theirs: Vec<String> = spec.outputs.iter().map(|o| format!("{} with {}", o.output, o.metric.name())).collect();
                    let metric = metric.map_or("", |m| m.name());
                    return Err(usage(anyhow::anyhow!("{} grades {}, not with {metric}", dir.display(), theirs.join(" and "))));
                }
                [one] => *one,
                several => several.iter().find(|o| o.output == output).copied().ok_or_else(|| {
                    let names: Vec<&str> = several.iter().map(|o| o.output.as_str()).collect();
                    usage(anyhow::anyhow!("{} grades {}: name the predictions file as one of them", dir.display(), names.join(", ")))
                })?,
            };
            let truth = truth.map_or_else(|| spec.truth_path(chosen), Path::to_path_buf);
            (chosen.clone(), truth)
        }
        (None, Some(metric), Some(truth)) => (
            GradingSpec {
                output: output.clone(),
                truth: truth.display().to_string(),
                id: None,
                target: None,
                positive: None,
                classes: None,
                columns: Vec::new(),
                metric,
                scale: Scale { zero_at: 0.0, full_at: 1.0 },
                weight: 1.0,
                tolerance: crate::task::DEFAULT_TOLERANCE,
                missing: GradingSpec::default_missing(),
                slices: Vec::new(),
            },
            truth.to_path_buf(),
        ),
        (None, _, _) => return Err(usage(anyhow::anyhow!("name the metric and the truth (--metric, --truth), or a task (--task)"))),
    };
    let truth = truth.as_path();
    let metric = spec.metric;
    spec.output = output;
    if metric.input() == MetricInput::Table {
        // The row key: --key, or --id, which names the same thing for a table.
        if let (Some(key), Some(id)) = (&key, &id) {
            if key != id {
                return Err(usage(anyhow::anyhow!("--key {key:?} and --id {id:?}: a cleaned table has one row key (give one of them)")));
            }
        }
        if let Some(key) = key.or(id) {
            spec.id = Some(key);
        }
        if let Some(tolerance) = tolerance {
            if tolerance.is_nan() || tolerance < 0.0 {
                return Err(usage(anyhow::anyhow!("--tolerance {tolerance}: expected a number of at least 0")));
            }
            spec.tolerance = tolerance;
        }
        if !missing.is_empty() {
            spec.missing = missing;
            if !spec.missing.iter().any(String::is_empty) {
                spec.missing.insert(0, String::new());
            }
        }
        let slices = slices_of(&spec, slice_dataset.as_deref())?;
        let accuracy = grading::grade_output_sliced(&spec, predictions, truth, &slices).map_err(usage)?;
        return match (accuracy.value, accuracy.problem, accuracy.cleaning) {
            (_, Some(problem), _) => Err(ours(anyhow::anyhow!("{}: {}", problem.kind.as_str(), problem.message))),
            (Some(value), None, details) => {
                let mut answer = serde_json::json!({ "metric": metric.name(), "value": value, "n_rows": accuracy.n_rows, "key": spec.id,
                    "tolerance": spec.tolerance, "missing": spec.missing, "details": details });
                if !accuracy.slices.is_empty() {
                    answer["slices"] = serde_json::json!(accuracy.slices);
                }
                println!("{answer}");
                Ok(())
            }
            (None, None, _) => Err(ours(anyhow::anyhow!("no value"))),
        };
    }
    if key.is_some() || tolerance.is_some() || !missing.is_empty() {
        return Err(usage(anyhow::anyhow!("--key, --tolerance and --missing are for cell_accuracy (a cleaned table); {} uses --id", metric.name())));
    }
    let positive = positive.or(spec.positive.take());
    if metric.needs_positive() && positive.is_none() {
        return Err(usage(anyhow::anyhow!("{} is binary: name the positive label with --positive", metric.name())));
    }
    let id = id.or(spec.id.take()).unwrap_or_else(|| "id".to_string());
    let target = match target.or(spec.target.take()) {
        Some(target) => target,
        None => {
            let names = grading::table::header(truth).map_err(|message| usage(anyhow::anyhow!("{}: {message}", truth.display())))?;
            let others: Vec<&String> = names.iter().filter(|n| **n != id).collect();
            match others[..] {
                [only] => only.clone(),
                _ => return Err(usage(anyhow::anyhow!("{}: name the target column with --target (columns: {})", truth.display(), names.join(", ")))),
            }
        }
    };
    spec.id = Some(id);
    spec.target = Some(target);
    spec.positive = positive;
    let slices = slices_of(&spec, slice_dataset.as_deref())?;
    let accuracy = grading::grade_output_sliced(&spec, predictions, truth, &slices).map_err(usage)?;
    match (accuracy.value, accuracy.problem) {
        (_, Some(problem)) => Err(ours(anyhow::anyhow!("{}: {}", problem.kind.as_str(), problem.message))),
        (Some(value), None) => {
            let mut answer = serde_json::json!({ "metric": metric.name(), "value": value, "n_rows": accuracy.n_rows });
            if !accuracy.slices.is_empty() {
                answer["slices"] = serde_json::json!(accuracy.slices);
            }
            println!("{answer}");
            Ok(())
        }
        (None, None) => Err(ours(anyhow::anyhow!("no value"))),
    }
}

/// The task's slices of its hidden rows, read from its data set (`None`: no slices).
fn slices_of(spec: &crate::task::GradingSpec, dataset: Option<&Path>) -> Result<Vec<crate::grading::slices::Slice>, Failure> {
    match dataset {
        Some(dataset) => crate::grading::slices::members(spec, dataset).map_err(|message| usage(anyhow::anyhow!("{message}"))),
        None => Ok(Vec::new()),
    }
}

/// Fixtures of `task` that this machine can grade at once: one per core, and no more than three
/// quarters of its memory holds at the task's largest step (its memory limit plus its storage).
fn default_jobs(task: Option<&task::TaskSpec>) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.split_whitespace().next()).and_then(|kb| kb.parse::<u64>().ok()))
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30);
    let per_fixture =
        task.map(|t| t.steps.iter().map(|s| s.memory_bytes).max().unwrap_or(2 << 30) + t.workspace_cap_bytes + t.output_cap_bytes).unwrap_or(2 << 30);
    cores.min((total * 3 / 4 / per_fixture.max(1)) as usize).max(1)
}

async fn check(
    root: &Path,
    tasks: Vec<PathBuf>,
    junit: Option<&Path>,
    runtime: crate::sandbox::Runtime,
    only_fixtures: Option<&str>,
    jobs: Option<usize>,
    quick: bool,
) -> Result<(), Failure> {
    use crate::check::{self, CaseResult, CaseStatus};
    let tasks = if tasks.is_empty() {
        check::discover_tasks(root).with_context(|| format!("{}: cannot list tasks", root.join("tasks").display())).map_err(usage)?
    } else {
        tasks
    };
    let sandbox = DockerSandbox::connect().await.map_err(ours)?.with_runtime(runtime);
    sandbox.check_runtime(runtime).await.map_err(ours)?;
    eprintln!("takehome: check: containers run under {}", runtime.as_str());
    sandbox.remove_leftovers(Leftovers::OfDeadProcesses).await.map_err(ours)?;
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(cancel_on_signal(cancel.clone(), Stopping::Job));
    let mut results: Vec<CaseResult> = Vec::new();
    let started = std::time::Instant::now();
    for task_dir in &tasks {
        // The image of a task that does not even load is reported by the task-file check.
        let loaded = task::Catalog::load_folder(task_dir);
        let image = match &loaded {
            Ok(spec) => {
                for other in spec.images().iter().skip(1) {
                    sandbox.ensure_image(&Recipe::load(&spec.root, other).map_err(ours)?, BuildMethod::Auto, &progress).await.map_err(ours)?;
                }
                let recipe = Recipe::load(&spec.root, &spec.image).map_err(ours)?;
                let built = sandbox.ensure_image(&recipe, BuildMethod::Auto, &progress).await.map_err(ours)?;
                ImageRef { tag: built.tag, id: built.id }
            }
            Err(_) => ImageRef { tag: String::new(), id: String::new() },
        };
        let jobs = jobs.unwrap_or_else(|| default_jobs(loaded.as_deref().ok())).max(1);
        progress(&format!("checking {} ({} at a time{})", task_dir.display(), crate::units::count(jobs, "fixture"), if quick { ", quick" } else { "" }));
        let print = |case: &CaseResult| {
            let status = match case.status {
                CaseStatus::Passed => "passed",
                CaseStatus::Failed => "FAILED",
                CaseStatus::Warning => "warning",
            };
            let first = case.message.lines().next().unwrap_or("");
            eprintln!("check: {:<20} {:<34} {status:<8} {:>6.1} s  {first}", case.task, case.name, case.seconds);
        };
        let options = check::CheckOptions { only_fixtures, quick, jobs };
        let task_name = task_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let task_results = check::check_task(&sandbox, (&task_name, &loaded), &image, &options, &cancel, &print).await;
        if cancel.is_cancelled() {
            results.extend(task_results);
            break;
        }
        // A full check stores the task's fixtures' grades as its baselines and says how they moved.
        if let Some(spec) = loaded.as_ref().ok().filter(|_| only_fixtures.is_none()) {
            let new: Vec<check::Baseline> = task_results.iter().filter_map(|r| r.baseline.clone()).collect();
            if !new.is_empty() {
                let old = check::load_baselines(&spec.root, &spec.id);
                for shift in check::baseline_shifts(&old, &new) {
                    eprintln!("check: {:<20} baseline shift: {shift}", spec.id);
                }
                let path = check::baselines_path(&spec.root, &spec.id);
                // Graded again with nothing moved: the stored file stays as it is (no change to
                // commit for a timestamp).
                let written = match check::baselines_same(&old, &new) {
                    true => Ok(()),
                    false => std::fs::create_dir_all(path.parent().unwrap_or(&spec.root))
                        .and_then(|()| std::fs::write(&path, serde_json::to_string_pretty(&new).unwrap_or_default() + "\n")),
                };
                if let Err(e) = written {
                    eprintln!("check: {:<20} cannot store the baselines in {}: {e}", spec.id, path.display());
                }
            }
        }
        results.extend(task_results);
    }
    watcher.abort();
    if let Some(path) = junit {
        std::fs::write(path, check::junit(&results)).with_context(|| format!("cannot write {}", path.display())).map_err(ours)?;
    }
    let failed: Vec<&CaseResult> = results.iter().filter(|r| r.status == CaseStatus::Failed).collect();
    let warnings = results.iter().filter(|r| r.status == CaseStatus::Warning).count();
    println!(
        "\ntakehome check: {}, {} in {:.0} s\n",
        crate::units::count(tasks.len(), "task"),
        crate::units::count(results.len(), "check"),
        started.elapsed().as_secs_f64()
    );
    println!("{:<8} {:<20} {:<34} {:>8}  detail", "result", "task", "check", "seconds");
    for case in &results {
        let status = match case.status {
            CaseStatus::Passed => "passed",
            CaseStatus::Failed => "FAILED",
            CaseStatus::Warning => "warning",
        };
        let detail: String = case.message.lines().next().unwrap_or("").chars().take(70).collect();
        println!("{status:<8} {:<20} {:<34} {:>8.1}  {detail}", case.task, case.name, case.seconds);
    }
    println!();
    for case in &failed {
        println!("FAILED {} / {}:\n  {}", case.task, case.name, case.message.replace('\n', "\n  "));
    }
    for case in results.iter().filter(|r| r.status == CaseStatus::Warning) {
        println!("warning {} / {}: {}", case.task, case.name, case.message);
    }
    if warnings > 0 {
        println!("{}", crate::units::count(warnings, "warning"));
    }
    println!("{} passed, {} failed", results.len() - failed.len(), failed.len());
    if cancel.is_cancelled() {
        return Err(Failure { code: 130, error: anyhow::anyhow!("interrupted") });
    }
    if !failed.is_empty() {
        return Err(ours(anyhow::anyhow!("{} check(s) failed", failed.len())));
    }
    Ok(())
}

/// A refused backup or restore is the user's to fix (usage); a failed one is ours.
fn backup_failure(error: crate::backup::BackupError) -> Failure {
    match error {
        crate::backup::BackupError::Postgres | crate::backup::BackupError::Invalid(_) => usage(error),
        other => ours(other),
    }
}

async fn assign(
    config: &crate::config::Config,
    task_id: &str,
    candidate: &str,
    time_box: Option<&str>,
    starts: Starts,
    email: Option<String>,
) -> Result<(), Failure> {
    let id = task::TaskId::parse(task_id).map_err(|m| usage(anyhow::anyhow!("{m}")))?;
    let tasks = task::Catalog::new(config.tasks_root.clone());
    if !tasks.dir(&id).is_dir() {
        return Err(usage(anyhow::anyhow!(
            "no task {task_id:?} in {}: tasks are read from `tasks_root` ({}), which is the current folder unless the config or \
             TAKEHOME_TASKS_ROOT names another; run from the folder that holds tasks/, or set tasks_root",
            config.tasks_root.join("tasks").display(),
            config.tasks_root.display()
        )));
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create {}", config.data_dir.display())).map_err(ours)?;
    let store = crate::store::open(&config.database).await.with_context(|| format!("cannot open the store {}", config.database.describe())).map_err(ours)?;
    let repos = crate::intake::Repos::new(config.repos_dir(), config.hooks_dir());
    let request = crate::assign::Request {
        task: task_id.to_string(),
        candidate: candidate.to_string(),
        time_box: time_box.map(String::from),
        starts: if starts == Starts::Now { crate::store::Starts::Now } else { crate::store::Starts::OnClone },
        email,
    };
    let made = match crate::assign::create(store.as_ref(), &repos, &tasks, config.max_push_bytes, config.mail.is_some(), &request).await {
        Ok(made) => made,
        Err(crate::assign::AssignError::Invalid { field, message }) => {
            let flag = if field == "time_box" { "time-box" } else { field };
            return Err(usage(anyhow::anyhow!("--{flag}: {message}")));
        }
        Err(error) => return Err(ours(anyhow::Error::new(error))),
    };
    let (id, url) = (made.assignment.id.clone(), made.clone_url(&config.public_url));
    let token = &made.token;
    println!(
        "assignment {id}: {} for {}, {} ({})",
        made.title,
        made.assignment.candidate,
        crate::units::format_duration(std::time::Duration::from_secs(made.assignment.time_box_seconds as u64)),
        if starts == Starts::Now { "the clock runs from now" } else { "the clock starts at the first clone" }
    );
    println!("clone:  git clone {url}");
    println!("user:   {id}");
    println!("token:  {token}");
    println!("status: {}/status/{id}", config.public_url.trim_end_matches('/'));
    if let Some(to) = &made.invited {
        println!("invitation to {to}: queued; the running server sends it (GET /api/emails shows its state)");
    }
    Ok(())
}

fn validate(tasks: Vec<PathBuf>, root: Option<PathBuf>) -> Result<(), Failure> {
    let tasks = if tasks.is_empty() {
        let root = root.unwrap_or_else(|| PathBuf::from("."));
        crate::check::discover_tasks(&root)
            .with_context(|| {
                format!("{}: cannot list task folders (run from the project folder, pass --root, or name the tasks)", root.join("tasks").display())
            })
            .map_err(usage)?
    } else {
        tasks
    };
    let mut n_invalid = 0;
    for dir in &tasks {
        match task::Catalog::load_folder(dir) {
            Ok(spec) => {
                // The task file holds; now its data: columns, labels, ids.
                let problems = crate::grading::task_data::check(&spec);
                if problems.is_empty() {
                    println!("{}: ok ({}, {})", dir.display(), spec.kind.as_str(), crate::units::count(spec.steps.len(), "step"));
                } else {
                    n_invalid += 1;
                    println!("{}", crate::grading::task_data::render(&spec, &problems));
                }
            }
            Err(error) => {
                n_invalid += 1;
                println!("{}", crate::errors::Chain(&error));
            }
        }
    }
    println!("{} valid, {n_invalid} invalid", tasks.len() - n_invalid);
    if n_invalid > 0 {
        return Err(usage(anyhow::anyhow!("{} invalid", crate::units::count(n_invalid, "task"))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let inner = crate::submission::SubmissionError::Io { action: "read", path: "/x".into(), source: io };
        let error = anyhow::Error::new(inner).context("cannot grade");
        assert_eq!(super::describe_chain(&error), "cannot grade: read /x: No such file or directory (os error 2)");
    }
}
