//! What a candidate may see of a report: a type of its own, built field by field from the full
//! [`Report`] — an allow-list, never "the report minus what we remembered to hide".
//!
//! Invariant: nothing computed from hidden data, or produced by a step while hidden data was
//! mounted, reaches this type unless the task says so (`candidate_logs: true` on the step). A step
//! that read hidden data could encode what it read in anything it controls: its logs, its exit
//! code, its duration, its memory, the values and even the counts of rows it wrote. So for such a
//! step the candidate sees its name, its outcome, and its time and peak memory in four bands of
//! their limits (the residual channel: a few bits per step and push, documented in
//! docs/security.md), and the output's format feedback names the kinds of problems with their
//! counts in bands, without examples; refused entries under /output by kind with a banded count,
//! never their names. No score, no metric, no data set digest, ever. The public dry run (steps
//! over public data only) is where a candidate sees everything.
//!
//! The rule is held by types: every field of every candidate type is [`Disclosable`] (checked by
//! [`disclosable!`], which names every field), and only kinds, bands, [`Public`] values (from the
//! task, the push, takehome) and [`Open`] values (made by [`Exposure::open`] for steps that read
//! no hidden data) are. `tests/it/noninterference.rs` checks the same from outside: hostile
//! submissions graded against two hidden inputs get identical answers.

use std::collections::BTreeMap;
use std::ops::Deref;

use serde::{Serialize, Serializer};

use super::{Report, Status, StepReport, SCHEMA_VERSION};
use crate::grading::lint::Finding;
use crate::grading::ProblemKind;
use crate::sandbox::{Outcome, RefusalKind, Rejected};
use crate::submission::SkippedLink;

// ------------------------------------------------------------------ what may be disclosed, by type

/// A value that may be shown to a candidate from a graded run: every value of the type is either
/// independent of the hidden data or one of the named bands. Implemented for closed enums of
/// kinds, for the bands, for [`Public`] (text that comes from the task, the candidate's own push
/// or takehome itself) and for [`Open`] (a step's products where no hidden data was mounted).
/// Never for `String`, numbers or paths: a step that read hidden data chooses those.
///
/// Every candidate type declares its fields through [`disclosable!`], which destructures it in
/// full: a new field that is not itself `Disclosable` does not compile.
pub trait Disclosable {}

impl<T: Disclosable> Disclosable for Option<T> {}
impl<T: Disclosable> Disclosable for Vec<T> {}
impl Disclosable for &'static str {}
impl Disclosable for Status {}
impl Disclosable for Outcome {}
impl Disclosable for ProblemKind {}
impl Disclosable for RefusalKind {}

fn assert_disclosable<T: Disclosable + ?Sized>(_: &T) {}

/// Declares a candidate type `Disclosable`, checking each of its fields (all of them: the
/// pattern has no `..`).
macro_rules! disclosable {
    ($type:ident { $($field:ident),* $(,)? }) => {
        impl Disclosable for $type {}
        const _: () = {
            #[allow(dead_code)]
            fn every_field_is_disclosable(value: &$type) {
                let $type { $($field),* } = value;
                $(assert_disclosable($field);)*
            }
        };
    };
}

/// A value that does not depend on hidden data, named by where it comes from. The constructors
/// are the claim; each one is reviewed where it is called.
#[derive(Debug, Clone, PartialEq)]
pub struct Public<T>(T);

impl<T> Public<T> {
    /// From the task (task.yaml, the brief): the author's, the same for every candidate.
    pub fn task(value: T) -> Public<T> {
        Public(value)
    }
    /// From the candidate's own push, read before any step ran (commit, file counts, lint
    /// findings of ruff run on the submission alone with no data mounted).
    pub fn push(value: T) -> Public<T> {
        Public(value)
    }
    /// takehome's own: versions, the runner image, constant texts.
    pub fn ours(value: T) -> Public<T> {
        Public(value)
    }
    /// When grading finished: the residual timing channel that docs/security.md bounds.
    pub fn clock(value: T) -> Public<T> {
        Public(value)
    }
}

impl<T> Disclosable for Public<T> {}

impl<T> Deref for Public<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Public<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for Public<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A step's products shown as they are: made only by [`Exposure::open`], that is where no hidden
/// data was mounted in that step or any before it (or the task opened its logs with
/// `candidate_logs: true`).
#[derive(Debug, Clone)]
pub struct Open<T>(T);

impl<T> Disclosable for Open<T> {}

impl<T> Deref for Open<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Serialize> Serialize for Open<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Whether a step's products (or a run's outputs) may be shown exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposure {
    open: bool,
}

impl Exposure {
    /// One step: its report's `candidate_logs` (false when it or an earlier step read hidden
    /// data, unless the task opened them).
    pub fn of_step(step: &StepReport) -> Exposure {
        Exposure { open: step.candidate_logs }
    }
    /// What the steps left in `/output`: open only if every step's products are (a report with no
    /// step ran nothing, so nothing in it came from one).
    pub fn of_outputs(report: &Report) -> Exposure {
        Exposure { open: report.steps.iter().all(|s| s.candidate_logs) }
    }
    pub fn is_open(self) -> bool {
        self.open
    }
    pub fn open<T>(self, value: impl FnOnce() -> T) -> Option<Open<T>> {
        self.open.then(|| Open(value()))
    }
    /// `open` when the products may be shown, else `sealed` (kinds and bands only).
    pub fn choose<T>(self, open: impl FnOnce() -> T, sealed: impl FnOnce() -> Public<T>) -> Said<T> {
        match self.open(open) {
            Some(value) => Said::Open(value),
            None => Said::Sealed(sealed()),
        }
    }
}

/// A text or value shown either as the step made it ([`Open`]) or in a form fixed by the task and
/// takehome ([`Public`]), serialised as the value itself.
#[derive(Debug, Clone)]
pub enum Said<T> {
    Open(Open<T>),
    Sealed(Public<T>),
}

impl<T> Disclosable for Said<T> {}

impl<T> Deref for Said<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Said::Open(value) => value,
            Said::Sealed(value) => value,
        }
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Said<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Serialize> Serialize for Said<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

// ------------------------------------------------------------------ the candidate's report

#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    /// Always `"candidate"`: a reader can tell the view from the full report.
    pub view: &'static str,
    pub schema_version: Public<u32>,
    pub task: CandidateTask,
    pub submission: CandidateSubmission,
    pub status: Status,
    pub steps: Vec<CandidateStep>,
    /// Each graded output's format feedback (one for most tasks). Never a score or a metric.
    pub outputs: Vec<CandidateOutput>,
    /// Entries under /output that were refused (links, devices, …), by kind with a banded count;
    /// their paths and reasons only when no hidden data was mounted.
    pub rejected: Vec<CandidateRefusal>,
    pub lint: CandidateLint,
    pub graded_at: Public<String>,
    pub image: Public<String>,
    pub takehome_version: Public<String>,
}
disclosable!(CandidateReport { view, schema_version, task, submission, status, steps, outputs, rejected, lint, graded_at, image, takehome_version });

#[derive(Debug, Clone, Serialize)]
pub struct CandidateTask {
    pub id: Public<String>,
    pub title: Public<String>,
    pub kind: Public<String>,
}
disclosable!(CandidateTask { id, title, kind });

#[derive(Debug, Clone, Serialize)]
pub struct CandidateSubmission {
    pub commit: Option<Public<String>>,
    pub n_files: Public<usize>,
    pub n_bytes: Public<u64>,
    pub skipped_links: Public<Vec<SkippedLink>>,
}
disclosable!(CandidateSubmission { commit, n_files, n_bytes, skipped_links });

#[derive(Debug, Clone, Serialize)]
pub struct CandidateStep {
    pub name: Public<String>,
    pub outcome: Outcome,
    /// What happened, in words; generic when the step read hidden data.
    pub message: Said<String>,
    /// Present only when the step's logs and measurements may be shown (see the module's docs).
    pub details: Option<Open<CandidateStepDetails>>,
    /// When `details` are withheld: the time and peak memory as a coarse share of the limits
    /// (four bands each), enough to see a step near its limit, too coarse to carry data out.
    pub usage: Option<CoarseUsage>,
}
disclosable!(CandidateStep { name, outcome, message, details, usage });

/// A step's resource use in bands of its limits: `under 25 %`, `25–50 %`, `50–90 %`, `over 90 %`.
#[derive(Debug, Clone, Serialize)]
pub struct CoarseUsage {
    pub time: Band,
    pub memory: Band,
    pub timeout_seconds: Public<f64>,
    pub memory_limit_bytes: Public<u64>,
}
disclosable!(CoarseUsage { time, memory, timeout_seconds, memory_limit_bytes });

/// A share of a limit in four bands (two bits), serialised as its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Band {
    #[serde(rename = "under 25 %")]
    Under25,
    #[serde(rename = "25–50 %")]
    From25To50,
    #[serde(rename = "50–90 %")]
    From50To90,
    #[serde(rename = "over 90 %")]
    Over90,
}

impl Disclosable for Band {}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Under25 => "under 25 %",
            Band::From25To50 => "25–50 %",
            Band::From50To90 => "50–90 %",
            Band::Over90 => "over 90 %",
        }
    }
}

impl std::fmt::Display for Band {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The band of `used` in `limit`.
pub fn band(used: f64, limit: f64) -> Band {
    let share = if limit > 0.0 { used / limit } else { 1.0 };
    if share < 0.25 {
        Band::Under25
    } else if share < 0.5 {
        Band::From25To50
    } else if share < 0.9 {
        Band::From50To90
    } else {
        Band::Over90
    }
}

/// A count in five bands (`0`, `1`, `2–9`, `10–99`, `100 or more`): a size without the bits of
/// an exact count, for what a step wrote while hidden data was mounted. Serialised as its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CountBand {
    #[serde(rename = "0")]
    None,
    #[serde(rename = "1")]
    One,
    #[serde(rename = "2–9")]
    Few,
    #[serde(rename = "10–99")]
    Tens,
    #[serde(rename = "100 or more")]
    Many,
}

impl Disclosable for CountBand {}

impl CountBand {
    pub fn as_str(self) -> &'static str {
        match self {
            CountBand::None => "0",
            CountBand::One => "1",
            CountBand::Few => "2–9",
            CountBand::Tens => "10–99",
            CountBand::Many => "100 or more",
        }
    }
}

impl std::fmt::Display for CountBand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A count as a band.
pub fn count_band(count: u64) -> CountBand {
    match count {
        0 => CountBand::None,
        1 => CountBand::One,
        2..=9 => CountBand::Few,
        10..=99 => CountBand::Tens,
        _ => CountBand::Many,
    }
}

/// Refused entries of one kind under /output.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateRefusal {
    pub kind: RefusalKind,
    /// What the kind means, in words.
    pub what: &'static str,
    pub count: CountBand,
    /// The first few entries (path and reason) when no hidden data was mounted; `None` otherwise.
    pub examples: Option<Open<Vec<Rejected>>>,
}
disclosable!(CandidateRefusal { kind, what, count, examples });

/// At most this many refused entries are listed by name in an open run (the rest are counted).
pub const REFUSAL_EXAMPLES: usize = 5;

/// A step's logs and measurements, exactly: only ever inside [`Open`].
#[derive(Debug, Clone, Serialize)]
pub struct CandidateStepDetails {
    pub exit_code: Option<i64>,
    pub wall_seconds: f64,
    pub cpu_seconds: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    pub memory_limit_bytes: u64,
    pub timeout_seconds: f64,
    pub stdout_tail: String,
    pub stderr_tail: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateOutput {
    pub file: Public<String>,
    /// `None` when the output had the expected format (or was not reached).
    pub problem: Option<CandidateProblem>,
}
disclosable!(CandidateOutput { file, problem });

#[derive(Debug, Clone, Serialize)]
pub struct CandidateProblem {
    pub kind: ProblemKind,
    pub message: Said<String>,
}
disclosable!(CandidateProblem { kind, message });

#[derive(Debug, Clone, Serialize)]
pub struct CandidateLint {
    pub tool: Public<String>,
    pub rules: Public<Vec<String>>,
    pub lines_of_code: Public<usize>,
    /// Every finding, counted; `findings` lists the first [`crate::job::MAX_REPORTED_FINDINGS`].
    pub n_findings: Public<usize>,
    /// Findings in the candidate's own code (ruff ran on the submission alone, no data mounted).
    pub findings: Public<Vec<Finding>>,
}
disclosable!(CandidateLint { tool, rules, lines_of_code, n_findings, findings });

/// Keeps the last `bytes` of `text` (from a character boundary); whether anything was cut.
fn keep_tail(text: &mut String, bytes: usize) -> bool {
    if text.len() <= bytes {
        return false;
    }
    let mut start = text.len() - bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.drain(..start);
    true
}

/// Words for an outcome that carry nothing the step chose (no exit code, no sizes).
fn generic_message(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "",
        Outcome::Failed => "exited with an error",
        Outcome::TimedOut => "stopped at its time limit",
        Outcome::OutOfMemory => "stopped at its memory limit",
        Outcome::OutputLimit => "stopped: it printed more than the log limit",
        Outcome::DiskLimit => "stopped: it wrote more than the storage limit",
        Outcome::InfrastructureError => "failed on our side (not counted against you)",
    }
}

/// Refused entries grouped by kind, in the kinds' order; examples only when `exposure` is open.
fn refusals(rejected: &[Rejected], exposure: Exposure) -> Vec<CandidateRefusal> {
    let mut by_kind: BTreeMap<RefusalKind, Vec<&Rejected>> = BTreeMap::new();
    for entry in rejected {
        by_kind.entry(entry.kind).or_default().push(entry);
    }
    by_kind
        .into_iter()
        .map(|(kind, entries)| CandidateRefusal {
            kind,
            what: kind.as_str(),
            count: count_band(entries.len() as u64),
            examples: exposure.open(|| entries.iter().take(REFUSAL_EXAMPLES).map(|entry| (*entry).clone()).collect()),
        })
        .collect()
}

impl CandidateReport {
    pub fn from_report(report: &Report) -> CandidateReport {
        let steps: Vec<CandidateStep> = report
            .steps
            .iter()
            .map(|step| {
                let exposure = Exposure::of_step(step);
                CandidateStep {
                    name: Public::task(step.name.clone()),
                    outcome: step.outcome,
                    message: exposure.choose(|| step.message.clone(), || Public::ours(generic_message(step.outcome).to_string())),
                    usage: (!exposure.is_open()).then(|| CoarseUsage {
                        time: band(step.wall_seconds, step.timeout_seconds),
                        memory: band(step.peak_memory_bytes.unwrap_or(0) as f64, step.memory_limit_bytes as f64),
                        timeout_seconds: Public::task(step.timeout_seconds),
                        memory_limit_bytes: Public::task(step.memory_limit_bytes),
                    }),
                    details: exposure.open(|| CandidateStepDetails {
                        exit_code: step.exit_code,
                        wall_seconds: step.wall_seconds,
                        cpu_seconds: step.cpu_seconds,
                        peak_memory_bytes: step.peak_memory_bytes,
                        memory_limit_bytes: step.memory_limit_bytes,
                        timeout_seconds: step.timeout_seconds,
                        stdout_tail: step.stdout_tail.clone(),
                        stderr_tail: step.stderr_tail.clone(),
                        stdout_truncated: step.stdout_truncated,
                        stderr_truncated: step.stderr_truncated,
                    }),
                }
            })
            .collect();
        // The output was written by the steps: its details are open only if every step's are.
        let output_exposure = Exposure::of_outputs(report);
        let outputs = report
            .components
            .accuracy
            .each(&report.output.file)
            .into_iter()
            .map(|output| {
                let file = output.file;
                let problem = output.accuracy.problem.as_ref().map(|problem| {
                    let message = output_exposure.choose(
                        || problem.message.clone(),
                        || {
                            // The grader's words for each kind of offence name the task's own
                            // columns only; the examples (the step's values) are left out.
                            Public::ours(if problem.offences.is_empty() {
                                match problem.kind {
                                    ProblemKind::MissingOutput => format!("{file}: not written, or not reached"),
                                    ProblemKind::BadFormat => format!("{file}: not in the expected format (see the brief)"),
                                }
                            } else {
                                let kinds: Vec<String> = problem.offences.iter().map(|o| format!("{} ({})", o.what, count_band(o.count))).collect();
                                format!("{file}: {}", kinds.join("; "))
                            })
                        },
                    );
                    CandidateProblem { kind: problem.kind, message }
                });
                CandidateOutput { file: Public::task(file.to_string()), problem }
            })
            .collect();
        let quality = &report.components.code_quality;
        CandidateReport {
            view: "candidate",
            schema_version: Public::ours(SCHEMA_VERSION),
            task: CandidateTask {
                id: Public::task(report.task.id.clone()),
                title: Public::task(report.task.title.clone()),
                kind: Public::task(report.task.kind.clone()),
            },
            submission: CandidateSubmission {
                commit: report.submission.commit.clone().map(Public::push),
                n_files: Public::push(report.submission.n_files),
                n_bytes: Public::push(report.submission.n_bytes),
                skipped_links: Public::push(report.submission.skipped_links.clone()),
            },
            status: report.status,
            steps,
            outputs,
            rejected: refusals(&report.output.rejected, output_exposure),
            lint: CandidateLint {
                tool: Public::task(quality.tool.clone()),
                rules: Public::task(quality.rules.clone()),
                lines_of_code: Public::push(quality.lines_of_code),
                n_findings: Public::push(quality.n_findings.max(quality.findings.len())),
                findings: Public::push(quality.findings.clone()),
            },
            graded_at: Public::clock(report.provenance.graded_at.clone()),
            image: Public::ours(report.provenance.image.clone()),
            takehome_version: Public::ours(report.provenance.takehome_version.clone()),
        }
    }

    /// The same report made to fit a page's budget: each shown log cut to its last `log_bytes`
    /// (marked truncated), and at most `findings` lint findings listed (`n_findings` still counts
    /// them all). Cutting by constants adds nothing a candidate could not already see.
    pub fn trimmed(mut self, log_bytes: usize, findings: usize) -> CandidateReport {
        for step in &mut self.steps {
            if let Some(Open(details)) = &mut step.details {
                if keep_tail(&mut details.stdout_tail, log_bytes) {
                    details.stdout_truncated = true;
                }
                if keep_tail(&mut details.stderr_tail, log_bytes) {
                    details.stderr_truncated = true;
                }
            }
        }
        self.lint.findings.0.truncate(findings);
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a candidate report always serialises")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tail_is_kept_from_a_character_boundary() {
        let mut text = "ééé abc".to_string();
        assert!(super::keep_tail(&mut text, 5));
        assert_eq!(text, " abc");
        let mut short = "abc".to_string();
        assert!(!super::keep_tail(&mut short, 5));
        assert_eq!(short, "abc");
    }

    use super::*;

    fn rejected(path: &str, kind: RefusalKind) -> Rejected {
        Rejected { path: path.to_string(), kind, reason: format!("{path} is refused") }
    }

    #[test]
    fn refused_entries_of_a_sealed_run_are_kinds_and_bands() {
        let entries: Vec<Rejected> = (0..235).map(|n| rejected(&format!("penguins_clean.csv/CHUNK{n:03}"), RefusalKind::SymbolicLink)).collect();
        let sealed = refusals(&entries, Exposure { open: false });
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("CHUNK"), "{json}");
        assert_eq!(json, r#"[{"kind":"symbolic_link","what":"symbolic links","count":"100 or more","examples":null}]"#);
        // The same names of another content give the same answer.
        let other: Vec<Rejected> = (0..150).map(|n| rejected(&format!("x/{n}"), RefusalKind::SymbolicLink)).collect();
        assert_eq!(serde_json::to_string(&refusals(&other, Exposure { open: false })).unwrap(), json);
    }

    #[test]
    fn bands_serialise_as_their_words() {
        for band in [Band::Under25, Band::From25To50, Band::From50To90, Band::Over90] {
            assert_eq!(serde_json::to_value(band).unwrap(), band.as_str());
        }
        for band in [CountBand::None, CountBand::One, CountBand::Few, CountBand::Tens, CountBand::Many] {
            assert_eq!(serde_json::to_value(band).unwrap(), band.as_str());
        }
    }

    #[test]
    fn refused_entries_of_an_open_run_show_a_few_paths() {
        let entries = vec![rejected("a", RefusalKind::Fifo), rejected("b", RefusalKind::SymbolicLink), rejected("c", RefusalKind::SymbolicLink)];
        let open = refusals(&entries, Exposure { open: true });
        assert_eq!(open.len(), 2);
        assert_eq!(open[0].kind, RefusalKind::SymbolicLink);
        assert_eq!(open[0].examples.as_ref().map(|e| e.len()), Some(2));
        let many: Vec<Rejected> = (0..50).map(|n| rejected(&n.to_string(), RefusalKind::Device)).collect();
        assert_eq!(refusals(&many, Exposure { open: true })[0].examples.as_ref().map(|e| e.len()), Some(REFUSAL_EXAMPLES));
    }
}
