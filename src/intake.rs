//! Git intake: the candidates' bare repositories and git's smart HTTP protocol.
//!
//! Invariants: git runs only on our own bare repositories, with a cleared environment, no system
//! or global config and no hooks, so nothing a candidate pushes can make the server run it. A
//! push is accepted only before the deadline by the server's clock (never git's dates). The web
//! layer owns the routes; this module owns the protocol (pkt-lines, side-band messages) and the
//! `git upload-pack` / `git receive-pack --stateless-rpc` processes behind them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::task::TaskSpec;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("git {action}: {message}")]
    Git { action: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The two services of git's smart HTTP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    pub fn parse(name: &str) -> Option<Service> {
        match name {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }
    fn subcommand(self) -> &'static str {
        match self {
            Service::UploadPack => "upload-pack",
            Service::ReceivePack => "receive-pack",
        }
    }
}

/// A pkt-line: four hex digits of length, then the data.
pub fn pkt_line(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

pub const FLUSH: &[u8] = b"0000";

/// A message the git client prints as `remote: …` (side-band channel 2).
pub fn sideband_message(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut data = vec![2u8];
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
        out.extend(pkt_line(&data));
    }
    out
}

/// The first lines of an advertisement (`# service=…` and a flush).
pub fn advertisement_header(service: Service) -> Vec<u8> {
    let mut out = pkt_line(format!("# service={}\n", service.name()).as_bytes());
    out.extend_from_slice(FLUSH);
    out
}

/// An advertisement that the client reports as `fatal: remote error: <message>`.
pub fn advertisement_error(service: Service, message: &str) -> Vec<u8> {
    let mut out = advertisement_header(service);
    out.extend(pkt_line(format!("ERR {message}\n").as_bytes()));
    out
}

/// True when a receive-pack request asks for side-band messages (the first command's capabilities).
pub fn wants_sideband(request: &[u8]) -> bool {
    let window = &request[..request.len().min(4096)];
    window.windows(13).any(|w| w == b"side-band-64k")
}

/// A receive-pack reply that refuses every pushed ref with `reason`, and says why.
pub fn refusal(request: &[u8], reason: &str) -> Vec<u8> {
    let mut status = pkt_line(format!("unpack {reason}\n").as_bytes());
    for reference in pushed_refs(request) {
        status.extend(pkt_line(format!("ng {reference} {reason}\n").as_bytes()));
    }
    status.extend_from_slice(FLUSH);
    if !wants_sideband(request) {
        return status;
    }
    let mut out = sideband_message(&format!("takehome: push refused: {reason}"));
    for chunk in status.chunks(65000) {
        let mut data = vec![1u8];
        data.extend_from_slice(chunk);
        out.extend(pkt_line(&data));
    }
    out.extend_from_slice(FLUSH);
    out
}

/// The refs a receive-pack request updates (`old new ref` command lines before the first flush).
fn pushed_refs(request: &[u8]) -> Vec<String> {
    let mut refs = Vec::new();
    let mut at = 0;
    while at + 4 <= request.len() {
        let Some(length) = std::str::from_utf8(&request[at..at + 4]).ok().and_then(|h| usize::from_str_radix(h, 16).ok()) else { break };
        if length == 0 || at + length > request.len() || length < 4 {
            break;
        }
        let line = String::from_utf8_lossy(&request[at + 4..at + length]);
        let command = line.split('\0').next().unwrap_or("").trim();
        if let Some(reference) = command.split_whitespace().nth(2) {
            refs.push(reference.to_string());
        }
        at += length;
    }
    refs
}

/// The candidates' bare repositories, one per assignment, under one folder.
#[derive(Debug, Clone)]
pub struct Repos {
    dir: PathBuf,
}

fn git_command(dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .current_dir(dir);
    command
}

fn run(mut command: std::process::Command, action: &str) -> Result<String, IntakeError> {
    let output = command.output()?;
    if !output.status.success() {
        return Err(IntakeError::Git { action: action.to_string(), message: String::from_utf8_lossy(&output.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

impl Repos {
    pub fn new(dir: PathBuf) -> Repos {
        Repos { dir }
    }

    /// `<dir>/<assignment>.git`; the id is one of ours (checked by the caller to be plain).
    pub fn path(&self, assignment: &str) -> PathBuf {
        self.dir.join(format!("{assignment}.git"))
    }

    /// Creates the bare repository seeded with the brief, the starter code and the public data.
    pub fn create(&self, assignment: &str, task: &TaskSpec, max_push_bytes: u64) -> Result<PathBuf, IntakeError> {
        std::fs::create_dir_all(&self.dir)?;
        let bare = self.path(assignment);
        run({
            let mut c = git_command(&self.dir);
            c.args(["init", "-q", "--bare", "--initial-branch=main"]).arg(&bare);
            c
        }, "init")?;
        for (key, value) in [
            ("receive.maxInputSize", max_push_bytes.to_string()),
            ("receive.denyDeletes", "true".into()),
            ("receive.denyDeleteCurrent", "true".into()),
            ("http.receivepack", "true".into()),
            ("core.hooksPath", "/dev/null".into()),
        ] {
            run({
                let mut c = git_command(&bare);
                c.args(["config", key, &value]);
                c
            }, "config")?;
        }
        // Seed: a work tree of our own, committed into the bare repository.
        let seed = tempfile::tempdir()?;
        std::fs::copy(task.dir.join(&task.brief), seed.path().join("README.md"))?;
        copy_tree(&task.dir.join(&task.starter), seed.path())?;
        copy_tree(&task.dataset_dir().join("public"), &seed.path().join("data").join("public"))?;
        let git = |args: &[&str], action: &str| -> Result<String, IntakeError> {
            let mut c = git_command(seed.path());
            c.arg("--git-dir").arg(&bare).arg("--work-tree").arg(seed.path());
            c.args(["-c", "user.name=takehome", "-c", "user.email=takehome@localhost"]).args(args);
            run(c, action)
        };
        git(&["add", "-A"], "add")?;
        git(&["commit", "-q", "-m", &format!("{}: brief, starter code and public data", task.title)], "commit")?;
        Ok(bare)
    }

    /// The commit that `refs/heads/main` points at, if any.
    pub fn main_commit(&self, assignment: &str) -> Option<String> {
        let mut c = git_command(&self.dir);
        c.arg("--git-dir").arg(self.path(assignment)).args(["rev-parse", "--verify", "-q", "refs/heads/main"]);
        run(c, "rev-parse").ok().filter(|s| !s.is_empty())
    }

    /// Writes the tree of `commit` into `dest` (git refuses to write through links it created).
    pub fn checkout(&self, assignment: &str, commit: &str, dest: &Path) -> Result<(), IntakeError> {
        let mut c = git_command(&self.dir);
        c.arg("--git-dir").arg(self.path(assignment)).arg("--work-tree").arg(dest).args(["-c", "core.symlinks=true", "checkout", "-f", commit, "--", "."]);
        // A checkout must not move the bare repository's index forever: use a private index.
        let index = tempfile::tempdir()?;
        c.env("GIT_INDEX_FILE", index.path().join("index"));
        run(c, "checkout").map(|_| ())
    }

    /// Runs `git <service> --stateless-rpc [--advertise-refs] <repo>` with `input`; returns stdout.
    pub async fn serve(&self, assignment: &str, service: Service, advertise: bool, input: &[u8]) -> Result<Vec<u8>, IntakeError> {
        let mut command = tokio::process::Command::from(git_command(&self.dir));
        command.arg(service.subcommand()).arg("--stateless-rpc");
        if advertise {
            command.arg("--advertise-refs");
        }
        command.arg(self.path(assignment)).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        });
        let output = tokio::time::timeout(std::time::Duration::from_secs(600), child.wait_with_output())
            .await
            .map_err(|_| IntakeError::Git { action: service.subcommand().into(), message: "no answer within 10 minutes".into() })??;
        let _ = writer.await;
        if !output.status.success() && output.stdout.is_empty() {
            return Err(IntakeError::Git { action: service.subcommand().into(), message: String::from_utf8_lossy(&output.stderr).trim().to_string() });
        }
        Ok(output.stdout)
    }
}

/// Copies regular files and folders (no links) from `from` into `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.map_err(std::io::Error::from)?;
        let relative = entry.path().strip_prefix(from).expect("below its root");
        let target = to.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if entry.file_type().is_file() {
            std::fs::create_dir_all(target.parent().expect("a file has a parent"))?;
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkt_lines_and_refusals() {
        assert_eq!(pkt_line(b"# service=git-upload-pack\n"), b"001e# service=git-upload-pack\n".to_vec());
        let request = [pkt_line(b"0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 refs/heads/main\0 report-status side-band-64k"), FLUSH.to_vec()].concat();
        assert!(wants_sideband(&request));
        assert_eq!(pushed_refs(&request), ["refs/heads/main"]);
        let reply = String::from_utf8_lossy(&refusal(&request, "the deadline passed")).into_owned();
        assert!(reply.contains("takehome: push refused: the deadline passed"));
        assert!(reply.contains("ng refs/heads/main the deadline passed"));
    }
}
