//! The report as one self-contained HTML page: inline CSS and SVG, no script, no external asset,
//! readable offline. Every piece of text that came from a candidate (file names, logs, lint
//! messages, labels, cell values) goes through [`esc`], so it can never become markup.

use std::fmt::Write;

use super::{CandidateReport, Report};
use crate::grading::lint::Finding;
use crate::grading::{cleaning::CleaningDetails, ConfusionReport, Histogram};
use crate::sandbox::Outcome;
use crate::units::format_size;

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
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

fn badge(text: &str, good: bool) -> String {
    format!("<span class=\"badge {}\">{}</span>", if good { "ok" } else { "bad" }, esc(text))
}

fn seconds(value: f64) -> String {
    format!("{value:.2} s")
}

/// Renders the assessor's page: everything in the report.
pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let title = format!("{} — {}", report.task.title, report.candidate.as_deref().unwrap_or(&report.submission.path));
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    // Header.
    page.push_str("<header>");
    let _ = write!(page, "<div class=\"total\">{:.1}<small>/100</small></div>", report.score);
    let _ = write!(page, "<h1>{}</h1><div class=\"meta\">", esc(&report.task.title));
    if let Some(candidate) = &report.candidate {
        let _ = write!(page, "Candidate <b>{}</b> · ", esc(candidate));
    }
    let _ = write!(page, "task {} ({}) · ", esc(&report.task.id), esc(&report.task.kind));
    if let Some(commit) = &report.submission.commit {
        let _ = write!(page, "commit <code>{}</code> · ", esc(&commit[..commit.len().min(12)]));
    }
    let _ = write!(
        page,
        "graded {} · status {}</div></header>\n<main>\n",
        esc(&report.provenance.graded_at),
        badge(report.status.as_str(), report.status == super::Status::Graded)
    );

    let outputs = report.components.accuracy.each(&report.output.file);
    for output in &outputs {
        let Some(problem) = &output.accuracy.problem else { continue };
        let named = if outputs.len() > 1 { format!(" {}", output.file) } else { String::new() };
        let _ = write!(page, "<section class=\"problem\"><h2>Output{}: {}</h2><p>{}</p>", esc(&named), esc(problem.kind.as_str()), esc(&problem.message));
        if !problem.offences.is_empty() {
            page.push_str("<table><tr><th>what</th><th class=\"num\">count</th><th>first offending values</th></tr>");
            for offence in &problem.offences {
                let _ = write!(
                    page,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    esc(&offence.what),
                    offence.count,
                    esc(&offence.examples.join(", "))
                );
            }
            page.push_str("</table>");
        }
        page.push_str("</section>\n");
    }

    score_section(&mut page, report);
    metric_section(&mut page, report);
    let quality = &report.components.code_quality;
    lint_section(&mut page, &quality.findings, quality.n_findings, quality.lines_of_code, &quality.rules);
    steps_section(&mut page, report);
    artifacts_section(&mut page, &report.artifacts);
    provenance_section(&mut page, report);
    page.push_str("</main></body></html>\n");
    page
}

/// The figures the steps saved and each notebook as it ran (assessors only: `report::artifacts`).
fn artifacts_section(page: &mut String, artifacts: &crate::report::artifacts::Artifacts) {
    use crate::report::artifacts::CellOutput;
    if artifacts.is_empty() {
        return;
    }
    page.push_str("<section><h2>What the run left: figures and notebooks</h2>");
    for figure in &artifacts.figures {
        let _ = write!(
            page,
            "<figure><img alt=\"{name}\" style=\"max-width:100%\" src=\"data:{};base64,{}\"><figcaption>figures/{name}</figcaption></figure>",
            esc(&figure.mime),
            esc(&figure.data),
            name = esc(&figure.name)
        );
    }
    for notebook in &artifacts.notebooks {
        let _ = write!(page, "<details><summary>{} as it ran ({} cells)</summary>", esc(&notebook.file), notebook.cells.len());
        for (n, cell) in notebook.cells.iter().enumerate().filter(|(_, c)| c.kind == "code") {
            let _ = write!(page, "<pre class=\"context\">[{}] {}</pre>", cell.count.map(|c| c.to_string()).unwrap_or_else(|| " ".into()), esc(&cell.source));
            for output in &cell.outputs {
                match output {
                    CellOutput::Text { text, .. } => {
                        let _ = write!(page, "<pre>{}</pre>", esc(text));
                    }
                    CellOutput::Image { mime, data } if mime != "image/svg+xml" => {
                        let _ = write!(page, "<img alt=\"figure of cell {}\" style=\"max-width:100%\" src=\"data:{};base64,{}\">", n + 1, esc(mime), esc(data));
                    }
                    CellOutput::Image { .. } => page.push_str("<p>(an SVG figure: see the code view)</p>"),
                    CellOutput::Omitted { what } => {
                        let _ = write!(page, "<p>Not shown: {}.</p>", esc(what));
                    }
                }
            }
        }
        page.push_str("</details>");
    }
    for cut in &artifacts.cut {
        let _ = write!(page, "<p>{}</p>", esc(cut));
    }
    page.push_str("</section>\n");
}

/// Renders the candidate's page from the allow-listed [`CandidateReport`] only.
pub fn render_candidate(report: &CandidateReport) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<header><h1>{}</h1><div class=\"meta\">task {} ({}) · ",
        esc(&report.task.title),
        esc(&report.task.title),
        esc(&report.task.id),
        esc(&report.task.kind)
    );
    if let Some(commit) = &report.submission.commit {
        let _ = write!(page, "commit <code>{}</code> · ", esc(&commit[..commit.len().min(12)]));
    }
    let _ = write!(
        page,
        "graded {} · status {}</div></header>\n<main>\n",
        esc(&report.graded_at),
        badge(report.status.as_str(), report.status == super::Status::Graded)
    );
    for output in &report.outputs {
        if let Some(problem) = &output.problem {
            let _ = writeln!(
                page,
                "<section class=\"problem\"><h2>Output {}: {}</h2><p>{}</p></section>",
                esc(&output.file),
                esc(problem.kind.as_str()),
                esc(&problem.message)
            );
        }
    }
    lint_section(&mut page, &report.lint.findings, *report.lint.n_findings, *report.lint.lines_of_code, &report.lint.rules);
    page.push_str("<section><h2>Steps</h2><table><tr><th>step</th><th>outcome</th><th class=\"num\">wall</th><th class=\"num\">CPU</th><th class=\"num\">peak memory</th></tr>");
    for step in &report.steps {
        let (wall, cpu, memory) = match &step.details {
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
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{} {}</td><td class=\"num\">{wall}</td><td class=\"num\">{cpu}</td><td class=\"num\">{memory}</td></tr>",
            esc(&step.name),
            badge(step.outcome.as_str(), step.outcome == Outcome::Ok),
            esc(&step.message)
        );
    }
    page.push_str("</table>");
    for step in &report.steps {
        match &step.details {
            Some(d) => {
                for (stream, tail) in [("stdout", &d.stdout_tail), ("stderr", &d.stderr_tail)] {
                    if !tail.is_empty() {
                        let _ = write!(page, "<details><summary>{} {stream}</summary><pre>{}</pre></details>", esc(&step.name), esc(tail));
                    }
                }
            }
            None => {
                let _ = write!(page, "<p>{}: this step reads hidden data, so its logs and measurements are shown to the assessors only.</p>", esc(&step.name));
            }
        }
    }
    page.push_str("</section>\n<section><h2>Provenance</h2><table>");
    let _ = write!(
        page,
        "<tr><th>image</th><td><code>{}</code></td></tr><tr><th>takehome</th><td><code>{}</code></td></tr>",
        esc(&report.image),
        esc(&report.takehome_version)
    );
    for link in report.submission.skipped_links.iter() {
        let _ = write!(page, "<tr><th>link not copied</th><td><code>{} → {}</code></td></tr>", esc(&link.path), esc(&link.target));
    }
    for refusal in &report.rejected {
        let examples = match &refusal.examples {
            Some(examples) => examples.iter().map(|e| format!(" <code>{}</code>: {}", esc(&e.path), esc(&e.reason))).collect::<Vec<_>>().join(";"),
            None => String::new(),
        };
        let _ = write!(page, "<tr><th>output refused</th><td>{} ({}){examples}</td></tr>", esc(refusal.what), refusal.count);
    }
    page.push_str("</table></section>\n</main></body></html>\n");
    page
}

fn score_section(page: &mut String, report: &Report) {
    let c = &report.components;
    page.push_str("<section><h2>Score</h2><table><tr><th>component</th><th>input</th><th class=\"num\">score</th><th class=\"num\">weight</th></tr>");
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
    let _ = write!(
        page,
        "<tr><td>accuracy</td><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td></tr>",
        esc(&metric),
        c.accuracy.score,
        c.accuracy.weight
    );
    for (name, input, score, weight) in per_output {
        let _ = write!(
            page,
            "<tr class=\"sub\"><td>{}</td><td>{}</td><td class=\"num\">{score:.1}</td><td class=\"num\">{}</td></tr>",
            esc(&name),
            esc(&input),
            esc(&weight)
        );
    }
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
    for (name, input, score, weight) in rows {
        let _ = write!(page, "<tr><td>{name}</td><td>{}</td><td class=\"num\">{score:.1}</td><td class=\"num\">{weight}</td></tr>", esc(&input));
    }
    let _ = writeln!(
        page,
        "<tr><th>total</th><td></td><th class=\"num\">{:.1}</th><td></td></tr></table><p class=\"formula\">{}</p></section>",
        report.score,
        esc(&report.formula)
    );
}

fn metric_section(page: &mut String, report: &Report) {
    let outputs = report.components.accuracy.each(&report.output.file);
    for output in &outputs {
        let of = if outputs.len() > 1 { format!(" of {}", esc(output.file)) } else { String::new() };
        let accuracy = output.accuracy;
        if let Some(confusion) = &accuracy.confusion {
            let _ = write!(page, "<section><h2>Confusion matrix{of}</h2>");
            page.push_str(&confusion_svg(confusion));
            page.push_str("</section>\n");
        }
        if let Some(histogram) = &accuracy.residuals {
            let _ = write!(page, "<section><h2>Residuals (prediction − truth){of}</h2>");
            page.push_str(&histogram_svg(histogram));
            page.push_str("</section>\n");
        }
        if let Some(cleaning) = &accuracy.cleaning {
            cleaning_section(page, cleaning, &of);
        }
    }
}

/// A heat map: rows are true labels, columns predicted; darker is more.
pub fn confusion_svg(confusion: &ConfusionReport) -> String {
    let k = confusion.labels.len();
    let cell = if k <= 6 { 64 } else { (560 / k.max(1)).max(14) };
    let (margin, top) = (110, 44);
    let size = margin + cell * k;
    let max = confusion.matrix.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"confusion matrix\" font-size=\"11\">",
        size + 10,
        top + cell * k + 10
    );
    let _ = write!(svg, "<text x=\"{}\" y=\"12\" text-anchor=\"middle\" fill=\"#4a5465\">predicted</text>", margin + cell * k / 2);
    for (j, label) in confusion.labels.iter().enumerate() {
        let _ = write!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>", margin + j * cell + cell / 2, top - 8, esc(&truncate(label, 10)));
    }
    for (i, row) in confusion.matrix.iter().enumerate() {
        let y = top + i * cell;
        let _ = write!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", margin - 8, y + cell / 2 + 4, esc(&truncate(&confusion.labels[i], 14)));
        for (j, &count) in row.iter().enumerate() {
            let strength = count as f64 / max;
            let (r, g, b) = (255.0 - 200.0 * strength, 255.0 - 140.0 * strength, 255.0 - 60.0 * strength);
            let _ = write!(
                svg,
                "<rect x=\"{}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({:.0},{:.0},{:.0})\" stroke=\"#fff\"><title>true {} / predicted {}: {count}</title></rect>",
                margin + j * cell,
                r,
                g,
                b,
                esc(&confusion.labels[i]),
                esc(&confusion.labels[j])
            );
            if cell >= 28 {
                let color = if strength > 0.55 { "#fff" } else { "#1d2430" };
                let _ = write!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{color}\">{count}</text>",
                    margin + j * cell + cell / 2,
                    y + cell / 2 + 4
                );
            }
        }
    }
    let _ = write!(
        svg,
        "<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\" fill=\"#4a5465\">true</text></svg>",
        top + cell * k / 2,
        top + cell * k / 2
    );
    svg
}

fn histogram_svg(histogram: &Histogram) -> String {
    let (width, height, left, bottom) = (640usize, 220usize, 50usize, 30usize);
    let n = histogram.counts.len().max(1);
    let bar = (width - left) / n;
    let max = histogram.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"residual histogram\" font-size=\"11\">"
    );
    for (i, &count) in histogram.counts.iter().enumerate() {
        let h = ((height - bottom - 10) as f64 * count as f64 / max) as usize;
        let low = histogram.low + (histogram.high - histogram.low) * i as f64 / n as f64;
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\" fill=\"#4c78a8\"><title>from {low:.3}: {count}</title></rect>",
            left + i * bar,
            height - bottom - h,
            bar.saturating_sub(1)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"{}\">{:.3}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3}</text><text x=\"4\" y=\"14\">{}</text></svg>",
        height - 10,
        histogram.low,
        width - 4,
        height - 10,
        histogram.high,
        max as u64
    );
    svg
}

/// `of` names the output (already escaped) when the task grades several.
fn cleaning_section(page: &mut String, cleaning: &CleaningDetails, of: &str) {
    let _ = write!(page, "<section><h2>Cleaning{of}: per-column accuracy</h2>");
    let (width, row) = (640usize, 24usize);
    let height = row * cleaning.columns.len() + 8;
    let _ = write!(
        page,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"per-column accuracy\" font-size=\"12\">"
    );
    for (i, column) in cleaning.columns.iter().enumerate() {
        let y = i * row + 4;
        let w = ((width - 220) as f64 * column.accuracy) as usize;
        let _ = write!(
            page,
            "<text x=\"150\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"160\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"#eceff3\"/><rect x=\"160\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"#54a24b\"/><text x=\"{}\" y=\"{}\">{:.1}%</text>",
            y + 15,
            esc(&truncate(&column.column, 22)),
            width - 220,
            row - 6,
            row - 6,
            width - 54,
            y + 15,
            column.accuracy * 100.0
        );
    }
    page.push_str("</svg>");
    let _ = write!(
        page,
        "<p>{} truth rows, {} output rows: {} matched, {} dropped, {} duplicated, {} invented (row precision {:.3}, recall {:.3}).</p>",
        cleaning.n_truth_rows,
        cleaning.n_output_rows,
        cleaning.n_matched_rows,
        cleaning.n_dropped_rows,
        cleaning.n_duplicate_rows,
        cleaning.n_invented_rows,
        cleaning.row_precision,
        cleaning.row_recall
    );
    for (what, list) in [("Missing columns", &cleaning.missing_columns), ("Extra columns", &cleaning.extra_columns)] {
        if !list.is_empty() {
            let _ = write!(page, "<p>{what}: {}</p>", esc(&list.join(", ")));
        }
    }
    for mismatch in &cleaning.schema_mismatches {
        let _ = write!(page, "<p>Column {} holds {} where the truth holds {}.</p>", esc(&mismatch.column), esc(&mismatch.got), esc(&mismatch.expected));
    }
    let with_mismatches: Vec<_> = cleaning.columns.iter().filter(|c| !c.mismatches.is_empty()).collect();
    if !with_mismatches.is_empty() {
        page.push_str("<details><summary>First mismatches per column</summary><table><tr><th>column</th><th>key</th><th>expected</th><th>got</th></tr>");
        for column in with_mismatches {
            for m in &column.mismatches {
                let _ = write!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    esc(&column.column),
                    esc(&m.key),
                    esc(&m.expected),
                    esc(&m.got)
                );
            }
        }
        page.push_str("</table></details>");
    }
    page.push_str("</section>\n");
}

fn lint_section(page: &mut String, findings: &[Finding], total: usize, lines_of_code: usize, rules: &[String]) {
    let total = total.max(findings.len());
    let _ = write!(page, "<section><h2>Code quality: {total} findings ({} lines of code; rules {})</h2>", lines_of_code, esc(&rules.join(", ")));
    if findings.len() < total {
        let _ = write!(page, "<p>The first {} of {total} findings are listed; all count in the score.</p>", findings.len());
    }
    let mut files: Vec<&str> = findings.iter().map(|f| f.file.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    for file in files {
        let in_file: Vec<_> = findings.iter().filter(|f| f.file == file).collect();
        let _ = write!(page, "<details open><summary>{} ({})</summary>", esc(if file.is_empty() { "(whole submission)" } else { file }), in_file.len());
        for finding in in_file {
            let _ = write!(page, "<div class=\"finding\"><span class=\"rule\">{}</span> line {}: {}", esc(&finding.rule), finding.line, esc(&finding.message));
            if !finding.context.is_empty() {
                page.push_str("<pre class=\"context\">");
                for (number, text) in &finding.context {
                    let class = if *number == finding.line { " class=\"hit\"" } else { "" };
                    let _ = writeln!(page, "<span{class}>{number:>5} | {}</span>", esc(text));
                }
                page.push_str("</pre>");
            }
            page.push_str("</div>");
        }
        page.push_str("</details>");
    }
    page.push_str("</section>\n");
}

fn steps_section(page: &mut String, report: &Report) {
    page.push_str("<section><h2>Steps</h2>");
    // Timeline: each step's wall time against its timeout.
    let longest = report.steps.iter().map(|s| s.timeout_seconds.max(s.wall_seconds)).fold(1.0f64, f64::max);
    let (width, row) = (640usize, 26usize);
    let _ = write!(
        page,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" role=\"img\" aria-label=\"step timeline\" font-size=\"12\">",
        row * report.steps.len() + 8
    );
    for (i, step) in report.steps.iter().enumerate() {
        let y = i * row + 4;
        let scale = (width - 140) as f64 / longest;
        let color = if step.outcome == Outcome::Ok { "#54a24b" } else { "#e45756" };
        let _ = write!(
            page,
            "<text x=\"90\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"100\" y=\"{y}\" width=\"{:.0}\" height=\"{}\" fill=\"#eceff3\"><title>timeout {:.0} s</title></rect><rect x=\"100\" y=\"{y}\" width=\"{:.0}\" height=\"{}\" fill=\"{color}\"><title>{:.2} s</title></rect>",
            y + 15,
            esc(&truncate(&step.name, 12)),
            step.timeout_seconds * scale,
            row - 8,
            step.timeout_seconds,
            (step.wall_seconds * scale).max(1.0),
            row - 8,
            step.wall_seconds
        );
    }
    page.push_str("</svg><table><tr><th>step</th><th>outcome</th><th class=\"num\">wall</th><th class=\"num\">CPU</th><th class=\"num\">peak memory</th><th>limits</th></tr>");
    for step in &report.steps {
        let memory = step
            .peak_memory_bytes
            .map(|b| format!("{} ({:.0}%)", format_size(b), 100.0 * b as f64 / step.memory_limit_bytes.max(1) as f64))
            .unwrap_or_else(|| "—".into());
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{} {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{memory}</td><td>{:.0} s, {}, {} CPU</td></tr>",
            esc(&step.name),
            badge(step.outcome.as_str(), step.outcome == Outcome::Ok),
            esc(&step.message),
            seconds(step.wall_seconds),
            step.cpu_seconds.map(seconds).unwrap_or_else(|| "—".into()),
            step.timeout_seconds,
            format_size(step.memory_limit_bytes),
            step.cpus
        );
    }
    page.push_str("</table>");
    for step in &report.steps {
        for (stream, tail, bytes, truncated) in
            [("stdout", &step.stdout_tail, step.stdout_bytes, step.stdout_truncated), ("stderr", &step.stderr_tail, step.stderr_bytes, step.stderr_truncated)]
        {
            if tail.is_empty() {
                continue;
            }
            let note = if truncated { format!(", last {} kept", format_size(tail.len() as u64)) } else { String::new() };
            let _ = write!(page, "<details><summary>{} {stream} ({}{note})</summary><pre>{}</pre></details>", esc(&step.name), format_size(bytes), esc(tail));
        }
    }
    page.push_str("</section>\n");
}

fn provenance_section(page: &mut String, report: &Report) {
    let p = &report.provenance;
    page.push_str("<section><h2>Provenance</h2><table>");
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
    for (key, value) in rows {
        let _ = write!(page, "<tr><th>{key}</th><td><code>{}</code></td></tr>", esc(&value));
    }
    for link in report.submission.skipped_links.iter() {
        let _ = write!(page, "<tr><th>link not copied</th><td><code>{} → {}</code></td></tr>", esc(&link.path), esc(&link.target));
    }
    for rejected in &report.output.rejected {
        let _ = write!(page, "<tr><th>output refused</th><td><code>{}</code>: {}</td></tr>", esc(&rejected.path), esc(&rejected.reason));
    }
    page.push_str("</table></section>\n");
}

fn truncate(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n - 1).collect::<String>())
    }
}
