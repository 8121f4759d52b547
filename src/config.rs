//! The daemon's configuration: one `Config`, loaded once — defaults, then the file
//! (`takehome serve --config FILE`, YAML, unknown keys refused), then `TAKEHOME_*` environment
//! variables, then flags. README has a table of every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::units::{format_size, parse_size};

pub const DEFAULT_DATA_DIR: &str = "takehome-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_PUSH: &str = "100MiB";
pub const DEFAULT_TASKS_ROOT: &str = ".";
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_REPO_QUOTA: &str = "1GiB";
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
pub const DEFAULT_MAX_GIT_PROCESSES: usize = 8;
/// How long a worker's claim on a job lasts without a heartbeat (renewed every third of it).
pub const DEFAULT_LEASE_SECONDS: i64 = 30;
/// At most this many of one assignment's pushes are graded in any hour (the rest wait their turn):
/// what a candidate can learn of the hidden data per hour is bounded by it (docs/security.md §7).
pub const DEFAULT_GRADED_PUSHES_PER_HOUR: i64 = 20;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SQLite file and the candidates' bare repositories live.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The address candidates clone from, as printed by `assign` (default: http://LISTEN).
    pub public_url: String,
    /// Jobs graded at once (default: one per two cores, at least one).
    pub workers: usize,
    pub max_push_bytes: u64,
    /// The project folder with tasks/, datasets/ and runner-images/.
    pub tasks_root: PathBuf,
    /// Attempts for a job that fails on our side before it is marked infrastructure_error.
    pub retries: u32,
    pub assessors: Vec<Assessor>,
    /// The most a candidate's repository may hold on disk; a push past it is refused.
    pub repo_quota_bytes: u64,
    /// Open HTTP connections at once; more are closed as they arrive.
    pub max_connections: usize,
    /// git processes (clones, fetches, pushes) at once; more wait their turn.
    pub max_git_processes: usize,
    /// The bearer token that `/metrics` asks for; without one, `/metrics` is off.
    pub metrics_token: Option<String>,
    /// The container runtime of every job (a task may ask for a stronger one).
    pub runtime: crate::sandbox::Runtime,
    /// Where the store lives (default: `sqlite:<data_dir>/takehome.sqlite`).
    pub database: crate::store::DatabaseUrl,
    /// SHA-256 (hex) of the token workers on other hosts fetch commits with; without it the
    /// server serves no worker.
    pub worker_token_sha256: Option<String>,
    /// Seconds a job's lease lasts without a heartbeat.
    pub lease_seconds: i64,
    /// At most this many of one assignment's pushes graded in any hour; 0: no limit.
    pub graded_pushes_per_hour: i64,
    /// Where graded, reviewed and decided events are posted, signed (`webhook_url` and
    /// `webhook_secret`); none by default.
    pub webhook: Option<crate::webhook::Target>,
    /// PEM certificates trusted beside the platform's roots when the server calls out over TLS
    /// (an `https://` webhook receiver signed by a company's own CA); checked when loaded.
    pub tls_ca_file: Option<PathBuf>,
    /// `retention: {days_after_decision: N}`: a decided assignment is erased N days after its
    /// decision (`crate::erase::apply_retention`); none by default.
    pub retention_days_after_decision: Option<u32>,
    /// E-mail to candidates (`smtp_url`, `smtp_from`, `email_reminders`); none by default.
    pub mail: Option<crate::mail::Settings>,
    /// Single sign-on for assessors (`oidc: {issuer, client_id, client_secret, allowed_domains,
    /// allowed_emails}`); password logins stay beside it.
    pub oidc: Option<crate::oidc::Settings>,
}

/// An assessor's login; the password is stored as a PBKDF2 hash (`takehome hash-password`),
/// parsed when the config is loaded.
#[derive(Debug, Clone)]
pub struct Assessor {
    pub user: String,
    pub password_hash: crate::secret::PasswordHash,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAssessor {
    user: String,
    password_hash: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    public_url: Option<String>,
    workers: Option<usize>,
    max_push: Option<String>,
    tasks_root: Option<PathBuf>,
    retries: Option<u32>,
    repo_quota: Option<String>,
    max_connections: Option<usize>,
    max_git_processes: Option<usize>,
    metrics_token: Option<String>,
    database: Option<String>,
    worker_token_sha256: Option<String>,
    lease_seconds: Option<i64>,
    graded_pushes_per_hour: Option<i64>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    tls_ca_file: Option<PathBuf>,
    retention: Option<FileRetention>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    /// `[24h, 1h]` in the file; `24h,1h` in TAKEHOME_EMAIL_REMINDERS.
    email_reminders: Option<Vec<String>>,
    oidc: Option<FileOidc>,
    sandbox: Option<FileSandbox>,
    #[serde(default)]
    assessors: Vec<FileAssessor>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidc {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    #[serde(default)]
    allowed_emails: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetention {
    days_after_decision: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSandbox {
    runtime: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Value { key: String, message: String },
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| (n.get() / 2).max(1)).unwrap_or(1)
}

impl Config {
    /// Defaults, then `file`, then `TAKEHOME_*` from `env` (a function so that tests need not
    /// touch the process environment).
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let parsed: FileConfig = match file {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File { path: path.to_path_buf(), message: e.to_string() })?;
                serde_yaml::from_str(&text).map_err(|e| ConfigError::File { path: path.to_path_buf(), message: e.to_string() })?
            }
        };
        let value = |key: &str, from_file: Option<String>| env(&format!("TAKEHOME_{}", key.to_ascii_uppercase())).or(from_file);
        let data_dir = PathBuf::from(value("data_dir", parsed.data_dir.map(|p| p.display().to_string())).unwrap_or_else(|| DEFAULT_DATA_DIR.into()));
        let listen_text = value("listen", parsed.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| ConfigError::Value { key: "listen".into(), message: format!("{listen_text:?} is not an address like 127.0.0.1:8080") })?;
        let public_url = value("public_url", parsed.public_url).unwrap_or_else(|| format!("http://{listen}"));
        // 0 workers: web and intake alone (workers on other hosts grade).
        let workers = match value("workers", parsed.workers.map(|w| w.to_string())) {
            Some(text) => text
                .parse::<usize>()
                .ok()
                .ok_or_else(|| ConfigError::Value { key: "workers".into(), message: format!("{text:?} is not a number (0 or more)") })?,
            None => default_workers(),
        };
        let max_push_text = value("max_push", parsed.max_push).unwrap_or_else(|| DEFAULT_MAX_PUSH.into());
        let max_push_bytes = parse_size(&max_push_text).map_err(|e| ConfigError::Value { key: "max_push".into(), message: e.to_string() })?;
        let tasks_root = PathBuf::from(value("tasks_root", parsed.tasks_root.map(|p| p.display().to_string())).unwrap_or_else(|| DEFAULT_TASKS_ROOT.into()));
        let retries = match value("retries", parsed.retries.map(|r| r.to_string())) {
            Some(text) => text.parse().map_err(|_| ConfigError::Value { key: "retries".into(), message: format!("{text:?} is not a number") })?,
            None => DEFAULT_RETRIES,
        };
        let mut stored: Vec<(String, String)> = parsed.assessors.into_iter().map(|a| (a.user, a.password_hash)).collect();
        if let (Some(user), Some(hash)) = (env("TAKEHOME_ASSESSOR_USER"), env("TAKEHOME_ASSESSOR_PASSWORD_HASH")) {
            stored.push((user, hash));
        }
        let mut assessors = Vec::new();
        for (user, hash) in stored {
            if user.is_empty() || user.contains(':') {
                return Err(ConfigError::Value { key: "assessors".into(), message: format!("{user:?}: a user name must be non-empty and have no ':'") });
            }
            if assessors.iter().any(|a: &Assessor| a.user == user) {
                return Err(ConfigError::Value { key: "assessors".into(), message: format!("{user}: listed twice") });
            }
            let password_hash = crate::secret::PasswordHash::parse(&hash)
                .map_err(|message| ConfigError::Value { key: "assessors".into(), message: format!("{user}: password_hash: {message}") })?;
            assessors.push(Assessor { user, password_hash });
        }
        let repo_quota_text = value("repo_quota", parsed.repo_quota).unwrap_or_else(|| DEFAULT_REPO_QUOTA.into());
        let repo_quota_bytes = parse_size(&repo_quota_text).map_err(|e| ConfigError::Value { key: "repo_quota".into(), message: e.to_string() })?;
        let positive = |key: &str, from_file: Option<usize>, default: usize| -> Result<usize, ConfigError> {
            match value(key, from_file.map(|n| n.to_string())) {
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| ConfigError::Value { key: key.into(), message: format!("{text:?} is not a positive number") }),
                None => Ok(default),
            }
        };
        let max_connections = positive("max_connections", parsed.max_connections, DEFAULT_MAX_CONNECTIONS)?;
        let max_git_processes = positive("max_git_processes", parsed.max_git_processes, DEFAULT_MAX_GIT_PROCESSES)?;
        let metrics_token = value("metrics_token", parsed.metrics_token).filter(|t| !t.is_empty());
        let runtime_text = value("sandbox_runtime", parsed.sandbox.and_then(|s| s.runtime)).unwrap_or_else(|| "runc".into());
        let runtime = crate::sandbox::Runtime::parse(&runtime_text).ok_or_else(|| ConfigError::Value {
            key: "sandbox.runtime".into(),
            message: format!("{runtime_text:?} is not a runtime (expected runc or runsc)"),
        })?;
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Value { key: "metrics_token".into(), message: "must be at least 16 characters".into() });
        }
        // Paths are made absolute once, here: git and other child processes run in other folders,
        // so a relative path would mean something else to each of them.
        let absolute = |key: &str, path: PathBuf| {
            std::path::absolute(&path).map_err(|e| ConfigError::Value { key: key.into(), message: format!("{}: {e}", path.display()) })
        };
        let data_dir = absolute("data_dir", data_dir)?;
        let database = match value("database", parsed.database) {
            Some(text) => crate::store::DatabaseUrl::parse(&text).map_err(|e| ConfigError::Value { key: "database".into(), message: e.to_string() })?,
            None => crate::store::DatabaseUrl::Sqlite(data_dir.join("takehome.sqlite")),
        };
        let database = match database {
            crate::store::DatabaseUrl::Sqlite(path) => crate::store::DatabaseUrl::Sqlite(absolute("database", path)?),
            other => other,
        };
        let worker_token_sha256 = value("worker_token_sha256", parsed.worker_token_sha256).filter(|t| !t.is_empty());
        if let Some(hash) = &worker_token_sha256 {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Value {
                    key: "worker_token_sha256".into(),
                    message: "expected the SHA-256 of the worker token, 64 hex digits (takehome worker-token prints both)".into(),
                });
            }
        }
        let lease_seconds = match value("lease_seconds", parsed.lease_seconds.map(|n| n.to_string())) {
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|&n| (3..=3600).contains(&n))
                .ok_or_else(|| ConfigError::Value { key: "lease_seconds".into(), message: format!("{text:?} is not a number of seconds from 3 to 3600") })?,
            None => DEFAULT_LEASE_SECONDS,
        };
        let graded_pushes_per_hour = match value("graded_pushes_per_hour", parsed.graded_pushes_per_hour.map(|n| n.to_string())) {
            Some(text) => text.parse::<i64>().ok().filter(|&n| (0..=3600).contains(&n)).ok_or_else(|| ConfigError::Value {
                key: "graded_pushes_per_hour".into(),
                message: format!("{text:?} is not a number of pushes from 0 (no limit) to 3600"),
            })?,
            None => DEFAULT_GRADED_PUSHES_PER_HOUR,
        };
        let tasks_root = absolute("tasks_root", tasks_root)?;
        let webhook = match (value("webhook_url", parsed.webhook_url).filter(|u| !u.is_empty()), value("webhook_secret", parsed.webhook_secret)) {
            (None, _) => None,
            (Some(url), secret) => Some(
                crate::webhook::Target::parse(&url, secret.as_deref().unwrap_or(""))
                    .map_err(|e| ConfigError::Value { key: "webhook".into(), message: crate::errors::chain(&e) })?,
            ),
        };
        let tls_ca_file = match value("tls_ca_file", parsed.tls_ca_file.map(|p| p.display().to_string())).filter(|p| !p.is_empty()) {
            None => None,
            Some(text) => {
                let path = absolute("tls_ca_file", PathBuf::from(text))?;
                crate::tls::client_config(Some(&path)).map_err(|e| ConfigError::Value { key: "tls_ca_file".into(), message: crate::errors::chain(&e) })?;
                Some(path)
            }
        };
        let retention_days_after_decision =
            match value("retention_days_after_decision", parsed.retention.and_then(|r| r.days_after_decision).map(|n| n.to_string())) {
                None => None,
                Some(text) => Some(text.parse::<u32>().ok().filter(|n| (1..=36_500).contains(n)).ok_or_else(|| ConfigError::Value {
                    key: "retention.days_after_decision".into(),
                    message: format!("{text:?} is not a number of days from 1 to 36500"),
                })?),
            };
        let mail = match value("smtp_url", parsed.smtp_url).filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let from = value("smtp_from", parsed.smtp_from);
                let reminders = value("email_reminders", parsed.email_reminders.map(|r| r.join(",")));
                Some(
                    crate::mail::Settings::parse(&url, from.as_deref(), reminders.as_deref())
                        .map_err(|(key, message)| ConfigError::Value { key: key.into(), message })?,
                )
            }
        };
        let file_oidc = parsed.oidc.unwrap_or_default();
        let list = |key: &str, from_file: Vec<String>| match env(&format!("TAKEHOME_{}", key.to_ascii_uppercase())) {
            Some(text) => text.split(',').map(str::to_string).collect(),
            None => from_file,
        };
        let oidc = match value("oidc_issuer", file_oidc.issuer).filter(|i| !i.is_empty()) {
            None => None,
            Some(issuer) => Some(
                crate::oidc::Settings::new(
                    &issuer,
                    &value("oidc_client_id", file_oidc.client_id).unwrap_or_default(),
                    &value("oidc_client_secret", file_oidc.client_secret).unwrap_or_default(),
                    list("oidc_allowed_domains", file_oidc.allowed_domains),
                    list("oidc_allowed_emails", file_oidc.allowed_emails),
                )
                .map_err(|(key, message)| ConfigError::Value { key: key.into(), message })?,
            ),
        };
        Ok(Config {
            data_dir,
            listen,
            public_url,
            workers,
            max_push_bytes,
            tasks_root,
            retries,
            assessors,
            repo_quota_bytes,
            max_connections,
            max_git_processes,
            metrics_token,
            runtime,
            database,
            worker_token_sha256: worker_token_sha256.map(|h| h.to_ascii_lowercase()),
            lease_seconds,
            graded_pushes_per_hour,
            webhook,
            tls_ca_file,
            retention_days_after_decision,
            mail,
            oidc,
        })
    }

    pub fn repos_dir(&self) -> PathBuf {
        self.data_dir.join("repos")
    }

    /// True when candidates and assessors reach the daemon over https (cookies get `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_url.to_ascii_lowercase().starts_with("https://")
    }

    /// The folder of our own git hooks (the pre-receive check of a push's tree).
    pub fn hooks_dir(&self) -> PathBuf {
        self.data_dir.join("hooks")
    }

    pub fn describe(&self) -> String {
        format!(
            "data {} · {} · listen {} · {} workers · pushes up to {} · tasks from {}",
            self.data_dir.display(),
            self.database.describe(),
            self.listen,
            self.workers,
            format_size(self.max_push_bytes),
            self.tasks_root.display()
        )
    }
}
