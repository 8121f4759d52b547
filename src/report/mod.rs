//! The report of one graded submission: the JSON model (`schema_version` 1) and its plain-text
//! summary. Built by `job`, read by the CLI (and later the web UI). No I/O beyond formatting.

use serde::{Deserialize, Serialize};

use crate::grading::{lint::Finding, Accuracy};
use crate::sandbox::{Outcome, Rejected};
use crate::submission::SkippedLink;
use crate::units::format_size;

pub mod artifacts;
pub mod candidate;
pub mod html;
pub mod markdown;

pub use candidate::CandidateReport;

pub const SCHEMA_VERSION: u32 = 1;

/// How the grading went as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every step ended `ok` and the output was scored.
    Graded,
    /// A step did not end `ok`; the accuracy component is 0.
    StepFailed,
    /// The output was missing or malformed (`missing_output`, `bad_format`); accuracy is 0.
    BadOutput,
    /// The submission itself was refused (too large, too many files) before anything ran.
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Graded => "graded",
            Status::StepFailed => "step_failed",
            Status::BadOutput => "bad_output",
            Status::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRef {
    pub id: String,
    pub title: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmissionRef {
    pub path: String,
    pub commit: Option<String>,
    pub n_files: usize,
    pub n_bytes: u64,
    /// Links that pointed out of the submission and were not copied in.
    pub skipped_links: Vec<SkippedLink>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccuracyComponent {
    #[serde(flatten)]
    pub accuracy: Accuracy,
    pub zero_at: f64,
    pub full_at: f64,
    pub score: f64,
    pub weight: f64,
    /// A task that grades several outputs: each one's grade, and above, their weighted mean
    /// (`score`), the first problem (named by its file) and the metrics' names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputGrade>,
}

/// One graded output of a task that grades several.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputGrade {
    /// The file read from `/output`.
    pub file: String,
    #[serde(flatten)]
    pub accuracy: Accuracy,
    pub zero_at: f64,
    pub full_at: f64,
    /// 0–100 on this output's scale.
    pub score: f64,
    /// Its share of the accuracy score.
    pub weight: f64,
    pub bytes: Option<u64>,
}

/// One graded output as renderings show it.
pub struct OutputView<'a> {
    pub file: &'a str,
    pub accuracy: &'a Accuracy,
    pub zero_at: f64,
    pub full_at: f64,
    /// 0–100 on the output's scale.
    pub score: f64,
    /// Its share of the accuracy score (1 for a task's only output).
    pub weight: f64,
}

impl AccuracyComponent {
    /// Each graded output: the one output of most tasks (whose file is `single_file`, the
    /// report's `output.file`), or each of several.
    pub fn each<'a>(&'a self, single_file: &'a str) -> Vec<OutputView<'a>> {
        if self.outputs.is_empty() {
            vec![OutputView { file: single_file, accuracy: &self.accuracy, zero_at: self.zero_at, full_at: self.full_at, score: self.score, weight: 1.0 }]
        } else {
            self.outputs
                .iter()
                .map(|o| OutputView { file: &o.file, accuracy: &o.accuracy, zero_at: o.zero_at, full_at: o.full_at, score: o.score, weight: o.weight })
                .collect()
        }
    }
}

impl AccuracyComponent {
    /// Each scored classifier's most mixed-up pair of classes, for the debrief.
    pub fn most_confused(&self, single_file: &str) -> Vec<crate::debrief::Confused> {
        self.each(single_file)
            .into_iter()
            .filter(|output| output.accuracy.value.is_some())
            .filter_map(|output| {
                let confusion = output.accuracy.confusion.as_ref()?;
                let mut best: Option<(usize, usize, u64)> = None;
                for (t, row) in confusion.matrix.iter().enumerate() {
                    for (p, &count) in row.iter().enumerate() {
                        if t != p && count > best.map_or(0, |b| b.2) {
                            best = Some((t, p, count));
                        }
                    }
                }
                let (t, p, count) = best?;
                Some(crate::debrief::Confused {
                    output: output.file.to_string(),
                    truth: confusion.labels[t].clone(),
                    predicted: confusion.labels[p].clone(),
                    count,
                    truth_rows: confusion.matrix[t].iter().sum(),
                })
            })
            .collect()
    }

    /// Each scored cleaned table's column with the fewest correct cells, for the debrief.
    pub fn weakest_columns(&self, single_file: &str) -> Vec<crate::debrief::WeakColumn> {
        self.each(single_file)
            .into_iter()
            .filter(|output| output.accuracy.value.is_some())
            .filter_map(|output| {
                let cleaning = output.accuracy.cleaning.as_ref()?;
                let weakest = cleaning.columns.iter().min_by(|a, b| a.accuracy.total_cmp(&b.accuracy))?;
                Some(crate::debrief::WeakColumn {
                    output: output.file.to_string(),
                    column: weakest.column.clone(),
                    accuracy: weakest.accuracy,
                    example: weakest.mismatches.first().map(|m| (m.key.clone(), m.expected.clone(), m.got.clone())),
                })
            })
            .collect()
    }

    /// Each scored output's two worst slices of the hidden rows, worst first, for the debrief.
    pub fn worst_slices(&self, single_file: &str) -> Vec<crate::debrief::WorstSlice> {
        let mut out = Vec::new();
        for output in self.each(single_file) {
            let Some(whole) = output.accuracy.value else { continue };
            let higher_is_better = crate::task::Metric::from_name(&output.accuracy.metric).is_none_or(|m| m.higher_is_better());
            let mut valued: Vec<(&crate::grading::slices::SliceScore, f64)> = output.accuracy.slices.iter().filter_map(|s| s.value.map(|v| (s, v))).collect();
            valued.sort_by(|a, b| if higher_is_better { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) });
            out.extend(valued.into_iter().take(2).map(|(slice, value)| crate::debrief::WorstSlice {
                output: output.file.to_string(),
                metric: output.accuracy.metric.clone(),
                higher_is_better,
                slice: slice.name.clone(),
                rows: slice.rows,
                value,
                whole,
            }));
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeQualityComponent {
    pub tool: String,
    pub rules: Vec<String>,
    pub n_findings: usize,
    pub lines_of_code: usize,
    pub findings_per_100_lines: f64,
    pub zero_at: f64,
    pub findings: Vec<Finding>,
    pub score: f64,
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeComponent {
    pub wall_seconds: f64,
    pub cpu_seconds: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    pub full_under_seconds: f64,
    pub zero_at_seconds: f64,
    pub score: f64,
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Components {
    pub accuracy: AccuracyComponent,
    pub code_quality: CodeQualityComponent,
    pub runtime: RuntimeComponent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub name: String,
    pub outcome: Outcome,
    pub exit_code: Option<i64>,
    pub message: String,
    pub wall_seconds: f64,
    pub cpu_seconds: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    /// `kernel` (the step's cgroup totals, exact) or `sampled` (the engine's stats stream).
    #[serde(default)]
    pub accounting: crate::sandbox::Accounting,
    pub memory_limit_bytes: u64,
    pub timeout_seconds: f64,
    #[serde(default)]
    pub cpus: f64,
    pub stdout_tail: String,
    pub stderr_tail: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Whether the candidate's view may show the logs (false when hidden data was mounted, unless
    /// the task says otherwise; false for reports written before this field existed).
    #[serde(default)]
    pub candidate_logs: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputReport {
    pub file: String,
    pub bytes: Option<u64>,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub image: String,
    pub image_id: String,
    /// The container runtime the steps ran under (runc, or runsc for gVisor).
    #[serde(default)]
    pub runtime: crate::sandbox::Runtime,
    pub dataset: String,
    pub dataset_digest: String,
    /// Digest of the task folder (task.yaml, brief, starter, fixtures) when it was graded.
    #[serde(default)]
    pub task_digest: String,
    pub takehome_version: String,
    pub graded_at: String,
    /// The image the task's Python steps ran in instead of its own, when the submission imports
    /// what only that one has (`extended_images` in task.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_image: Option<ExtendedImage>,
}

/// A larger image a submission ran in, and the modules it imports that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedImage {
    pub image: String,
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// Who submitted, when known (the daemon's assignments; `takehome grade --candidate`).
    #[serde(default)]
    pub candidate: Option<String>,
    pub task: TaskRef,
    pub submission: SubmissionRef,
    pub status: Status,
    /// 0–100: the weighted mean of the component scores (see `formula`).
    pub score: f64,
    pub formula: String,
    pub components: Components,
    pub steps: Vec<StepReport>,
    pub output: OutputReport,
    pub provenance: Provenance,
    /// Each notebook as it ran and the figures the steps saved (`report::artifacts`): for the
    /// assessors only, since in a graded run they may show hidden data.
    #[serde(default, skip_serializing_if = "artifacts::Artifacts::is_empty")]
    pub artifacts: artifacts::Artifacts,
    /// What the submission's own code says about its validation (`methodology`): signals for the
    /// assessors, not part of the score; never in the candidate's view.
    #[serde(default)]
    pub methodology: Vec<crate::methodology::Finding>,
    /// Questions for the follow-up interview from the code, its notes and its findings, as
    /// graded (`debrief`; the debrief page adds the dry run's gap and the timeline); never in the
    /// candidate's view.
    #[serde(default)]
    pub debrief: Vec<crate::debrief::Question>,
}

/// Who reads a rendering: assessors see everything; candidates see their steps, logs, format
/// feedback and lint findings, never a score or anything computed from hidden data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Assessor,
    Candidate,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The JSON of a view: the whole report for assessors; for candidates, the allow-listed
    /// [`CandidateReport`] (a type of its own: a field added to `Report` never reaches it unless
    /// someone adds it there on purpose).
    pub fn to_json_view(&self, view: View) -> String {
        match view {
            View::Assessor => self.to_json(),
            View::Candidate => CandidateReport::from_report(self).to_json(),
        }
    }

    pub fn to_html(&self, view: View) -> String {
        match view {
            View::Assessor => html::render(self),
            View::Candidate => html::render_candidate(&CandidateReport::from_report(self)),
        }
    }

    pub fn to_markdown(&self, view: View) -> String {
        match view {
            View::Assessor => markdown::render(self),
            View::Candidate => markdown::render_candidate(&CandidateReport::from_report(self)),
        }
    }

    /// The human summary that `takehome grade` prints.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let push = |out: &mut String, line: String| {
            out.push_str(&line);
            out.push('\n');
        };
        push(&mut out, format!("task        {} ({})", self.task.id, self.task.kind));
        let commit = self.submission.commit.as_deref().map(|c| format!(" @ {}", &c[..c.len().min(12)])).unwrap_or_default();
        push(&mut out, format!("submission  {}{commit}", self.submission.path));
        for link in &self.submission.skipped_links {
            push(&mut out, format!("            link not copied: {} -> {}", link.path, link.target));
        }
        for step in &self.steps {
            let mut line = format!("step        {:<12} {:<14} {:>8.2} s", step.name, step.outcome.as_str(), step.wall_seconds);
            if let Some(cpu) = step.cpu_seconds {
                line.push_str(&format!("   cpu {cpu:.2} s"));
            }
            if let Some(peak) = step.peak_memory_bytes {
                line.push_str(&format!("   peak {}", format_size(peak)));
            }
            if !step.message.is_empty() && step.outcome != Outcome::Ok {
                line.push_str(&format!("   ({})", step.message));
            }
            push(&mut out, line);
        }
        for rejected in &self.output.rejected {
            push(&mut out, format!("output      refused {}: {}", rejected.path, rejected.reason));
        }
        let c = &self.components;
        let describe = |accuracy: &Accuracy| match (&accuracy.value, &accuracy.problem) {
            (_, Some(problem)) => format!("{} ({})", problem.kind.as_str(), problem.message),
            (Some(value), None) => format!("{} = {value:.4}", accuracy.metric),
            (None, None) => "not scored".to_string(),
        };
        if c.accuracy.outputs.is_empty() {
            push(&mut out, format!("accuracy    {}  score {:>5.1} x {}", describe(&c.accuracy.accuracy), c.accuracy.score, c.accuracy.weight));
        } else {
            push(
                &mut out,
                format!("accuracy    weighted mean of {} outputs  score {:>5.1} x {}", c.accuracy.outputs.len(), c.accuracy.score, c.accuracy.weight),
            );
            for output in &c.accuracy.outputs {
                push(&mut out, format!("  {:<18} {}  score {:>5.1} x {}", output.file, describe(&output.accuracy), output.score, output.weight));
            }
        }
        push(
            &mut out,
            format!(
                "code        {} findings in {} lines ({:.1} per 100)  score {:>5.1} x {}",
                c.code_quality.n_findings, c.code_quality.lines_of_code, c.code_quality.findings_per_100_lines, c.code_quality.score, c.code_quality.weight
            ),
        );
        push(
            &mut out,
            format!(
                "runtime     {:.2} s (full under {:.0} s)  score {:>5.1} x {}",
                c.runtime.wall_seconds, c.runtime.full_under_seconds, c.runtime.score, c.runtime.weight
            ),
        );
        push(&mut out, format!("score       {:.1} / 100  ({})", self.score, self.status.as_str()));
        out
    }
}

/// Now, as an RFC 3339 UTC time (`2026-11-26T05:31:00Z`).
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))
}

/// Seconds since the epoch as an RFC 3339 UTC time, without a date crate.
pub fn rfc3339(seconds: i64) -> String {
    let seconds = seconds.max(0) as u64;
    let (days, rest) = (seconds / 86400, seconds % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}
