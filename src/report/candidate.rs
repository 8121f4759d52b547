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
//! counts in four bands, without examples. No score, no metric, no data set digest, ever. The
//! public dry run (steps over public data only) is where a candidate sees everything.

use serde::Serialize;

use super::{Report, Status, SCHEMA_VERSION};
use crate::grading::lint::Finding;
use crate::grading::ProblemKind;
use crate::sandbox::{Outcome, Rejected};
use crate::submission::SkippedLink;

#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    /// Always `"candidate"`: a reader can tell the view from the full report.
    pub view: &'static str,
    pub schema_version: u32,
    pub task: CandidateTask,
    pub submission: CandidateSubmission,
    pub status: Status,
    pub steps: Vec<CandidateStep>,
    /// Each graded output's format feedback (one for most tasks). Never a score or a metric.
    pub outputs: Vec<CandidateOutput>,
    /// Files under /output that were refused (links, devices, …).
    pub rejected: Vec<Rejected>,
    pub lint: CandidateLint,
    pub graded_at: String,
    pub image: String,
    pub takehome_version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateTask {
    pub id: String,
    pub title: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateSubmission {
    pub commit: Option<String>,
    pub n_files: usize,
    pub n_bytes: u64,
    pub skipped_links: Vec<SkippedLink>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateStep {
    pub name: String,
    pub outcome: Outcome,
    /// What happened, in words; generic when the step read hidden data.
    pub message: String,
    /// Present only when the step's logs and measurements may be shown (see the module's docs).
    pub details: Option<CandidateStepDetails>,
    /// When `details` are withheld: the time and peak memory as a coarse share of the limits
    /// (four bands each), enough to see a step near its limit, too coarse to carry data out.
    pub usage: Option<CoarseUsage>,
}

/// A step's resource use in bands of its limits: `under 25 %`, `25–50 %`, `50–90 %`, `over 90 %`.
#[derive(Debug, Clone, Serialize)]
pub struct CoarseUsage {
    pub time: &'static str,
    pub memory: &'static str,
    pub timeout_seconds: f64,
    pub memory_limit_bytes: u64,
}

/// The band of `used` in `limit`.
pub fn band(used: f64, limit: f64) -> &'static str {
    let share = if limit > 0.0 { used / limit } else { 1.0 };
    if share < 0.25 {
        "under 25 %"
    } else if share < 0.5 {
        "25–50 %"
    } else if share < 0.9 {
        "50–90 %"
    } else {
        "over 90 %"
    }
}

/// A count as a band (`1`, `2–9`, `10–99`, `100 or more`): a format problem's size without the
/// bits of an exact count, for outputs written while hidden data was mounted.
pub fn count_band(count: u64) -> &'static str {
    match count {
        0 => "0",
        1 => "1",
        2..=9 => "2–9",
        10..=99 => "10–99",
        _ => "100 or more",
    }
}

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
    pub file: String,
    /// `None` when the output had the expected format (or was not reached).
    pub problem: Option<CandidateProblem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateProblem {
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateLint {
    pub tool: String,
    pub rules: Vec<String>,
    pub lines_of_code: usize,
    /// Findings in the candidate's own code (ruff ran on the submission alone, no data mounted).
    pub findings: Vec<Finding>,
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

impl CandidateReport {
    pub fn from_report(report: &Report) -> CandidateReport {
        let steps: Vec<CandidateStep> = report
            .steps
            .iter()
            .map(|step| {
                let open = step.candidate_logs;
                CandidateStep {
                    name: step.name.clone(),
                    outcome: step.outcome,
                    message: if open { step.message.clone() } else { generic_message(step.outcome).to_string() },
                    usage: (!open).then(|| CoarseUsage {
                        time: band(step.wall_seconds, step.timeout_seconds),
                        memory: band(step.peak_memory_bytes.unwrap_or(0) as f64, step.memory_limit_bytes as f64),
                        timeout_seconds: step.timeout_seconds,
                        memory_limit_bytes: step.memory_limit_bytes,
                    }),
                    details: open.then(|| CandidateStepDetails {
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
        let output_open = !report.steps.is_empty() && report.steps.iter().all(|s| s.candidate_logs);
        let outputs = report
            .components
            .accuracy
            .each(&report.output.file)
            .into_iter()
            .map(|output| {
                let file = output.file;
                let problem = output.accuracy.problem.as_ref().map(|problem| {
                    let message = if output_open || report.steps.is_empty() {
                        problem.message.clone()
                    } else if problem.offences.is_empty() {
                        match problem.kind {
                            ProblemKind::MissingOutput => format!("{file}: not written, or not reached"),
                            ProblemKind::BadFormat => format!("{file}: not in the expected format (see the brief)"),
                        }
                    } else {
                        let kinds: Vec<String> = problem.offences.iter().map(|o| format!("{} ({})", o.what, count_band(o.count))).collect();
                        format!("{file}: {}", kinds.join("; "))
                    };
                    CandidateProblem { kind: problem.kind, message }
                });
                CandidateOutput { file: file.to_string(), problem }
            })
            .collect();
        let quality = &report.components.code_quality;
        CandidateReport {
            view: "candidate",
            schema_version: SCHEMA_VERSION,
            task: CandidateTask { id: report.task.id.clone(), title: report.task.title.clone(), kind: report.task.kind.clone() },
            submission: CandidateSubmission {
                commit: report.submission.commit.clone(),
                n_files: report.submission.n_files,
                n_bytes: report.submission.n_bytes,
                skipped_links: report.submission.skipped_links.clone(),
            },
            status: report.status,
            steps,
            outputs,
            rejected: report.output.rejected.clone(),
            lint: CandidateLint {
                tool: quality.tool.clone(),
                rules: quality.rules.clone(),
                lines_of_code: quality.lines_of_code,
                findings: quality.findings.clone(),
            },
            graded_at: report.provenance.graded_at.clone(),
            image: report.provenance.image.clone(),
            takehome_version: report.provenance.takehome_version.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a candidate report always serialises")
    }
}
