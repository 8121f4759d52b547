//! Reading what a candidate pushed with a cap, for the pages that show it: a blob's first bytes
//! (and, for files of moderate size, how many lines the whole has), commit messages up to a few
//! KiB. *Nothing here reads a whole object into our memory just to cut it*: git's output is read
//! up to the cap, the rest is counted or dropped as it streams, and git is stopped once we have
//! what we need. git runs as [`intake`](crate::intake) runs it: on our own bare repositories,
//! with a cleared environment and no system or global config.
//!
//! Also [`CancelOnDrop`]: blocking work a request started stops between files once the request's
//! future is dropped (the client went away, or the daemon is stopping).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::intake::{is_object_id, Repos};
pub use crate::review::code::Prefix;

/// Commit message bytes shown per commit.
pub const MAX_MESSAGE: usize = 4 << 10;
/// Commit message bytes shown per page, over all commits; past it each shows its first
/// [`MIN_MESSAGE`] bytes.
pub const PAGE_MESSAGES: usize = 256 << 10;
/// What a commit message is cut to once the page's budget is spent.
pub const MIN_MESSAGE: usize = 200;
/// A commit's header lines (tree, parents, author, committer, signature) read at most.
const MAX_COMMIT_HEADER: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0:?} is not an object id")]
    NotAnObject(String),
    #[error("cannot run git cat-file")]
    Spawn(#[source] std::io::Error),
    #[error("cannot read git cat-file's output")]
    Read(#[source] std::io::Error),
    #[error("git cat-file {object}: {message}")]
    Git { object: String, message: String },
}

/// git as intake runs it ([`crate::intake::git_command`]), on the assignment's repository.
fn git(repos: &Repos, assignment: &str) -> Command {
    let mut command = crate::intake::git_command(repos.path(assignment).parent().unwrap_or(Path::new("/")));
    command.arg("--git-dir").arg(repos.path(assignment));
    command
}

/// Stops a git process that still runs (we have read what we wanted) and reaps it.
fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Lines as [`str::lines`] counts them, from the count of newlines and the last byte.
fn lines_of(newlines: u64, last: Option<u8>) -> u64 {
    match last {
        None | Some(b'\n') => newlines,
        Some(_) => newlines + 1,
    }
}

/// Reads `source` up to `cap` bytes; past the cap it goes on counting newlines (keeping nothing)
/// until `count_to` bytes in all, so that the whole's lines are known when it is no longer.
pub fn read_prefix(mut source: impl Read, cap: u64, count_to: u64) -> std::io::Result<Prefix> {
    let mut bytes = Vec::new();
    (&mut source).take(cap).read_to_end(&mut bytes)?;
    let mut newlines = memchr::memchr_iter(b'\n', &bytes).count() as u64;
    let mut last = bytes.last().copied();
    let mut total = bytes.len() as u64;
    // Reading one byte past the limit tells that more follows.
    let limit = count_to.max(cap);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let want = (limit + 1 - total).min(chunk.len() as u64) as usize;
        let n = match source.read(&mut chunk[..want]) {
            Ok(0) => return Ok(Prefix { whole: total == bytes.len() as u64, bytes, lines: Some(lines_of(newlines, last)) }),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        newlines += memchr::memchr_iter(b'\n', &chunk[..n]).count() as u64;
        last = Some(chunk[n - 1]);
        total += n as u64;
        if total > limit {
            return Ok(Prefix { bytes, whole: false, lines: None });
        }
    }
}

/// The first `cap` bytes of blob `object` of `assignment`'s repository; when the blob is at most
/// `count_to` bytes, the rest is read too (and dropped) to count its lines.
pub fn blob_prefix(repos: &Repos, assignment: &str, object: &str, cap: u64, count_to: u64) -> Result<Prefix, ReadError> {
    if !is_object_id(object) {
        return Err(ReadError::NotAnObject(object.to_string()));
    }
    let mut command = git(repos, assignment);
    command.args(["cat-file", "blob", object]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(ReadError::Spawn)?;
    let Some(stdout) = child.stdout.take() else {
        stop(&mut child);
        return Err(ReadError::Read(std::io::Error::other("no stdout")));
    };
    let read = read_prefix(stdout, cap, count_to);
    let finished = matches!(read, Ok(Prefix { lines: Some(_), .. }));
    if !finished {
        stop(&mut child);
        return read.map_err(ReadError::Read);
    }
    // All of git's output was read: it has ended, and its status says whether that was all.
    let mut message = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let _ = stderr.take(4096).read_to_end(&mut message);
    }
    match child.wait() {
        Ok(status) if status.success() => read.map_err(ReadError::Read),
        Ok(_) => Err(ReadError::Git { object: object.to_string(), message: String::from_utf8_lossy(&message).trim().to_string() }),
        Err(e) => Err(ReadError::Read(e)),
    }
}

/// The longest prefix of `bytes` that is whole UTF-8 characters, if the bytes are UTF-8 but for
/// a character cut at the end.
pub fn utf8_prefix(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    }
}

/// A commit message as shown: its first bytes, and how many were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub cut_bytes: u64,
}

impl Message {
    /// The text with, when cut, `… (cut: N bytes)`.
    pub fn shown(&self) -> String {
        if self.cut_bytes == 0 {
            self.text.clone()
        } else {
            format!("{}… (cut: {} bytes)", self.text, self.cut_bytes)
        }
    }
}

/// Reads one commit object of `size` bytes from `reader` (git cat-file --batch's content): the
/// message's first `cap` bytes; the rest is dropped as it streams.
fn read_commit(reader: &mut impl BufRead, size: u64, cap: usize) -> std::io::Result<Message> {
    let mut object = reader.take(size);
    // Header lines up to the first empty line.
    let mut header = Vec::new();
    loop {
        let before = header.len();
        let n = (&mut object).take((MAX_COMMIT_HEADER - before.min(MAX_COMMIT_HEADER)) as u64 + 1).read_until(b'\n', &mut header)?;
        if n == 0 {
            // A commit without a message.
            return Ok(Message::default());
        }
        if header.len() > MAX_COMMIT_HEADER {
            // A header too long to look past: nothing of the message is shown.
            let rest = std::io::copy(&mut object, &mut std::io::sink())?;
            return Ok(Message { text: String::new(), cut_bytes: rest });
        }
        if &header[before..] == b"\n" {
            break;
        }
    }
    let mut text = Vec::new();
    (&mut object).take(cap as u64).read_to_end(&mut text)?;
    let rest = std::io::copy(&mut object, &mut std::io::sink())?;
    let shown = utf8_prefix(&text).map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
    let cut_bytes = rest + (text.len() - shown.len()) as u64;
    // As `%B` was shown: without the trailing newlines (leading ones are kept out too).
    let trimmed = if cut_bytes == 0 { shown.trim().to_string() } else { shown.trim_start().to_string() };
    Ok(Message { text: trimmed, cut_bytes })
}

/// Parses `git cat-file --batch` output for `count` objects: each commit's message, cut to
/// [`MAX_MESSAGE`] and, once [`PAGE_MESSAGES`] are spent, to [`MIN_MESSAGE`]; stops at `deadline`.
pub fn read_batch(reader: &mut impl BufRead, count: usize, deadline: Instant) -> std::io::Result<HashMap<String, Message>> {
    let mut found = HashMap::new();
    let mut spent = 0usize;
    for _ in 0..count {
        if Instant::now() >= deadline {
            break;
        }
        let mut line = Vec::new();
        if reader.take(256).read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&line);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [object, kind, size] = fields[..] else { continue };
        let Ok(size) = size.parse::<u64>() else { continue };
        let cap = if spent < PAGE_MESSAGES { MAX_MESSAGE.min(PAGE_MESSAGES - spent).max(MIN_MESSAGE) } else { MIN_MESSAGE };
        let message = if kind == "commit" {
            read_commit(reader, size, cap)?
        } else {
            std::io::copy(&mut reader.take(size), &mut std::io::sink())?;
            Message::default()
        };
        // The newline after each object.
        let mut newline = [0u8; 1];
        reader.read_exact(&mut newline)?;
        spent += message.text.len();
        if kind == "commit" && is_object_id(object) {
            found.insert(object.to_string(), message);
        }
    }
    Ok(found)
}

/// Each commit's message, cut as [`read_batch`] says (commits git does not know are left out;
/// so are those not read by `deadline`).
/// Lines added and removed between two commits (`git diff --shortstat`), or `None` when git
/// cannot say within `time` (the process is then stopped) or an id is not one.
pub fn changed_lines(repos: &Repos, assignment: &str, from: &str, to: &str, time: std::time::Duration) -> Option<u64> {
    if !is_object_id(from) || !is_object_id(to) {
        return None;
    }
    let mut command = git(repos, assignment);
    command.args(["-c", "diff.renames=false", "diff", "--shortstat", "--no-ext-diff", "--no-textconv", from, to]);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command.spawn().ok()?;
    let deadline = Instant::now() + time;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => {
                stop(&mut child);
                return None;
            }
        }
    }
    let prefix = read_prefix(child.stdout.take()?, 4096, 0).ok()?;
    let text = String::from_utf8_lossy(&prefix.bytes);
    // " 3 files changed, 40 insertions(+), 2 deletions(-)"; nothing at all when equal.
    let count = |what: &str| text.split(',').find(|part| part.contains(what)).and_then(|part| part.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0);
    Some(count("insertion") + count("deletion"))
}

pub fn commit_messages(repos: &Repos, assignment: &str, commits: &[String], deadline: Instant) -> HashMap<String, Message> {
    let commits: Vec<String> = commits.iter().filter(|c| is_object_id(c)).cloned().collect();
    if commits.is_empty() {
        return HashMap::new();
    }
    let mut command = git(repos, assignment);
    command.args(["cat-file", "--batch"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let Ok(mut child) = command.spawn() else { return HashMap::new() };
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        stop(&mut child);
        return HashMap::new();
    };
    let count = commits.len();
    // The ids are written from a thread of their own: git answers as it reads them.
    let writer = std::thread::spawn(move || {
        for commit in &commits {
            if writeln!(stdin, "{commit}").is_err() {
                break;
            }
        }
    });
    let found = read_batch(&mut BufReader::new(stdout), count, deadline).unwrap_or_else(|e| {
        tracing::warn!(error = %e, assignment, "cannot read commit messages");
        HashMap::new()
    });
    stop(&mut child);
    let _ = writer.join();
    found
}

/// Whether the request that started some blocking work has gone.
#[derive(Debug, Clone, Default)]
pub struct Cancelled(Arc<AtomicBool>);

impl Cancelled {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Held by a request's future: dropped with it (the client went away, or the daemon stops),
/// it sets its [`Cancelled`].
#[derive(Debug, Default)]
pub struct CancelOnDrop(Cancelled);

impl CancelOnDrop {
    pub fn flag(&self) -> Cancelled {
        self.0.clone()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0 .0.store(true, Ordering::Relaxed);
    }
}

/// What a commit asks of its image that the image lacks: its top-level `requirements.txt`,
/// `environment.yml` and R scripts (at most `REQUIREMENT_FILES_READ` of them, 256 KiB of each)
/// read against the image's package list. At most `REQUIREMENT_WARNINGS` lines, the last saying
/// how many more there were. Candidate content only (the candidate's own push): no hidden data.
pub fn requirement_warnings(
    repos: &Repos,
    assignment: &str,
    commit: &str,
    installed: &crate::environment::Installed,
    r: Option<&crate::environment::Installed>,
) -> Vec<String> {
    use crate::environment::{from_environment_yml, from_r_script, from_requirements, warnings, REQUIREMENT_FILES};
    if !is_object_id(commit) {
        return Vec::new();
    }
    let mut command = git(repos, assignment);
    command.args(["ls-tree", "-z", commit]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let Ok(mut child) = command.spawn() else { return Vec::new() };
    let listing = child.stdout.take().map(|out| read_prefix(out, 1 << 20, 0));
    stop(&mut child);
    let Some(Ok(listing)) = listing else { return Vec::new() };
    let (mut wanted, mut wanted_r) = (Vec::new(), Vec::new());
    let mut read = 0;
    for record in listing.bytes.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let text = String::from_utf8_lossy(record);
        let Some((meta, name)) = text.split_once('\t') else { continue };
        let mut fields = meta.split_whitespace();
        let (Some(mode), Some(_), Some(object)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let r_script = name.ends_with(".R") || name.ends_with(".r") || name.ends_with(".Rmd") || name.ends_with(".ipynb");
        if !mode.starts_with("1006") && !mode.starts_with("1007") || !(REQUIREMENT_FILES.contains(&name) || r_script) {
            continue;
        }
        if read == REQUIREMENT_FILES_READ {
            break;
        }
        read += 1;
        let Ok(prefix) = blob_prefix(repos, assignment, object, 256 * 1024, 0) else { continue };
        let text = String::from_utf8_lossy(&prefix.bytes);
        match name {
            "requirements.txt" => wanted.extend(from_requirements(name, &text)),
            "environment.yml" | "environment.yaml" => wanted.extend(from_environment_yml(name, &text)),
            // An R notebook's code cells are R (a Python notebook's installs are the runner's to
            // answer, cell by cell).
            _ if name.ends_with(".ipynb") => {
                if crate::notebook::language_of_text(&text).as_deref() == Some("r") {
                    let code = crate::grading::lint::notebook_code(&text);
                    if r.is_some() { &mut wanted_r } else { &mut wanted }.extend(from_r_script(name, &code));
                }
            }
            // R scripts ask the R image, where the task has one (else the task's, which lacks them).
            _ if r.is_some() => wanted_r.extend(from_r_script(name, &text)),
            _ => wanted.extend(from_r_script(name, &text)),
        }
        if wanted.len() + wanted_r.len() >= crate::environment::MAX_WANTED {
            wanted.truncate(crate::environment::MAX_WANTED);
            wanted_r.truncate(crate::environment::MAX_WANTED - wanted.len());
            break;
        }
    }
    let mut said = warnings(installed, &wanted);
    if let Some(r) = r {
        said.extend(warnings(r, &wanted_r));
    }
    if said.len() > REQUIREMENT_WARNINGS {
        let more = said.len() - (REQUIREMENT_WARNINGS - 1);
        said.truncate(REQUIREMENT_WARNINGS - 1);
        said.push(format!("and {more} more"));
    }
    said
}

/// How many requirement files and R scripts a push's warnings read, and how many lines they say.
pub const REQUIREMENT_FILES_READ: usize = 20;
pub const REQUIREMENT_WARNINGS: usize = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_cut_at_the_cap_and_the_rest_only_counted() {
        let text = "a\n".repeat(1000);
        let prefix = read_prefix(text.as_bytes(), 10, 1 << 20).unwrap();
        assert_eq!(prefix.bytes, b"a\na\na\na\na\n");
        assert!(!prefix.whole);
        assert_eq!(prefix.lines, Some(1000));
        // Past `count_to`, the lines are not known.
        let prefix = read_prefix(text.as_bytes(), 10, 100).unwrap();
        assert_eq!((prefix.bytes.len(), prefix.whole, prefix.lines), (10, false, None));
        // A small file is whole; a last line without a newline counts.
        let prefix = read_prefix(&b"x\ny"[..], 10, 0).unwrap();
        assert_eq!((prefix.bytes.as_slice(), prefix.whole, prefix.lines), (&b"x\ny"[..], true, Some(2)));
        let prefix = read_prefix(&b""[..], 10, 0).unwrap();
        assert_eq!((prefix.whole, prefix.lines), (true, Some(0)));
        // Exactly the cap is whole.
        let prefix = read_prefix(&b"0123456789"[..], 10, 0).unwrap();
        assert!(prefix.whole, "{prefix:?}");
    }

    #[test]
    fn a_character_cut_at_the_end_is_dropped() {
        assert_eq!(utf8_prefix("né".as_bytes()), Some("né"));
        assert_eq!(utf8_prefix(&"né".as_bytes()[..2]), Some("n"));
        assert_eq!(utf8_prefix(b"\xff\xfeabc"), None);
    }

    fn batch(objects: &[(&str, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, kind, body) in objects {
            out.extend(format!("{id} {kind} {}\n", body.len()).as_bytes());
            out.extend(*body);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn commit_messages_are_cut_with_what_was_left_out() {
        let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let huge = format!("tree {a}\nauthor x <x@x> 1 +0000\n\nsubject\n\n{}", "m".repeat(20 << 20));
        let small = format!("tree {a}\nparent {b}\n\nfix the <b>cleaner</b>\n\n");
        let header_only = format!("tree {a}\n");
        let input = batch(&[(&a, "commit", huge.as_bytes()), (&b, "commit", small.as_bytes()), (&c, "commit", header_only.as_bytes())]);
        let found = read_batch(&mut &input[..], 3, Instant::now() + std::time::Duration::from_secs(10)).unwrap();
        let first = &found[&a];
        assert_eq!(first.text.len(), MAX_MESSAGE, "the message after its blank line, cut: {:?}", &first.text[..20]);
        assert!(first.text.starts_with("subject\n\nmmm"));
        assert_eq!(first.cut_bytes, (20 << 20) + 9 - (MAX_MESSAGE as u64));
        assert!(first.shown().ends_with(&format!("… (cut: {} bytes)", first.cut_bytes)));
        assert_eq!(found[&b], Message { text: "fix the <b>cleaner</b>".into(), cut_bytes: 0 });
        assert_eq!(found[&c], Message::default());
    }

    #[test]
    fn past_the_page_budget_messages_are_short() {
        let ids: Vec<String> = (0..100).map(|i| format!("{i:040x}")).collect();
        let body = format!("tree {}\n\n{}", "a".repeat(40), "m".repeat(10_000));
        let objects: Vec<(&str, &str, &[u8])> = ids.iter().map(|id| (id.as_str(), "commit", body.as_bytes())).collect();
        let input = batch(&objects);
        let found = read_batch(&mut &input[..], ids.len(), Instant::now() + std::time::Duration::from_secs(10)).unwrap();
        let total: usize = found.values().map(|m| m.text.len()).sum();
        assert!(total <= PAGE_MESSAGES + 100 * MIN_MESSAGE, "{total}");
        assert_eq!(found[&ids[99]].text.len(), MIN_MESSAGE);
    }

    #[test]
    fn a_dropped_guard_cancels() {
        let guard = CancelOnDrop::default();
        let flag = guard.flag();
        assert!(!flag.is_set());
        drop(guard);
        assert!(flag.is_set());
    }
}
