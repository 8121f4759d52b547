//! The report as Markdown (for pull-request comments, e-mail, terminals). Candidate-controlled
//! text is escaped for tables and fenced safely, so it cannot add markup or break the layout.

use std::fmt::Write;

use super::{CandidateReport, Report};
use crate::units::format_size;

/// Escapes text for a Markdown table cell or paragraph: no HTML, no table breaks, no emphasis.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '*' | '_' | '`' | '[' | ']' | '\\' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A fenced block that its content cannot close: the fence is longer than any run of backticks in it.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{}\n{fence}\n", text.trim_end())
}

/// The assessor's Markdown: everything in the report.
pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", esc(&report.task.title));
    if let Some(candidate) = &report.candidate {
        let _ = writeln!(md, "- candidate: {}", esc(candidate));
    }
    let _ = writeln!(md, "- task: {} ({})", esc(&report.task.id), esc(&report.task.kind));
    if let Some(commit) = &report.submission.commit {
        let _ = writeln!(md, "- commit: {}", esc(commit));
    }
    let _ = writeln!(md, "- graded: {}", esc(&report.provenance.graded_at));
    let _ = writeln!(md, "- status: **{}**", report.status.as_str());
    let _ = writeln!(md, "- score: **{:.1} / 100**", report.score);
    md.push('\n');

    let c = &report.components;
    let outputs = c.accuracy.each(&report.output.file);
    let several = outputs.len() > 1;
    for output in &outputs {
        if let Some(problem) = &output.accuracy.problem {
            let named = if several { format!(" {}", output.file) } else { String::new() };
            let _ = writeln!(md, "## Output{}: {}\n\n{}\n", esc(&named), problem.kind.as_str(), esc(&problem.message));
        }
    }
    {
        md.push_str("## Score\n\n| component | input | score | weight |\n|---|---|---:|---:|\n");
        let metric_of = |o: &crate::report::OutputView| match o.accuracy.value {
            Some(value) => format!("{} = {value:.4} (0 at {}, full at {})", o.accuracy.metric, o.zero_at, o.full_at),
            None => format!("{}: not scored", o.accuracy.metric),
        };
        if several {
            let _ = writeln!(md, "| accuracy | weighted mean of {} outputs | {:.1} | {} |", outputs.len(), c.accuracy.score, c.accuracy.weight);
            for output in &outputs {
                let _ = writeln!(md, "| ↳ {} | {} | {:.1} | {} of accuracy |", esc(output.file), esc(&metric_of(output)), output.score, output.weight);
            }
        } else {
            let _ = writeln!(md, "| accuracy | {} | {:.1} | {} |", esc(&metric_of(&outputs[0])), c.accuracy.score, c.accuracy.weight);
        }
        let _ = writeln!(
            md,
            "| code quality | {} findings in {} lines ({:.1} per 100) | {:.1} | {} |",
            c.code_quality.n_findings, c.code_quality.lines_of_code, c.code_quality.findings_per_100_lines, c.code_quality.score, c.code_quality.weight
        );
        let _ = writeln!(
            md,
            "| runtime | {:.2} s (full under {} s) | {:.1} | {} |",
            c.runtime.wall_seconds, c.runtime.full_under_seconds, c.runtime.score, c.runtime.weight
        );
        let _ = writeln!(md, "| **total** | | **{:.1}** | |\n\n{}\n", report.score, esc(&report.formula));
    }
    for output in &outputs {
        let of = if several { format!(" of {}", esc(output.file)) } else { String::new() };
        if let Some(confusion) = &output.accuracy.confusion {
            let _ = write!(md, "### Confusion matrix{of} (rows: true, columns: predicted)\n\n| |");
            for label in &confusion.labels {
                let _ = write!(md, " {} |", esc(label));
            }
            md.push_str("\n|---|");
            md.push_str(&"---:|".repeat(confusion.labels.len()));
            md.push('\n');
            for (label, row) in confusion.labels.iter().zip(&confusion.matrix) {
                let _ = write!(md, "| **{}** |", esc(label));
                for count in row {
                    let _ = write!(md, " {count} |");
                }
                md.push('\n');
            }
            md.push('\n');
        }
        if !output.accuracy.slices.is_empty() {
            let higher = crate::task::Metric::from_name(&output.accuracy.metric).is_none_or(|m| m.higher_is_better());
            let worst = crate::grading::slices::worst_and_spread(&output.accuracy.slices, higher);
            let _ = write!(
                md,
                "### Slices of the hidden rows{of} ({})\n\n| slice | rows | {} |\n|---|---:|---:|\n",
                esc(&output.accuracy.metric),
                esc(&output.accuracy.metric)
            );
            for slice in &output.accuracy.slices {
                let value = match (slice.value, &slice.note) {
                    (Some(value), _) => format!("{value:.4}"),
                    (None, note) => esc(note.as_deref().unwrap_or("no value")),
                };
                let mark = if worst.is_some_and(|(w, _)| std::ptr::eq(w, slice)) { " (worst)" } else { "" };
                let _ = writeln!(md, "| {}{mark} | {} | {value} |", esc(&slice.name), slice.rows);
            }
            if let Some((_, spread)) = worst {
                let _ = writeln!(md, "\nSpread between the best and the worst slice: {spread:.4}.");
            }
            md.push('\n');
        }
        if let Some(cleaning) = &output.accuracy.cleaning {
            let _ = write!(md, "### Cleaning{of}\n\n| column | accuracy | first mismatch (key: expected → got) |\n|---|---:|---|\n");
            for column in &cleaning.columns {
                let first = column.mismatches.first().map(|m| format!("{}: {} → {}", m.key, m.expected, m.got)).unwrap_or_default();
                let _ = writeln!(md, "| {} | {:.1}% | {} |", esc(&column.column), column.accuracy * 100.0, esc(&first));
            }
            let _ = writeln!(
                md,
                "\n{} truth rows; {} matched, {} dropped, {} duplicated, {} invented.\n",
                cleaning.n_truth_rows, cleaning.n_matched_rows, cleaning.n_dropped_rows, cleaning.n_duplicate_rows, cleaning.n_invented_rows
            );
        }
    }
    let _ = writeln!(md, "## Code quality ({} findings)\n", c.code_quality.n_findings);
    for finding in &c.code_quality.findings {
        let _ = writeln!(md, "- {}:{} **{}** {}", esc(&finding.file), finding.line, esc(&finding.rule), esc(&finding.message));
    }
    let _ = writeln!(md, "\n## Methodology ({} findings)\n", report.methodology.len());
    for finding in &report.methodology {
        let _ = writeln!(md, "- {} **{}** {}", esc(&finding.place()), finding.rule.as_str(), esc(&finding.message));
    }
    md.push_str("\n## Steps\n\n| step | outcome | wall | CPU | peak memory | limits |\n|---|---|---:|---:|---:|---|\n");
    for step in &report.steps {
        let _ = writeln!(
            md,
            "| {} | {} {} | {:.2} s | {} | {} | {:.0} s, {} |",
            esc(&step.name),
            step.outcome.as_str(),
            esc(&step.message),
            step.wall_seconds,
            step.cpu_seconds.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "—".into()),
            step.peak_memory_bytes.map(format_size).unwrap_or_else(|| "—".into()),
            step.timeout_seconds,
            format_size(step.memory_limit_bytes)
        );
    }
    for step in &report.steps {
        for (stream, tail) in [("stdout", &step.stdout_tail), ("stderr", &step.stderr_tail)] {
            if !tail.is_empty() {
                let _ = write!(md, "\n<details><summary>{} {stream}</summary>\n\n{}\n</details>\n", esc(&step.name), fenced(tail));
            }
        }
    }
    let p = &report.provenance;
    let _ = writeln!(md, "\n## Provenance\n\n- image: {} ({})\n- takehome: {}", esc(&p.image), esc(&p.image_id), esc(&p.takehome_version));
    let _ = writeln!(md, "- data set: {} (sha256 {})", esc(&p.dataset), esc(&p.dataset_digest));
    if let Some(extended) = &p.extended_image {
        let _ = writeln!(md, "- ran in: {} (the submission imports {})", esc(&extended.image), esc(&extended.modules.join(", ")));
    }
    md
}

/// The candidate's Markdown, from the allow-listed [`CandidateReport`] only.
pub fn render_candidate(report: &CandidateReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", esc(&report.task.title));
    let _ = writeln!(md, "- task: {} ({})", esc(&report.task.id), esc(&report.task.kind));
    if let Some(commit) = &report.submission.commit {
        let _ = writeln!(md, "- commit: {}", esc(commit));
    }
    let _ = writeln!(md, "- graded: {}", esc(&report.graded_at));
    let _ = writeln!(md, "- status: **{}**\n", report.status.as_str());
    for output in &report.outputs {
        if let Some(problem) = &output.problem {
            let _ = writeln!(md, "## Output {}: {}\n\n{}\n", esc(&output.file), problem.kind.as_str(), esc(&problem.message));
        }
    }
    let _ = writeln!(md, "## Code quality ({} findings)\n", report.lint.n_findings);
    for finding in report.lint.findings.iter() {
        let _ = writeln!(md, "- {}:{} **{}** {}", esc(&finding.file), finding.line, esc(&finding.rule), esc(&finding.message));
    }
    md.push_str("\n## Steps\n\n| step | outcome | wall | CPU | peak memory |\n|---|---|---:|---:|---:|\n");
    for step in &report.steps {
        let (wall, cpu, memory) = match &step.details {
            Some(d) => (
                format!("{:.2} s", d.wall_seconds),
                d.cpu_seconds.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "—".into()),
                d.peak_memory_bytes.map(format_size).unwrap_or_else(|| "—".into()),
            ),
            None => match &step.usage {
                Some(u) => (format!("{} of {:.0} s", u.time, u.timeout_seconds), "—".into(), format!("{} of {}", u.memory, format_size(*u.memory_limit_bytes))),
                None => ("—".into(), "—".into(), "—".into()),
            },
        };
        let _ = writeln!(md, "| {} | {} {} | {wall} | {cpu} | {memory} |", esc(&step.name), step.outcome.as_str(), esc(&step.message));
    }
    for step in &report.steps {
        match &step.details {
            Some(d) => {
                for (stream, tail) in [("stdout", &d.stdout_tail), ("stderr", &d.stderr_tail)] {
                    if !tail.is_empty() {
                        let _ = write!(md, "\n<details><summary>{} {stream}</summary>\n\n{}\n</details>\n", esc(&step.name), fenced(tail));
                    }
                }
            }
            None => {
                let _ = writeln!(md, "\n{}: this step reads hidden data, so its logs and measurements are shown to the assessors only.", esc(&step.name));
            }
        }
    }
    let _ = writeln!(md, "\n## Provenance\n\n- image: {}\n- takehome: {}", esc(&report.image), esc(&report.takehome_version));
    md
}
