//! The report as one self-contained HTML page: inline CSS and SVG, no script, no external asset,
//! readable offline. The page is a maud template: every piece of text (file names, logs, lint
//! messages, labels, cell values) is escaped by the template engine, so none can become markup;
//! only our own constant CSS is inserted as is.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{CandidateReport, Report};
use crate::grading::lint::Finding;
use crate::grading::{cleaning::CleaningDetails, Accuracy, ConfusionReport, Histogram};
use crate::sandbox::Outcome;
use crate::units::format_size;

/// Text as it may be shown: control characters (a log's terminal colour codes, a NUL) become
/// U+FFFD. Escaping is the template's.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        text.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{fffd}' } else { c }).collect::<String>().into()
    } else {
        text.into()
    }
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:24px}
header{background:#1d2430;color:#fff;padding:20px 24px}
header h1{margin:0 0 6px;font-size:22px}
header .meta{opacity:.85}
.total{float:right;font-size:34px;font-weight:700}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:17px;margin:0 0 12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
th{font-weight:600;color:#4a5465}
.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok{background:#dff3e4;color:#1b6b34}.bad{background:#fde2e1;color:#9b1c1c}.warn{background:#fff1d6;color:#8a5a00}
pre{background:#f3f4f6;padding:8px;border-radius:6px;overflow:auto;max-height:420px;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all}
.formula{font:12px/1.5 ui-monospace,Menlo,Consolas,monospace;color:#4a5465}
.finding{margin:6px 0 10px}.finding .rule{font-weight:600}
.context .hit{background:#fff1d6}
details summary{cursor:pointer;font-weight:600;margin:6px 0}
.problem{border-left:4px solid #c53030;padding-left:12px}
tr.sub td:first-child{padding-left:22px;color:#4a5465}
";

fn badge(text: &str, good: bool) -> Markup {
    html! { span.badge.ok[good].bad[!good] { (text) } }
}

fn seconds(value: f64) -> String {
    format!("{value:.2} s")
}

/// The page around `main`: head, style and the dark header.
fn page(title: &str, header: Markup, main: Markup) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { (header) }
                main { (main) }
            }
        }
    };
    let mut text = page.into_string();
    text.push('\n');
    text
}

/// Renders the assessor's page: everything in the report.
pub fn render(report: &Report) -> String {
    render_with(report, html! {})
}

/// The assessor's page with `extra` (the review desk's sections) at the end of its main part.
pub fn render_with(report: &Report, extra: Markup) -> String {
    let title = format!("{} — {}", report.task.title, report.candidate.as_deref().unwrap_or(&report.submission.path));
    let header = html! {
        div.total { (format!("{:.1}", report.score)) small { "/100" } }
        h1 { (report.task.title) }
        div.meta {
            @if let Some(candidate) = &report.candidate { "Candidate " b { (candidate) } " · " }
            "task " (report.task.id) " (" (report.task.kind) ") · "
            @if let Some(commit) = &report.submission.commit { "commit " code { (commit[..commit.len().min(12)]) } " · " }
            "graded " (report.provenance.graded_at) " · status " (badge(report.status.as_str(), report.status == super::Status::Graded))
        }
    };
    let outputs = report.components.accuracy.each(&report.output.file);
    let quality = &report.components.code_quality;
    let main = html! {
        @for output in &outputs {
            @if let Some(problem) = &output.accuracy.problem {
                section.problem {
                    h2 { "Output" @if outputs.len() > 1 { " " (output.file) } ": " (problem.kind.as_str()) }
                    p { (problem.message) }
                    @if !problem.offences.is_empty() {
                        table {
                            tr { th { "what" } th.num { "count" } th { "first offending values" } }
                            @for offence in &problem.offences {
                                tr { td { (offence.what) } td.num { (offence.count) } td { (visible(&offence.examples.join(", "))) } }
                            }
                        }
                    }
                }
            }
        }
        (score_section(report))
        (metric_section(report))
        (lint_section(&quality.findings, quality.n_findings, quality.lines_of_code, &quality.rules))
        (methodology_section(&report.methodology))
        (steps_section(report))
        (artifacts_section(&report.artifacts))
        (provenance_section(report))
        (extra)
    };
    page(&title, header, main)
}

/// The figures the steps saved and each notebook as it ran (assessors only: `report::artifacts`).
fn artifacts_section(artifacts: &crate::report::artifacts::Artifacts) -> Markup {
    use crate::report::artifacts::CellOutput;
    if artifacts.is_empty() {
        return html! {};
    }
    html! {
        section {
            h2 { "What the run left: figures and notebooks" }
            @for figure in &artifacts.figures {
                figure {
                    img alt=(figure.name) style="max-width:100%" src={ "data:" (figure.mime) ";base64," (figure.data) };
                    figcaption { "figures/" (figure.name) }
                }
            }
            @for notebook in &artifacts.notebooks {
                details {
                    summary { (notebook.file) " as it ran (" (notebook.cells.len()) " cells)" }
                    @for (n, cell) in notebook.cells.iter().enumerate().filter(|(_, c)| c.kind == "code") {
                        pre.context { "[" (cell.count.map(|c| c.to_string()).unwrap_or_else(|| " ".into())) "] " (visible(&cell.source)) }
                        @for output in &cell.outputs {
                            @match output {
                                CellOutput::Text { text, .. } => pre { (visible(text)) },
                                CellOutput::Image { mime, data } if mime != "image/svg+xml" => {
                                    img alt={ "figure of cell " (n + 1) } style="max-width:100%" src={ "data:" (mime) ";base64," (data) };
                                }
                                CellOutput::Image { .. } => p { "(an SVG figure: see the code view)" },
                                CellOutput::Omitted { what } => p { "Not shown: " (what) "." },
                            }
                        }
                    }
                }
            }
            @for cut in &artifacts.cut { p { (cut) } }
        }
    }
}

/// Renders the candidate's page from the allow-listed [`CandidateReport`] only.
pub fn render_candidate(report: &CandidateReport) -> String {
    let header = html! {
        h1 { (report.task.title) }
        div.meta {
            "task " (report.task.id) " (" (report.task.kind) ") · "
            @if let Some(commit) = &report.submission.commit { "commit " code { (commit[..commit.len().min(12)]) } " · " }
            "graded " (report.graded_at) " · status " (badge(report.status.as_str(), report.status == super::Status::Graded))
        }
    };
    let main = html! {
        @for output in &report.outputs {
            @if let Some(problem) = &output.problem {
                section.problem { h2 { "Output " (output.file) ": " (problem.kind.as_str()) } p { (problem.message) } }
            }
        }
        (lint_section(&report.lint.findings, *report.lint.n_findings, *report.lint.lines_of_code, &report.lint.rules))
        section {
            h2 { "Steps" }
            table {
                tr { th { "step" } th { "outcome" } th.num { "wall" } th.num { "CPU" } th.num { "peak memory" } }
                @for step in &report.steps {
                    @let (wall, cpu, memory) = match &step.details {
                        Some(d) => (
                            seconds(d.wall_seconds),
                            d.cpu_seconds.map(seconds).unwrap_or_else(|| "—".into()),
                            d.peak_memory_bytes.map(format_size).unwrap_or_else(|| "—".into()),
                        ),
                        None => match &step.usage {
                            Some(u) => (format!("{} of {:.0} s", u.time, u.timeout_seconds), "—".into(), format!("{} of {}", u.memory, format_size(*u.memory_limit_bytes))),
                            None => ("—".into(), "—".into(), "—".into()),
                        },
                    };
                    tr {
                        td { (step.name) }
                        td { (badge(step.outcome.as_str(), step.outcome == Outcome::Ok)) " " (step.message) }
                        td.num { (wall) } td.num { (cpu) } td.num { (memory) }
                    }
                }
            }
            @for step in &report.steps {
                @match &step.details {
                    Some(d) => {
                        @for (stream, tail) in [("stdout", &d.stdout_tail), ("stderr", &d.stderr_tail)] {
                            @if !tail.is_empty() {
                                details { summary { (step.name) " " (stream) } pre { (visible(tail)) } }
                            }
                        }
                    }
                    None => p { (step.name) ": this step reads hidden data, so its logs and measurements are shown to the assessors only." },
                }
            }
        }
        section {
            h2 { "Provenance" }
            table {
                tr { th { "image" } td { code { (report.image) } } }
                tr { th { "takehome" } td { code { (report.takehome_version) } } }
                @for link in report.submission.skipped_links.iter() {
                    tr { th { "link not copied" } td { code { (link.path) " → " (link.target) } } }
                }
                @for refusal in &report.rejected {
                    tr {
                        th { "output refused" }
                        td {
                            (refusal.what) " (" (refusal.count) ")"
                            @if let Some(examples) = &refusal.examples {
                                @for (i, e) in examples.iter().enumerate() {
                                    @if i > 0 { ";" }
                                    " " code { (e.path) } ": " (e.reason)
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&report.task.title, header, main)
}

fn score_section(report: &Report) -> Markup {
    let c = &report.components;
    let outputs = c.accuracy.each(&report.output.file);
    let metric_of = |o: &super::OutputView| match o.accuracy.value {
        Some(value) => format!("{} = {value:.4} (0 at {}, full at {})", o.accuracy.metric, o.zero_at, o.full_at),
        None => format!("{}: not scored", o.accuracy.metric),
    };
    let (metric, per_output) = if outputs.len() > 1 {
        let rows: Vec<(String, String, f64, String)> =
            outputs.iter().map(|o| (format!("↳ {}", o.file), metric_of(o), o.score, format!("{} of accuracy", o.weight))).collect();
        (format!("weighted mean of {} outputs", outputs.len()), rows)
    } else {
        (metric_of(&outputs[0]), Vec::new())
    };
    let rows = [
        (
            "code quality",
            format!(
                "{} findings in {} lines ({:.1} per 100; 0 at {})",
                c.code_quality.n_findings, c.code_quality.lines_of_code, c.code_quality.findings_per_100_lines, c.code_quality.zero_at
            ),
            c.code_quality.score,
            c.code_quality.weight,
        ),
        (
            "runtime",
            format!("{:.2} s (full under {} s, 0 at {} s)", c.runtime.wall_seconds, c.runtime.full_under_seconds, c.runtime.zero_at_seconds),
            c.runtime.score,
            c.runtime.weight,
        ),
    ];
    html! {
        section {
            h2 { "Score" }
            table {
                tr { th { "component" } th { "input" } th.num { "score" } th.num { "weight" } }
                tr { td { "accuracy" } td { (metric) } td.num { (format!("{:.1}", c.accuracy.score)) } td.num { (c.accuracy.weight) } }
                @for (name, input, score, weight) in &per_output {
                    tr.sub { td { (name) } td { (input) } td.num { (format!("{score:.1}")) } td.num { (weight) } }
                }
                @for (name, input, score, weight) in &rows {
                    tr { td { (name) } td { (input) } td.num { (format!("{score:.1}")) } td.num { (weight) } }
                }
                tr { th { "total" } td {} th.num { (format!("{:.1}", report.score)) } td {} }
            }
            p.formula { (report.formula) }
        }
    }
}

fn metric_section(report: &Report) -> Markup {
    let outputs = report.components.accuracy.each(&report.output.file);
    html! {
        @for output in &outputs {
            @let of = if outputs.len() > 1 { format!(" of {}", output.file) } else { String::new() };
            @if let Some(confusion) = &output.accuracy.confusion {
                section { h2 { "Confusion matrix" (of) } (confusion_svg(confusion)) }
            }
            @if let Some(histogram) = &output.accuracy.residuals {
                section { h2 { "Residuals (prediction − truth)" (of) } (histogram_svg(histogram)) }
            }
            @if !output.accuracy.slices.is_empty() {
                (slices_section(output.accuracy, &of))
            }
            @if let Some(cleaning) = &output.accuracy.cleaning {
                (cleaning_section(cleaning, &of))
            }
        }
    }
}

/// The metric on each slice of the hidden rows: a bar each, the whole's value as a line, the
/// worst slice marked.
fn slices_section(accuracy: &Accuracy, of: &str) -> Markup {
    let higher = crate::task::Metric::from_name(&accuracy.metric).is_none_or(|m| m.higher_is_better());
    let worst = crate::grading::slices::worst_and_spread(&accuracy.slices, higher);
    let values = accuracy.slices.iter().filter_map(|s| s.value).chain(accuracy.value);
    // Metrics within [0, 1] are drawn on [0, 1]; others from 0 to their largest value.
    let top = values.clone().fold(0.0f64, f64::max);
    let top = if top <= 1.0 && values.clone().all(|v| v >= 0.0) { 1.0 } else { top.max(f64::MIN_POSITIVE) };
    let (width, row, left, bar_width) = (680usize, 22usize, 230usize, 300usize);
    let height = row * accuracy.slices.len() + 30;
    let x_of = |v: f64| left + ((v.max(0.0) / top).min(1.0) * bar_width as f64) as usize;
    html! {
        section {
            h2 { "Slices of the hidden rows" (of) }
            p {
                (accuracy.metric) " on each slice's rows alone"
                @if let Some(whole) = accuracy.value { " (all rows: " (format!("{whole:.4}")) ")" }
                "; " (if higher { "higher" } else { "lower" }) " is better."
                @if let Some((worst, spread)) = worst {
                    " Worst: " strong { (worst.name) } " at " (format!("{:.4}", worst.value.unwrap_or(f64::NAN))) " on " (crate::units::count(worst.rows, "row"))
                    "; spread between the best and the worst slice " (format!("{spread:.4}")) "."
                }
            }
            svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) role="img" aria-label="metric per slice" font-size="11" {
                @for (i, slice) in accuracy.slices.iter().enumerate() {
                    @let y = 6 + i * row;
                    @let is_worst = worst.is_some_and(|(w, _)| std::ptr::eq(w, slice));
                    text x=(left - 8) y=(y + 14) text-anchor="end" { (truncate(&slice.name, 34)) title { (slice.name) } }
                    @if let Some(value) = slice.value {
                        rect x=(left) y=(y + 3) width=(x_of(value) - left) height=(row - 6) fill=(if is_worst { "#c0392b" } else { "#4c78a8" }) {
                            title { (slice.name) ": " (format!("{value:.4}")) " on " (crate::units::count(slice.rows, "row")) }
                        }
                        text x=(left + bar_width + 8) y=(y + 14) { (format!("{value:.4}")) "  n=" (slice.rows) }
                    } @else {
                        text x=(left + 4) y=(y + 14) fill="#4a5465" { (slice.note.as_deref().unwrap_or("no value")) " (n=" (slice.rows) ")" }
                    }
                }
                @if let Some(whole) = accuracy.value {
                    line x1=(x_of(whole)) x2=(x_of(whole)) y1="2" y2=(height - 22) stroke="#1d2430" stroke-dasharray="4 3" {}
                    text x=(x_of(whole)) y=(height - 8) text-anchor="middle" fill="#4a5465" { "all rows" }
                }
            }
        }
    }
}

/// A heat map: rows are true labels, columns predicted; darker is more.
pub fn confusion_svg(confusion: &ConfusionReport) -> Markup {
    let k = confusion.labels.len();
    let cell = if k <= 6 { 64 } else { (560 / k.max(1)).max(14) };
    let (margin, top) = (110, 44);
    let size = margin + cell * k;
    let max = confusion.matrix.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let middle = top + cell * k / 2;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(size + 10) height=(top + cell * k + 10) role="img" aria-label="confusion matrix" font-size="11" {
            text x=(margin + cell * k / 2) y="12" text-anchor="middle" fill="#4a5465" { "predicted" }
            @for (j, label) in confusion.labels.iter().enumerate() {
                text x=(margin + j * cell + cell / 2) y=(top - 8) text-anchor="middle" { (truncate(label, 10)) }
            }
            @for (i, row) in confusion.matrix.iter().enumerate() {
                @let y = top + i * cell;
                text x=(margin - 8) y=(y + cell / 2 + 4) text-anchor="end" { (truncate(&confusion.labels[i], 14)) }
                @for (j, &count) in row.iter().enumerate() {
                    @let strength = count as f64 / max;
                    @let fill = format!("rgb({:.0},{:.0},{:.0})", 255.0 - 200.0 * strength, 255.0 - 140.0 * strength, 255.0 - 60.0 * strength);
                    rect x=(margin + j * cell) y=(y) width=(cell) height=(cell) fill=(fill) stroke="#fff" {
                        title { "true " (confusion.labels[i]) " / predicted " (confusion.labels[j]) ": " (count) }
                    }
                    @if cell >= 28 {
                        text x=(margin + j * cell + cell / 2) y=(y + cell / 2 + 4) text-anchor="middle" fill=(if strength > 0.55 { "#fff" } else { "#1d2430" }) { (count) }
                    }
                }
            }
            text x="12" y=(middle) transform=(format!("rotate(-90 12 {middle})")) text-anchor="middle" fill="#4a5465" { "true" }
        }
    }
}

fn histogram_svg(histogram: &Histogram) -> Markup {
    let (width, height, left, bottom) = (640usize, 220usize, 50usize, 30usize);
    let n = histogram.counts.len().max(1);
    let bar = (width - left) / n;
    let max = histogram.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) role="img" aria-label="residual histogram" font-size="11" {
            @for (i, &count) in histogram.counts.iter().enumerate() {
                @let h = ((height - bottom - 10) as f64 * count as f64 / max) as usize;
                @let low = histogram.low + (histogram.high - histogram.low) * i as f64 / n as f64;
                rect x=(left + i * bar) y=(height - bottom - h) width=(bar.saturating_sub(1)) height=(h) fill="#4c78a8" {
                    title { (format!("from {low:.3}: {count}")) }
                }
            }
            text x=(left) y=(height - 10) { (format!("{:.3}", histogram.low)) }
            text x=(width - 4) y=(height - 10) text-anchor="end" { (format!("{:.3}", histogram.high)) }
            text x="4" y="14" { (max as u64) }
        }
    }
}

/// `of` names the output when the task grades several.
fn cleaning_section(cleaning: &CleaningDetails, of: &str) -> Markup {
    let (width, row) = (640usize, 24usize);
    let height = row * cleaning.columns.len() + 8;
    let with_mismatches: Vec<_> = cleaning.columns.iter().filter(|c| !c.mismatches.is_empty()).collect();
    html! {
        section {
            h2 { "Cleaning" (of) ": per-column accuracy" }
            svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) role="img" aria-label="per-column accuracy" font-size="12" {
                @for (i, column) in cleaning.columns.iter().enumerate() {
                    @let y = i * row + 4;
                    text x="150" y=(y + 15) text-anchor="end" { (truncate(&column.column, 22)) }
                    rect x="160" y=(y) width=(width - 220) height=(row - 6) fill="#eceff3" {}
                    rect x="160" y=(y) width=(((width - 220) as f64 * column.accuracy) as usize) height=(row - 6) fill="#54a24b" {}
                    text x=(width - 54) y=(y + 15) { (format!("{:.1}%", column.accuracy * 100.0)) }
                }
            }
            p {
                (format!(
                    "{} truth rows, {} output rows: {} matched, {} dropped, {} duplicated, {} invented (row precision {:.3}, recall {:.3}).",
                    cleaning.n_truth_rows,
                    cleaning.n_output_rows,
                    cleaning.n_matched_rows,
                    cleaning.n_dropped_rows,
                    cleaning.n_duplicate_rows,
                    cleaning.n_invented_rows,
                    cleaning.row_precision,
                    cleaning.row_recall
                ))
            }
            @for (what, list) in [("Missing columns", &cleaning.missing_columns), ("Extra columns", &cleaning.extra_columns)] {
                @if !list.is_empty() { p { (what) ": " (list.join(", ")) } }
            }
            @for mismatch in &cleaning.schema_mismatches {
                p { "Column " (mismatch.column) " holds " (mismatch.got) " where the truth holds " (mismatch.expected) "." }
            }
            @if !with_mismatches.is_empty() {
                details {
                    summary { "First mismatches per column" }
                    table {
                        tr { th { "column" } th { "key" } th { "expected" } th { "got" } }
                        @for column in &with_mismatches {
                            @for m in &column.mismatches {
                                tr { td { (column.column) } td { (visible(&m.key)) } td { code { (visible(&m.expected)) } } td { code { (visible(&m.got)) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the code says about its validation: each finding with its rule, file, line and why it
/// matters (signals, not part of the score).
fn methodology_section(findings: &[crate::methodology::Finding]) -> Markup {
    html! {
        section.methodology {
            h2 { "Methodology: " (findings.len()) " finding" @if findings.len() != 1 { "s" } }
            @if findings.is_empty() {
                p { "Nothing found: the code holds rows out before it measures, seeds what is random, keeps the target out of the features and fits nothing on the rows it predicts (as far as its Python and R show)." }
            } @else {
                p { "Read from the submission's own code (never run); signals for the follow-up, not part of the score." }
                @for finding in findings {
                    div.finding {
                        span.rule { (finding.rule.as_str()) } " " code { (finding.place()) } ": " (finding.message)
                    }
                }
            }
        }
    }
}

fn lint_section(findings: &[Finding], total: usize, lines_of_code: usize, rules: &[String]) -> Markup {
    let total = total.max(findings.len());
    let mut files: Vec<&str> = findings.iter().map(|f| f.file.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    html! {
        section {
            h2 { "Code quality: " (total) " findings (" (lines_of_code) " lines of code; rules " (rules.join(", ")) ")" }
            @if findings.len() < total {
                p { "The first " (findings.len()) " of " (total) " findings are listed; all count in the score." }
            }
            @for file in files {
                @let in_file: Vec<_> = findings.iter().filter(|f| f.file == file).collect();
                details open {
                    summary { (if file.is_empty() { "(whole submission)" } else { file }) " (" (in_file.len()) ")" }
                    @for finding in in_file {
                        div.finding {
                            span.rule { (finding.rule) } " line " (finding.line) ": " (finding.message)
                            @if !finding.context.is_empty() {
                                pre.context {
                                    @for (number, text) in &finding.context {
                                        span class=[(*number == finding.line).then_some("hit")] { (format!("{number:>5} | ")) (visible(text)) } "\n"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn steps_section(report: &Report) -> Markup {
    // Timeline: each step's wall time against its timeout.
    let longest = report.steps.iter().map(|s| s.timeout_seconds.max(s.wall_seconds)).fold(1.0f64, f64::max);
    let (width, row) = (640usize, 26usize);
    let scale = (width - 140) as f64 / longest;
    html! {
        section {
            h2 { "Steps" }
            svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(row * report.steps.len() + 8) role="img" aria-label="step timeline" font-size="12" {
                @for (i, step) in report.steps.iter().enumerate() {
                    @let y = i * row + 4;
                    text x="90" y=(y + 15) text-anchor="end" { (truncate(&step.name, 12)) }
                    rect x="100" y=(y) width=(format!("{:.0}", step.timeout_seconds * scale)) height=(row - 8) fill="#eceff3" {
                        title { (format!("timeout {:.0} s", step.timeout_seconds)) }
                    }
                    rect x="100" y=(y) width=(format!("{:.0}", (step.wall_seconds * scale).max(1.0))) height=(row - 8)
                        fill=(if step.outcome == Outcome::Ok { "#54a24b" } else { "#e45756" }) {
                        title { (format!("{:.2} s", step.wall_seconds)) }
                    }
                }
            }
            table {
                tr { th { "step" } th { "outcome" } th.num { "wall" } th.num { "CPU" } th.num { "peak memory" } th { "limits" } }
                @for step in &report.steps {
                    @let memory = step
                        .peak_memory_bytes
                        .map(|b| format!("{} ({:.0}%)", format_size(b), 100.0 * b as f64 / step.memory_limit_bytes.max(1) as f64))
                        .unwrap_or_else(|| "—".into());
                    tr {
                        td { (step.name) }
                        td { (badge(step.outcome.as_str(), step.outcome == Outcome::Ok)) " " (step.message) }
                        td.num { (seconds(step.wall_seconds)) }
                        td.num { (step.cpu_seconds.map(seconds).unwrap_or_else(|| "—".into())) }
                        td.num { (memory) }
                        td { (format!("{:.0} s, {}, {} CPU", step.timeout_seconds, format_size(step.memory_limit_bytes), step.cpus)) }
                    }
                }
            }
            @for step in &report.steps {
                @for (stream, tail, bytes, truncated) in [("stdout", &step.stdout_tail, step.stdout_bytes, step.stdout_truncated), ("stderr", &step.stderr_tail, step.stderr_bytes, step.stderr_truncated)] {
                    @if !tail.is_empty() {
                        details {
                            summary {
                                (step.name) " " (stream) " (" (format_size(bytes))
                                @if truncated { ", last " (format_size(tail.len() as u64)) " kept" }
                                ")"
                            }
                            pre { (visible(tail)) }
                        }
                    }
                }
            }
        }
    }
}

fn provenance_section(report: &Report) -> Markup {
    let p = &report.provenance;
    let mut rows = vec![
        ("submission", report.submission.path.clone()),
        ("commit", report.submission.commit.clone().unwrap_or_else(|| "(not a git checkout)".into())),
        ("image", format!("{} ({})", p.image, p.image_id)),
        ("runtime", p.runtime.as_str().to_string()),
        ("takehome", p.takehome_version.clone()),
        ("graded at", p.graded_at.clone()),
    ];
    rows.insert(3, ("data set", format!("{} (sha256 {})", p.dataset, p.dataset_digest)));
    if let Some(extended) = &p.extended_image {
        rows.insert(3, ("ran in", format!("{} (the submission imports {})", extended.image, extended.modules.join(", "))));
    }
    html! {
        section {
            h2 { "Provenance" }
            table {
                @for (key, value) in &rows { tr { th { (key) } td { code { (value) } } } }
                @for link in report.submission.skipped_links.iter() {
                    tr { th { "link not copied" } td { code { (link.path) " → " (link.target) } } }
                }
                @for rejected in &report.output.rejected {
                    tr { th { "output refused" } td { code { (rejected.path) } ": " (rejected.reason) } }
                }
            }
        }
    }
}

fn truncate(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n - 1).collect::<String>())
    }
}
