//! Git intake: the candidates' bare repositories, git's smart HTTP protocol, and the push rules.
//!
//! Invariants:
//! - git runs only on our own bare repositories, with a cleared environment and no system or
//!   global config. The only hook is our own `pre-receive` (in a folder of ours, named with `-c
//!   core.hooksPath` on each push), which checks the pushed tree from git's own object listing
//!   *before* the refs move and before anything is checked out: a tree larger than
//!   [`submission::MAX_BYTES`](crate::submission::MAX_BYTES) or with more than
//!   [`submission::MAX_FILES`](crate::submission::MAX_FILES) entries is refused with a message
//!   git prints, and its objects (still in git's quarantine) are dropped.
//! - [`Repos::receive_push`] is the one function that decides a push: the deadline by the
//!   server's clock (never git's dates), only `refs/heads/main`, no deletion, no force push
//!   (`receive.denyNonFastForwards`), `receive.fsckObjects`, the per-push size counted as the body
//!   streams in (refused mid-stream), and the per-repository quota.
//! - Request bodies are streamed into git's stdin with a running byte count and an idle timeout,
//!   never buffered whole; upload-pack's output is streamed back ([`GitOutput`]). The caller
//!   authenticates before handing a body here.
//! - Every accepted commit is kept under `refs/takehome/<n>` (hidden from clients), so regrades
//!   survive anything that happens to `main`.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::task::TaskSpec;

/// The longest a client may pause while sending a request body.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one git process may run.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(600);
/// The most an upload-pack request (wants and haves) may hold, decoded.
pub const MAX_FETCH_REQUEST: u64 = 16 << 20;
/// The most of receive-pack's report we keep (it is a few lines).
const MAX_REPORT: usize = 1 << 20;
/// The push's command section (ref updates) must fit in this.
const MAX_COMMANDS: usize = 64 << 10;
/// Pushed paths longer than this are refused (the checkout could not write them).
const MAX_PATH: usize = 1024;
const ZERO_ID: &str = "0000000000000000000000000000000000000000";
const HIDDEN_REFS: &str = "refs/takehome";

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("git {action}: {message}")]
    Git { action: String, message: String },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IntakeError {
    let path = path.to_path_buf();
    move |source| IntakeError::Io { action, path, source }
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

/// One ref update of a push: `old new ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub name: String,
}

/// The command section of a receive-pack request, parsed from its pkt-lines.
#[derive(Debug, Clone, Default)]
pub struct PushCommands {
    pub updates: Vec<RefUpdate>,
    pub sideband: bool,
}

/// Parses the pkt-lines of `request` up to the first flush. `Ok(None)`: more bytes are needed.
fn parse_commands(request: &[u8]) -> Result<Option<(PushCommands, usize)>, String> {
    let mut commands = PushCommands::default();
    let mut at = 0;
    loop {
        if at + 4 > request.len() {
            return Ok(None);
        }
        let length = std::str::from_utf8(&request[at..at + 4]).ok().and_then(|h| usize::from_str_radix(h, 16).ok()).ok_or("not a git push request")?;
        if length == 0 {
            return Ok(Some((commands, at + 4)));
        }
        if length < 4 {
            return Err("not a git push request".into());
        }
        if at + length > request.len() {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&request[at + 4..at + length]).into_owned();
        let (command, capabilities) = line.split_once('\0').unwrap_or((&line, ""));
        if capabilities.split_whitespace().any(|c| c == "side-band-64k" || c == "side-band") {
            commands.sideband = true;
        }
        let parts: Vec<&str> = command.trim_end().split(' ').collect();
        match parts[..] {
            [old, new, name] if is_object_id(old) && is_object_id(new) => {
                commands.updates.push(RefUpdate { old: old.into(), new: new.into(), name: name.into() });
            }
            ["shallow", id] if is_object_id(id) => {}
            _ => return Err(format!("not a ref update: {:?}", command.chars().take(100).collect::<String>())),
        }
        at += length;
    }
}

pub(crate) fn is_object_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A receive-pack reply that refuses every pushed ref with `reason`, and says why.
pub fn refusal(commands: &PushCommands, reason: &str) -> Vec<u8> {
    let reason_line = reason.replace('\n', " ");
    let mut status = pkt_line(format!("unpack {reason_line}\n").as_bytes());
    for update in &commands.updates {
        status.extend(pkt_line(format!("ng {} {reason_line}\n", update.name).as_bytes()));
    }
    status.extend_from_slice(FLUSH);
    if !commands.sideband {
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

// ---------------------------------------------------------------- request bodies

/// A request body as the web layer hands it over: chunks, or an error text.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// Why a body could not be read to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than the cap (decoded bytes).
    TooLarge(u64),
    /// The client paused longer than [`BODY_IDLE_TIMEOUT`].
    Idle,
    /// The gzip encoding is broken, or the connection broke.
    Broken(String),
}

/// Reads a request body chunk by chunk, decoding gzip on the fly, counting the decoded bytes
/// against a cap, and giving up when the client pauses too long. Never holds more than one chunk
/// (plus at most 64 KiB of decoded output) at a time.
pub struct BodyReader {
    stream: BodyStream,
    gzip: Option<GzipState>,
    cap: u64,
    read: u64,
    done: bool,
}

struct GzipState {
    header: Vec<u8>,
    header_done: bool,
    inflate: flate2::Decompress,
    pending: Bytes,
}

impl BodyReader {
    pub fn new(stream: BodyStream, gzip: bool, cap: u64) -> BodyReader {
        let gzip = gzip.then(|| GzipState { header: Vec::new(), header_done: false, inflate: flate2::Decompress::new(false), pending: Bytes::new() });
        BodyReader { stream, gzip, cap, read: 0, done: false }
    }

    /// Decoded bytes so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The next piece of the decoded body, or `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            if let Some(gzip) = &mut self.gzip {
                if !gzip.pending.is_empty() && gzip.header_done {
                    let out = inflate_some(gzip)?;
                    if !out.is_empty() {
                        return self.count(out).map(Some);
                    }
                    continue;
                }
            }
            if self.done {
                return Ok(None);
            }
            let chunk = match tokio::time::timeout(BODY_IDLE_TIMEOUT, self.stream.next()).await {
                Err(_) => return Err(BodyError::Idle),
                Ok(None) => {
                    self.done = true;
                    continue;
                }
                Ok(Some(Err(error))) => return Err(BodyError::Broken(error)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            match &mut self.gzip {
                None => return self.count(chunk).map(Some),
                Some(gzip) if !gzip.header_done => {
                    gzip.header.extend_from_slice(&chunk);
                    if gzip.header.len() > 64 << 10 {
                        return Err(BodyError::Broken("the gzip header is too long".into()));
                    }
                    if let Some(end) = gzip_header_length(&gzip.header)? {
                        gzip.pending = Bytes::from(gzip.header.split_off(end));
                        gzip.header_done = true;
                    }
                }
                Some(gzip) => gzip.pending = chunk,
            }
        }
    }

    fn count(&mut self, chunk: Bytes) -> Result<Bytes, BodyError> {
        self.read += chunk.len() as u64;
        if self.read > self.cap {
            return Err(BodyError::TooLarge(self.cap));
        }
        Ok(chunk)
    }
}

/// Inflates at most 64 KiB from the pending input.
fn inflate_some(gzip: &mut GzipState) -> Result<Bytes, BodyError> {
    let mut out = vec![0u8; 64 << 10];
    let before_in = gzip.inflate.total_in();
    let before_out = gzip.inflate.total_out();
    let status =
        gzip.inflate.decompress(&gzip.pending, &mut out, flate2::FlushDecompress::None).map_err(|e| BodyError::Broken(format!("bad gzip body: {e}")))?;
    let consumed = (gzip.inflate.total_in() - before_in) as usize;
    let produced = (gzip.inflate.total_out() - before_out) as usize;
    gzip.pending = gzip.pending.slice(consumed..);
    if status == flate2::Status::StreamEnd {
        // What follows is the gzip trailer (CRC and size): nothing more to decode.
        gzip.pending = Bytes::new();
    } else if consumed == 0 && produced == 0 {
        return Err(BodyError::Broken("bad gzip body: no progress".into()));
    }
    out.truncate(produced);
    Ok(Bytes::from(out))
}

/// The length of a gzip member's header (RFC 1952), once `data` holds all of it.
fn gzip_header_length(data: &[u8]) -> Result<Option<usize>, BodyError> {
    if data.len() < 10 {
        return Ok(None);
    }
    if data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return Err(BodyError::Broken("not a gzip body".into()));
    }
    let flags = data[3];
    let mut at = 10;
    if flags & 4 != 0 {
        if data.len() < at + 2 {
            return Ok(None);
        }
        at += 2 + u16::from_le_bytes([data[at], data[at + 1]]) as usize;
    }
    for flag in [8u8, 16] {
        if flags & flag != 0 {
            match data.get(at..).and_then(|rest| rest.iter().position(|&b| b == 0)) {
                Some(zero) => at += zero + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    Ok((data.len() >= at).then_some(at))
}

// ---------------------------------------------------------------- repositories

/// The rules a push is held to, decided by the caller from the assignment and the config.
#[derive(Debug, Clone)]
pub struct PushRules {
    /// Seconds since the epoch, by the server's clock.
    pub now: i64,
    pub deadline: Option<i64>,
    pub max_push_bytes: u64,
    pub quota_bytes: u64,
}

/// What became of a push. `reply` is the body to send back (git prints its side-band lines).
#[derive(Debug)]
pub enum PushOutcome {
    /// `main` moved to `commit`.
    Accepted { commit: String, reply: Vec<u8>, sideband: bool },
    /// git ran, and `main` did not move (git's own report says why, e.g. our hook declined).
    Unchanged { reply: Vec<u8>, sideband: bool },
    /// A request with no ref updates (git's probe before a large push): nothing to answer.
    Nothing,
    /// Refused by our rules; `reply` says why in terms git prints.
    Refused { reason: String, reply: Vec<u8> },
}

/// Who a fetch is served to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The candidate: `main` only; our refs stay hidden and objects are served only by ref.
    Candidate,
    /// A worker on another host (its own credential): may fetch any commit by its id (the
    /// commits we keep under hidden refs); pushes are never served to it.
    Worker,
}

impl Reader {
    fn options(self) -> Vec<String> {
        match self {
            Reader::Candidate => Vec::new(),
            Reader::Worker => vec!["-c".into(), "uploadpack.allowAnySHA1InWant=true".into()],
        }
    }
}

/// The candidates' bare repositories, one per assignment, under one folder.
#[derive(Debug, Clone)]
pub struct Repos {
    dir: PathBuf,
    hooks: PathBuf,
    /// One push at a time per repository, so that "main before and after" is this push's.
    locks: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// git with a cleared environment, no system or global config and no prompt, in `dir`: every
/// git this crate runs on our repositories (`web::bounded` reads blobs with it too).
pub(crate) fn git_command(dir: &Path) -> std::process::Command {
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
    let output = command.output().map_err(|source| IntakeError::Git { action: action.to_string(), message: format!("cannot run git: {source}") })?;
    if !output.status.success() {
        return Err(IntakeError::Git { action: action.to_string(), message: String::from_utf8_lossy(&output.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// git's empty tree: as the attribute source, it means "the tree has no `.gitattributes`".
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// Our attributes for every checkout: no conversion of any kind (`info/attributes` overrides any
/// `.gitattributes` a candidate commits).
const NEUTRAL_ATTRIBUTES: &str = "* -text -eol -ident -filter -working-tree-encoding -export-subst\n";

/// Writes the tree of `commit` into `dest` byte for byte as it was pushed, and checks what was
/// written against the tree cap.
///
/// The candidate's `.gitattributes` is never honoured: `working-tree-encoding=UTF-32LE` with
/// `eol=crlf` turns a 100 MB blob into 763 MiB, and filters, `ident` and `eol` all change what
/// the steps would see from what the pre-receive hook measured. The attribute source is the empty
/// tree (git 2.40 and later), and the repository's `info/attributes` unsets every converting
/// attribute (every git), so the checkout is exactly the blobs the hook counted; the bytes written
/// are counted again anyway (regular files, no link followed). git refuses to write through links
/// it created; a private index leaves the repository's own untouched.
pub fn checkout_exactly(cwd: &Path, git_dir: &Path, commit: &str, dest: &Path) -> Result<(), IntakeError> {
    let info = git_dir.join("info");
    std::fs::create_dir_all(&info).map_err(io_error("create", &info))?;
    let attributes = info.join("attributes");
    if std::fs::read_to_string(&attributes).ok().as_deref() != Some(NEUTRAL_ATTRIBUTES) {
        std::fs::write(&attributes, NEUTRAL_ATTRIBUTES).map_err(io_error("write", &attributes))?;
    }
    let mut checkout = git_command(cwd);
    checkout
        .arg("--git-dir")
        .arg(git_dir)
        .arg("--work-tree")
        .arg(dest)
        .args(["-c", "core.symlinks=true", "-c", "core.autocrlf=false", "-c", "core.eol=lf", "-c", "core.safecrlf=false"])
        .args(["checkout", "-f", commit, "--", "."])
        .env("GIT_ATTR_SOURCE", EMPTY_TREE);
    let index = tempfile::tempdir().map_err(io_error("create a temporary folder in", &std::env::temp_dir()))?;
    checkout.env("GIT_INDEX_FILE", index.path().join("index"));
    run(checkout, "checkout")?;
    let written = bytes_below(dest).map_err(io_error("measure the checkout in", dest))?;
    if written > crate::submission::MAX_BYTES {
        return Err(IntakeError::Git {
            action: "checkout".into(),
            message: format!("the checkout of {commit} holds {written} bytes, over the {} bytes a submission may hold", crate::submission::MAX_BYTES),
        });
    }
    Ok(())
}

/// The bytes of the regular files below `dir`, walked without following a link.
fn bytes_below(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// Options given on every git command line, so that they hold for repositories made by an older
/// takehome too.
fn serving_options(service: Service, hooks: &Path) -> Vec<String> {
    let mut options = vec![format!("uploadpack.hideRefs={HIDDEN_REFS}"), "uploadpack.allowAnySHA1InWant=false".into()];
    if service == Service::ReceivePack {
        options.extend([
            format!("receive.hideRefs={HIDDEN_REFS}"),
            format!("core.hooksPath={}", hooks.display()),
            "receive.fsckObjects=true".into(),
            "receive.denyNonFastForwards=true".into(),
            "receive.denyDeletes=true".into(),
            "receive.denyDeleteCurrent=true".into(),
            "receive.advertisePushOptions=false".into(),
        ]);
    }
    options.into_iter().flat_map(|o| ["-c".to_string(), o]).collect()
}

/// The folder's size on disk: the sum of its regular files (our own folder; links not followed).
fn folder_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

impl Repos {
    /// `dir` holds the repositories, `hooks` our own git hooks (see [`Repos::install_hooks`]).
    pub fn new(dir: PathBuf, hooks: PathBuf) -> Repos {
        Repos { dir, hooks, locks: Arc::default() }
    }

    /// `<dir>/<assignment>.git`; the id is one of ours (checked by the caller to be plain).
    pub fn path(&self, assignment: &str) -> PathBuf {
        self.dir.join(format!("{assignment}.git"))
    }

    /// Writes our `pre-receive` hook: it runs `<takehome> intake-hook pre-receive`, which checks
    /// the pushed tree (see [`pre_receive`]). Called by the daemon at start-up.
    pub fn install_hooks(&self, takehome: &Path) -> Result<(), IntakeError> {
        std::fs::create_dir_all(&self.hooks).map_err(io_error("create", &self.hooks))?;
        let quoted = takehome.display().to_string().replace('\'', "'\\''");
        let script = format!("#!/bin/sh\n# Written by takehome: checks a pushed tree before git accepts it.\nexec '{quoted}' intake-hook pre-receive\n");
        let path = self.hooks.join("pre-receive");
        let staged = self.hooks.join(".pre-receive.new");
        std::fs::write(&staged, script).map_err(io_error("write", &staged))?;
        std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(io_error("set permissions on", &staged))?;
        std::fs::rename(&staged, &path).map_err(io_error("install", &path))?;
        Ok(())
    }

    /// Creates the bare repository seeded with the brief, the starter code and the public data.
    pub fn create(&self, assignment: &str, task: &TaskSpec, max_push_bytes: u64) -> Result<PathBuf, IntakeError> {
        std::fs::create_dir_all(&self.dir).map_err(io_error("create", &self.dir))?;
        let bare = self.path(assignment);
        run(
            {
                let mut c = git_command(&self.dir);
                c.args(["init", "-q", "--bare", "--initial-branch=main"]).arg(&bare);
                c
            },
            "init",
        )?;
        for (key, value) in [
            ("receive.maxInputSize", max_push_bytes.to_string()),
            ("receive.denyDeletes", "true".into()),
            ("receive.denyDeleteCurrent", "true".into()),
            ("receive.denyNonFastForwards", "true".into()),
            ("receive.fsckObjects", "true".into()),
            ("uploadpack.hideRefs", HIDDEN_REFS.into()),
            ("receive.hideRefs", HIDDEN_REFS.into()),
            ("http.receivepack", "true".into()),
            ("core.hooksPath", "/dev/null".into()),
            ("gc.auto", "0".into()),
        ] {
            run(
                {
                    let mut c = git_command(&bare);
                    c.args(["config", key, &value]);
                    c
                },
                "config",
            )?;
        }
        // Seed: a work tree of our own, committed into the bare repository.
        let seed = tempfile::tempdir().map_err(io_error("create a temporary folder in", &std::env::temp_dir()))?;
        let brief = task.dir.join(&task.brief);
        std::fs::copy(&brief, seed.path().join("README.md")).map_err(io_error("copy", &brief))?;
        copy_tree(&task.dir.join(&task.starter), seed.path())?;
        copy_tree(&task.dataset_dir().join("public"), &seed.path().join("data").join("public"))?;
        // What the steps run with (unless the starter says it itself).
        let environment = seed.path().join("ENVIRONMENT.md");
        if !environment.exists() {
            match crate::environment::Installed::of_recipe(&task.root, &task.image) {
                Ok(installed) => {
                    let of = |image: &str| crate::environment::Installed::of_recipe(&task.root, image).ok();
                    let r = task.r_image().and_then(of);
                    let extended: Vec<_> =
                        task.extended_images.iter().filter_map(|image| Some((of(image)?, crate::environment::image_modules(&task.root, image)))).collect();
                    std::fs::write(&environment, installed.environment_md_with(&task.title, r.as_ref(), &extended)).map_err(io_error("write", &environment))?
                }
                Err(error) => tracing::warn!(task = %task.id, %error, "no ENVIRONMENT.md for the candidate: the image's package list cannot be read"),
            }
        }
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

    /// [`Repos::main_commit`] on the blocking pool (it runs git).
    async fn main_commit_async(&self, assignment: &str) -> Option<String> {
        let (repos, assignment) = (self.clone(), assignment.to_string());
        tokio::task::spawn_blocking(move || repos.main_commit(&assignment)).await.ok().flatten()
    }

    /// Keeps `commit` under `refs/takehome/<number>` (hidden from clients), so that a regrade finds
    /// it whatever becomes of `main`.
    pub fn keep(&self, assignment: &str, number: i64, commit: &str) -> Result<(), IntakeError> {
        let mut c = git_command(&self.dir);
        c.arg("--git-dir").arg(self.path(assignment)).args(["update-ref", &format!("{HIDDEN_REFS}/{number}"), commit]);
        run(c, "update-ref").map(|_| ())
    }

    /// Every entry of `commit`'s tree (files, links and submodules as git records them; nothing
    /// is checked out and no link is followed). Holds the whole listing: for trees of ours (the
    /// given commit); a push's tree is read with [`Repos::walk_tree`].
    pub fn tree(&self, assignment: &str, commit: &str) -> Result<Vec<TreeEntry>, IntakeError> {
        let mut entries = Vec::new();
        self.walk_tree(assignment, commit, |entry| {
            entries.push(entry);
            true
        })?;
        Ok(entries)
    }

    /// Streams `commit`'s tree to `visit`, one entry at a time, until it answers false: memory
    /// stays one entry whatever the tree's size (a push may hold 20,000 paths of 1 KiB).
    pub fn walk_tree(&self, assignment: &str, commit: &str, mut visit: impl FnMut(TreeEntry) -> bool) -> Result<(), IntakeError> {
        use std::io::BufRead;
        const MAX_RECORD: usize = 8 << 10;
        let failed = |message: String| IntakeError::Git { action: "ls-tree".into(), message };
        if !is_object_id(commit) {
            return Err(failed(format!("{commit:?} is not an object id")));
        }
        let mut c = git_command(&self.dir);
        c.arg("--git-dir").arg(self.path(assignment)).args(["ls-tree", "-r", "-l", "-z", "--full-tree", commit]);
        c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().map_err(|source| failed(format!("cannot run git: {source}")))?;
        let mut reader = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut record = Vec::new();
        let mut stopped = false;
        loop {
            record.clear();
            // Read one NUL-ended record, keeping at most MAX_RECORD bytes of it.
            let mut long = false;
            loop {
                let buffer = reader.fill_buf().map_err(|error| failed(format!("cannot read git's listing: {error}")))?;
                if buffer.is_empty() {
                    break;
                }
                let (taken, ended) = match buffer.iter().position(|&b| b == 0) {
                    Some(at) => (at + 1, true),
                    None => (buffer.len(), false),
                };
                let room = MAX_RECORD.saturating_sub(record.len());
                record.extend_from_slice(&buffer[..taken.min(room)]);
                long |= taken > room;
                reader.consume(taken);
                if ended {
                    break;
                }
            }
            if record.is_empty() {
                break;
            }
            if long {
                continue;
            }
            let text = String::from_utf8_lossy(record.strip_suffix(&[0]).unwrap_or(&record));
            let Some((meta, path)) = text.split_once('\t') else { continue };
            let mut fields = meta.split_whitespace();
            let (Some(mode), Some(kind), Some(object), size) = (fields.next(), fields.next(), fields.next(), fields.next()) else { continue };
            let entry = TreeEntry {
                path: path.to_string(),
                mode: mode.to_string(),
                kind: kind.to_string(),
                object: object.to_string(),
                size: size.and_then(|s| s.parse().ok()),
            };
            if !visit(entry) {
                stopped = true;
                break;
            }
        }
        drop(reader);
        if stopped {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(());
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            use std::io::Read;
            let _ = pipe.by_ref().take(4096).read_to_string(&mut stderr);
        }
        let status = child.wait().map_err(|source| failed(format!("cannot run git: {source}")))?;
        if !status.success() {
            return Err(failed(stderr.trim().to_string()));
        }
        Ok(())
    }

    /// The entry at `path` in `commit`'s tree (compared with `same`), streaming the listing.
    pub fn find_entry(&self, assignment: &str, commit: &str, same: impl Fn(&str) -> bool) -> Result<Option<TreeEntry>, IntakeError> {
        let mut found = None;
        self.walk_tree(assignment, commit, |entry| {
            if same(&entry.path) {
                found = Some(entry);
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// The commit we seeded the repository with (brief, starter, public data): the root of
    /// `commit`'s history (pushes cannot rewrite history, so it is ours).
    pub fn given_commit(&self, assignment: &str, commit: &str) -> Result<String, IntakeError> {
        if !is_object_id(commit) {
            return Err(IntakeError::Git { action: "rev-list".into(), message: format!("{commit:?} is not an object id") });
        }
        let mut c = git_command(&self.dir);
        c.arg("--git-dir").arg(self.path(assignment)).args(["rev-list", "--max-parents=0", commit]);
        let roots = run(c, "rev-list")?;
        roots
            .lines()
            .last()
            .map(str::to_string)
            .filter(|r| is_object_id(r))
            .ok_or_else(|| IntakeError::Git { action: "rev-list".into(), message: "no root commit".into() })
    }

    /// Writes the tree of `commit` into `dest` (git refuses to write through links it created).
    pub fn checkout(&self, assignment: &str, commit: &str, dest: &Path) -> Result<(), IntakeError> {
        checkout_exactly(&self.dir, &self.path(assignment), commit, dest)
    }

    fn command(&self, assignment: &str, service: Service, advertise: bool, extra_options: &[String]) -> tokio::process::Command {
        let mut command = tokio::process::Command::from(git_command(&self.dir));
        command.args(serving_options(service, &self.hooks)).args(extra_options).arg(service.subcommand()).arg("--stateless-rpc");
        if advertise {
            command.arg("--advertise-refs");
        }
        command.arg(self.path(assignment)).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        command
    }

    /// The ref advertisement of `service` (a few lines: buffered).
    pub async fn advertise(&self, assignment: &str, service: Service, reader: Reader) -> Result<Vec<u8>, IntakeError> {
        let mut command = self.command(assignment, service, true, &reader.options());
        command.stdin(Stdio::null());
        let output = tokio::time::timeout(GIT_TIMEOUT, command.output())
            .await
            .map_err(|_| IntakeError::Git { action: service.subcommand().into(), message: "no answer within 10 minutes".into() })?
            .map_err(|source| IntakeError::Git { action: service.subcommand().into(), message: format!("cannot run git: {source}") })?;
        if !output.status.success() {
            return Err(IntakeError::Git { action: service.subcommand().into(), message: String::from_utf8_lossy(&output.stderr).trim().to_string() });
        }
        let mut body = advertisement_header(service);
        body.extend(output.stdout);
        Ok(body)
    }

    /// Serves a fetch: streams `body` into `git upload-pack` and returns its output as a stream.
    /// `slot` (a permit of the caller's cap on git processes) is held until the stream ends.
    pub async fn upload_pack<P: Send + 'static>(&self, assignment: &str, reader: Reader, mut body: BodyReader, slot: P) -> Result<GitOutput, IntakeError> {
        let mut child = self
            .command(assignment, Service::UploadPack, false, &reader.options())
            .spawn()
            .map_err(|source| IntakeError::Git { action: "upload-pack".into(), message: format!("cannot run git: {source}") })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let feeder = tokio::spawn(async move {
            while let Ok(Some(chunk)) = body.next().await {
                if stdin.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            // A body cut short closes stdin early: git sees a truncated request and stops.
        });
        // The child is owned by a watchdog: killed at the time limit, reaped at the end.
        let watchdog = tokio::spawn(async move {
            let mut errors = Vec::new();
            let drain = async {
                let _ = (&mut stderr).take(64 << 10).read_to_end(&mut errors).await;
            };
            let finished = tokio::time::timeout(GIT_TIMEOUT, async {
                drain.await;
                child.wait().await
            })
            .await;
            feeder.abort();
            if finished.is_err() {
                tracing::warn!("upload-pack ran past its time limit and was killed");
                let _ = child.kill().await;
            }
        });
        Ok(GitOutput { stdout: Some(stdout), _watchdog: AbortOnDrop(watchdog), _slot: Box::new(slot) })
    }

    /// Decides and runs one push: the rules first (deadline, refs, quota), then git with the
    /// body streamed in under the size cap and our hook checking the tree. See the module's docs.
    pub async fn receive_push(&self, assignment: &str, rules: &PushRules, mut body: BodyReader) -> Result<PushOutcome, IntakeError> {
        // A whole push, however slowly it trickles in, gets GIT_TIMEOUT.
        let outcome = match tokio::time::timeout(GIT_TIMEOUT, self.decide_push(assignment, rules, &mut body)).await {
            Ok(outcome) => outcome,
            Err(_) => return Ok(refused(&PushCommands::default(), format!("the push took longer than {} minutes", GIT_TIMEOUT.as_secs() / 60))),
        };
        if let Ok(PushOutcome::Refused { .. }) = &outcome {
            // Read (and drop) what the client is still sending, so that it reads our answer
            // instead of a reset connection: bounded in bytes and in time, held in no buffer.
            body.cap = rules.max_push_bytes.saturating_mul(2).saturating_add(16 << 20);
            let _ = tokio::time::timeout(Duration::from_secs(60), async { while let Ok(Some(_)) = body.next().await {} }).await;
        }
        outcome
    }

    async fn decide_push(&self, assignment: &str, rules: &PushRules, body: &mut BodyReader) -> Result<PushOutcome, IntakeError> {
        // The command section: the ref updates, before the pack.
        let mut prefix = Vec::new();
        let commands = loop {
            match parse_commands(&prefix) {
                Ok(Some((commands, _))) => break commands,
                Ok(None) if prefix.len() > MAX_COMMANDS => return Ok(refused(&PushCommands::default(), "the push's ref updates are too long".into())),
                Ok(None) => {}
                Err(message) => return Ok(refused(&PushCommands::default(), message)),
            }
            match body.next().await {
                Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
                Ok(None) => return Ok(refused(&PushCommands::default(), "the request ended before its ref updates".into())),
                Err(error) => return Ok(refused(&PushCommands::default(), describe_body_error(&error))),
            }
        };
        if let Some(deadline) = rules.deadline.filter(|&d| rules.now > d) {
            return Ok(refused(&commands, format!("the time box closed at {} (server time)", crate::report::rfc3339(deadline))));
        }
        if commands.updates.is_empty() {
            // git's probe before a large push (a lone flush): git itself answers nothing.
            return Ok(PushOutcome::Nothing);
        }
        if let Some(other) = commands.updates.iter().find(|u| u.name != "refs/heads/main") {
            return Ok(refused(&commands, format!("only main is accepted (push to main, not {})", other.name)));
        }
        if commands.updates.iter().any(|u| u.new == ZERO_ID) {
            return Ok(refused(&commands, "main cannot be deleted".into()));
        }
        let lock = self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry(assignment.to_string()).or_default().clone();
        let _one_push = lock.lock().await;
        let repo = self.path(assignment);
        let used = tokio::task::spawn_blocking(move || folder_bytes(&repo)).await.unwrap_or(u64::MAX);
        if used >= rules.quota_bytes {
            return Ok(refused(&commands, format!("the repository is at its quota of {}", crate::units::format_size(rules.quota_bytes))));
        }
        let max_input = rules.max_push_bytes.min(rules.quota_bytes - used);
        if !self.hooks.join("pre-receive").is_file() {
            return Err(IntakeError::Git { action: "receive-pack".into(), message: format!("our pre-receive hook is missing from {}", self.hooks.display()) });
        }
        let before = self.main_commit_async(assignment).await;

        let mut command = self.command(assignment, Service::ReceivePack, false, &["-c".to_string(), format!("receive.maxInputSize={max_input}")]);
        command
            .env("TAKEHOME_MAX_TREE_BYTES", crate::submission::MAX_BYTES.to_string())
            .env("TAKEHOME_MAX_TREE_ENTRIES", crate::submission::MAX_FILES.to_string());
        let mut child = command.spawn().map_err(|source| IntakeError::Git { action: "receive-pack".into(), message: format!("cannot run git: {source}") })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = (&mut stdout).take(MAX_REPORT as u64).read_to_end(&mut out).await;
            let mut errors = Vec::new();
            let _ = (&mut stderr).take(64 << 10).read_to_end(&mut errors).await;
            (out, errors)
        });
        // Stream the body in: the prefix we read, then the rest, counted against the cap. If git
        // stops reading (past receive.maxInputSize), keep counting without writing, to tell the
        // candidate why in our words.
        let cap = max_input.saturating_add(MAX_COMMANDS as u64);
        let too_large = format!("the push is larger than {}", crate::units::format_size(max_input));
        let fed: Result<(), String> = async {
            let mut git_reads = stdin.write_all(&prefix).await.is_ok();
            loop {
                match body.next().await {
                    Ok(Some(chunk)) => {
                        if body.bytes_read() > cap {
                            return Err(too_large.clone());
                        }
                        if git_reads && stdin.write_all(&chunk).await.is_err() {
                            git_reads = false;
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(BodyError::TooLarge(_)) => return Err(too_large.clone()),
                    Err(error) => return Err(describe_body_error(&error)),
                }
            }
        }
        .await;
        drop(stdin);
        if let Err(reason) = fed {
            let _ = child.kill().await;
            reader.abort();
            return Ok(refused(&commands, reason));
        }
        let status = match tokio::time::timeout(GIT_TIMEOUT, child.wait()).await {
            Ok(status) => status.map_err(|source| IntakeError::Git { action: "receive-pack".into(), message: source.to_string() })?,
            Err(_) => {
                let _ = child.kill().await;
                return Err(IntakeError::Git { action: "receive-pack".into(), message: "no answer within 10 minutes".into() });
            }
        };
        let (report, errors) = reader.await.unwrap_or_default();
        if !status.success() && report.is_empty() {
            let message = String::from_utf8_lossy(&errors).trim().to_string();
            if message.contains("maxInputSize") || message.contains("exceeds maximum") || body.bytes_read() > max_input {
                return Ok(refused(&commands, too_large));
            }
            return Err(IntakeError::Git { action: "receive-pack".into(), message });
        }
        let after = self.main_commit_async(assignment).await;
        if after == before && body.bytes_read() > max_input {
            return Ok(refused(&commands, too_large));
        }
        Ok(match after.filter(|a| Some(a) != before.as_ref()) {
            Some(commit) => PushOutcome::Accepted { commit, reply: report, sideband: commands.sideband },
            None => PushOutcome::Unchanged { reply: report, sideband: commands.sideband },
        })
    }

    /// Bytes the repository holds on disk.
    pub fn size(&self, assignment: &str) -> u64 {
        folder_bytes(&self.path(assignment))
    }
}

/// A worker's copies of the server's repositories: it fetches the one commit a job needs over
/// git's smart HTTP with the worker credential (sent as a header through git's environment, never
/// on a command line), into a bare repository of its own per assignment, and checks it out.
#[derive(Debug, Clone)]
pub struct RemoteRepos {
    /// The server's base URL (`http://host:port`).
    server: String,
    token: String,
    dir: PathBuf,
}

impl RemoteRepos {
    pub fn new(server: &str, token: &str, dir: PathBuf) -> RemoteRepos {
        RemoteRepos { server: server.trim_end_matches('/').to_string(), token: token.to_string(), dir }
    }

    fn command(&self, git_dir: &Path) -> std::process::Command {
        let mut command = git_command(&self.dir);
        command
            .env("GIT_CONFIG_COUNT", "3")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: Bearer {}", self.token))
            // A fetch that stalls (under 1 KiB/s for 60 s) fails and the job is retried, instead
            // of holding its slot for ever.
            .env("GIT_CONFIG_KEY_1", "http.lowSpeedLimit")
            .env("GIT_CONFIG_VALUE_1", "1024")
            .env("GIT_CONFIG_KEY_2", "http.lowSpeedTime")
            .env("GIT_CONFIG_VALUE_2", "60")
            .arg("--git-dir")
            .arg(git_dir);
        command
    }

    /// Writes the tree of `commit` of `assignment` into `dest`, fetching it first if this host
    /// does not have it yet.
    pub fn checkout(&self, assignment: &str, commit: &str, dest: &Path) -> Result<(), IntakeError> {
        if !is_object_id(commit) || !crate::task::is_name(assignment) {
            return Err(IntakeError::Git { action: "fetch".into(), message: format!("not a commit of ours: {assignment} {commit}") });
        }
        std::fs::create_dir_all(&self.dir).map_err(io_error("create", &self.dir))?;
        let git_dir = self.dir.join(format!("{assignment}.git"));
        if !git_dir.join("HEAD").exists() {
            let mut init = git_command(&self.dir);
            init.args(["init", "--quiet", "--bare"]).arg(&git_dir);
            run(init, "init")?;
        }
        let mut has = self.command(&git_dir);
        has.args(["cat-file", "-e", &format!("{commit}^{{commit}}")]);
        if run(has, "cat-file").is_err() {
            let mut fetch = self.command(&git_dir);
            fetch
                .args(["-c", "protocol.version=0", "fetch", "--quiet", "--no-tags", "--depth=1"])
                .arg(format!("{}/worker/git/{assignment}.git", self.server))
                .arg(commit);
            run(fetch, "fetch")?;
        }
        checkout_exactly(&self.dir, &git_dir, commit, dest)
    }
}

/// One entry of a commit's tree as `git ls-tree -l` lists it.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    pub path: String,
    /// `100644`, `100755` (files), `120000` (a link: its target is the blob), `160000` (a submodule).
    pub mode: String,
    /// `blob` or `commit`.
    pub kind: String,
    pub object: String,
    pub size: Option<u64>,
}

fn refused(commands: &PushCommands, reason: String) -> PushOutcome {
    let reply = refusal(commands, &reason);
    PushOutcome::Refused { reason, reply }
}

fn describe_body_error(error: &BodyError) -> String {
    match error {
        BodyError::TooLarge(cap) => format!("the push is larger than {}", crate::units::format_size(*cap)),
        BodyError::Idle => format!("the upload paused for more than {} s", BODY_IDLE_TIMEOUT.as_secs()),
        BodyError::Broken(message) => message.clone(),
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // The watchdog owns the child (kill_on_drop): aborting it kills git if it still runs.
        self.0.abort();
    }
}

/// git's output, streamed in chunks of up to 64 KiB. Dropping it (the client went away) stops
/// git and frees the caller's slot.
pub struct GitOutput {
    stdout: Option<tokio::process::ChildStdout>,
    _watchdog: AbortOnDrop,
    _slot: Box<dyn Send>,
}

impl GitOutput {
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(self, |mut output| async move {
            let stdout = output.stdout.as_mut()?;
            let mut buffer = vec![0u8; 64 << 10];
            match stdout.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), output))
                }
                Err(error) => {
                    output.stdout = None;
                    Some((Err(error), output))
                }
            }
        })
    }
}

/// `takehome intake-hook pre-receive`: git runs it (through our hook script) with the pushed ref
/// updates on stdin and the new objects still in quarantine. Lists each new tree with `git ls-tree
/// -r -l -z` (git's own reading of the objects), stopping as soon as the tree passes the entry or
/// byte cap or holds a path longer than the checkout could write. Prints why (git shows it as
/// `remote: …`) and returns the exit code: 0 accepts, 1 refuses.
pub fn pre_receive(input: impl BufRead, out: &mut impl Write) -> i32 {
    let max_bytes: u64 = std::env::var("TAKEHOME_MAX_TREE_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(crate::submission::MAX_BYTES);
    let max_entries: u64 = std::env::var("TAKEHOME_MAX_TREE_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(crate::submission::MAX_FILES as u64);
    for line in input.lines() {
        let Ok(line) = line else { return 1 };
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_old, new, name] = parts[..] else {
            let _ = writeln!(out, "takehome: push refused: unexpected ref update {line:?}");
            return 1;
        };
        if name != "refs/heads/main" {
            let _ = writeln!(out, "takehome: push refused: only main is accepted (push to main, not {name})");
            return 1;
        }
        if new == ZERO_ID {
            let _ = writeln!(out, "takehome: push refused: main cannot be deleted");
            return 1;
        }
        match check_tree(new, max_bytes, max_entries) {
            Ok(()) => {}
            Err(reason) => {
                let _ = writeln!(out, "takehome: push refused: {reason}");
                return 1;
            }
        }
    }
    0
}

/// Walks `git ls-tree -r -l -z <commit>` (inheriting git's quarantine environment).
fn check_tree(commit: &str, max_bytes: u64, max_entries: u64) -> Result<(), String> {
    if !is_object_id(commit) {
        return Err(format!("{commit:?} is not an object id"));
    }
    let mut child = std::process::Command::new("git")
        .args(["ls-tree", "-r", "-l", "-z", "--full-tree", commit])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot list the pushed tree: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut reader = std::io::BufReader::new(stdout);
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut record = Vec::new();
    let verdict = loop {
        record.clear();
        match reader.read_until(0, &mut record) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(format!("cannot list the pushed tree: {e}")),
        }
        if record.last() == Some(&0) {
            record.pop();
        }
        let text = String::from_utf8_lossy(&record);
        let Some((meta, path)) = text.split_once('\t') else { break Err("cannot read git's listing of the pushed tree".into()) };
        entries += 1;
        if let Some(size) = meta.split_whitespace().nth(3).and_then(|s| s.parse::<u64>().ok()) {
            bytes += size;
        }
        if entries > max_entries {
            break Err(format!("the pushed tree has more than {max_entries} files"));
        }
        if bytes > max_bytes {
            break Err(format!("the pushed tree holds more than {} once checked out", crate::units::format_size(max_bytes)));
        }
        if path.len() > MAX_PATH {
            break Err(format!("a path in the pushed tree is longer than {MAX_PATH} bytes"));
        }
    };
    // Stop git early when the tree was refused part-way.
    let _ = child.kill();
    let status = child.wait();
    match verdict {
        Err(reason) => Err(reason),
        Ok(()) if status.is_ok_and(|s| s.success()) => Ok(()),
        Ok(()) => Err("git could not list the pushed tree".into()),
    }
}

/// Copies regular files and folders (no links) from `from` into `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<(), IntakeError> {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(from).to_path_buf();
            IntakeError::Io { action: "read", path, source: e.into() }
        })?;
        let relative = entry.path().strip_prefix(from).expect("below its root");
        let target = to.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).map_err(io_error("create", &target))?;
        } else if entry.file_type().is_file() {
            let parent = target.parent().expect("a file has a parent");
            std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
            std::fs::copy(entry.path(), &target).map_err(io_error("copy", entry.path()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines {
            out.extend(pkt_line(line.as_bytes()));
        }
        out.extend_from_slice(FLUSH);
        out.extend_from_slice(b"PACK....");
        out
    }

    #[test]
    fn pkt_lines_and_refusals() {
        assert_eq!(pkt_line(b"# service=git-upload-pack\n"), b"001e# service=git-upload-pack\n".to_vec());
        let body =
            request(&["0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 refs/heads/main\0 report-status side-band-64k"]);
        let (commands, end) = parse_commands(&body).unwrap().unwrap();
        assert!(commands.sideband);
        assert_eq!(commands.updates[0].name, "refs/heads/main");
        assert_eq!(&body[end..], b"PACK....");
        let reply = String::from_utf8_lossy(&refusal(&commands, "the deadline passed")).into_owned();
        assert!(reply.contains("takehome: push refused: the deadline passed"));
        assert!(reply.contains("ng refs/heads/main the deadline passed"));
        assert!(parse_commands(&body[..30]).unwrap().is_none(), "a partial section asks for more");
        assert!(parse_commands(b"zzzz").is_err());
    }

    #[tokio::test]
    async fn bodies_are_counted_and_gzip_is_decoded_in_pieces() {
        let plain: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&plain).unwrap();
        let gzipped = encoder.finish().unwrap();
        let chunks: Vec<Result<Bytes, String>> = gzipped.chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let mut reader = BodyReader::new(Box::pin(futures_util::stream::iter(chunks.clone())), true, u64::MAX);
        let mut decoded = Vec::new();
        while let Some(piece) = reader.next().await.unwrap() {
            assert!(piece.len() <= 64 << 10);
            decoded.extend_from_slice(&piece);
        }
        assert_eq!(decoded, plain);
        let mut capped = BodyReader::new(Box::pin(futures_util::stream::iter(chunks)), true, 100_000);
        let result = loop {
            match capped.next().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        assert_eq!(result, Err(BodyError::TooLarge(100_000)));
    }
}
