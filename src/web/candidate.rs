//! The candidate's status page: what to fix, from the graded run (as far as it may be shown) and
//! the public dry run (everything), the deadline, how to push, the brief. Nothing that belongs to
//! assessors: no link to their pages, no score of the hidden run. Plain HTML without script,
//! headings in order, labelled tables, colours with enough contrast.

use std::fmt::Write;

use super::api::{CandidateSubmission, PublicRunView};
use crate::report::candidate::{CandidateOutput, CandidateReport, CandidateStep};
use crate::report::html::esc;
use crate::store::Assignment;
use crate::units::format_size;

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#fff;color:#111}\
header{background:#14213d;color:#fff;padding:14px 24px}header p{margin:4px 0 0}main{max-width:1000px;margin:0 auto;padding:16px 24px}\
table{border-collapse:collapse;width:100%;margin:8px 0}caption{text-align:left;font-weight:600;padding:4px 0}\
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #ccc;vertical-align:top}.num{text-align:right}\
section{margin:22px 0}pre{background:#f2f2f2;padding:8px;overflow:auto;max-height:420px;white-space:pre-wrap;word-break:break-all}\
.bad{color:#8b0000;font-weight:600}.ok{color:#0b5d1e;font-weight:600}a{color:#0645ad}details summary{cursor:pointer}\
a:focus,summary:focus{outline:3px solid #f9a825}";

/// Everything the page shows, gathered by the handler.
pub struct StatusPage<'a> {
    pub assignment: &'a Assignment,
    pub title: &'a str,
    pub brief_html: Option<String>,
    pub clone_url: String,
    pub now: i64,
    pub submissions: &'a [CandidateSubmission],
    pub feedback_html: Option<String>,
}

pub fn render(p: &StatusPage) -> String {
    let a = p.assignment;
    // Refresh only while something is still to come, so a screen reader is not interrupted.
    let pending = p.submissions.iter().any(|s| s.report.is_none() || s.public_run.is_none());
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">{}\
         <title>{} · your submissions</title><style>{STYLE}</style></head><body><header><h1>{}</h1><p>{}</p></header><main>",
        if pending { "<meta http-equiv=\"refresh\" content=\"10\">" } else { "" },
        esc(p.title),
        esc(p.title),
        deadline_text(a, p.now),
    );
    let _ = write!(
        page,
        "<nav aria-label=\"On this page\"><a href=\"#pushes\">Your pushes</a> · <a href=\"#push\">How to push</a> · <a href=\"#brief\">The brief</a></nav>"
    );
    if let Some(feedback) = &p.feedback_html {
        let _ =
            write!(page, "<section id=\"feedback\" aria-labelledby=\"feedback-h\"><h2 id=\"feedback-h\">Feedback from the assessors</h2>{feedback}</section>");
    }
    page.push_str("<section id=\"pushes\" aria-labelledby=\"pushes-h\"><h2 id=\"pushes-h\">Your pushes</h2>");
    if p.submissions.is_empty() {
        page.push_str(
            "<p>No push yet. Each push is run twice: on the public data you have, with everything shown here, and on hidden data, which decides the grade.</p>",
        );
    } else {
        page.push_str("<p>The <strong>public run</strong> runs your steps on the public data you have and shows everything: logs, exit codes, time and memory against the limits, and the format check of your outputs. The <strong>graded run</strong> runs them on hidden data; it decides the grade, and only what cannot reveal the hidden data is shown. The last push before the deadline counts.</p>");
        page.push_str(&pushes_table(p.submissions));
        for s in p.submissions {
            page.push_str(&push_section(s));
        }
    }
    page.push_str("</section>");
    let _ = write!(
        page,
        "<section id=\"push\" aria-labelledby=\"push-h\"><h2 id=\"push-h\">How to push</h2><p>Commit your work and push it to your repository; each push is graded.</p>\
         <pre>git clone {url}\ncd {dir}\ngit add -A\ngit commit -m \"What changed\"\ngit push</pre><p>Git asks for your user name (<code>{id}</code>) and the token you were given.</p></section>",
        url = esc(&p.clone_url),
        dir = esc(&a.id),
        id = esc(&a.id)
    );
    match &p.brief_html {
        Some(brief) => {
            let _ = write!(page, "<section id=\"brief\" aria-labelledby=\"brief-h\"><h2 id=\"brief-h\">The brief</h2>{brief}</section>");
        }
        None => page.push_str("<section id=\"brief\"><h2>The brief</h2><p>It is in your repository (brief.md).</p></section>"),
    }
    page.push_str("</main></body></html>");
    page
}

/// `Deadline: 2026-11-28 07:45 UTC (1h02m left)`, or when the clock starts.
fn deadline_text(a: &Assignment, now: i64) -> String {
    match a.deadline() {
        None => format!("The clock starts at your first clone; then you have {}.", hours(a.time_box_seconds)),
        Some(deadline) if deadline <= now => format!("Deadline: {} — closed. Pushes after it are not graded.", when(deadline)),
        Some(deadline) => format!("Deadline: {} ({} left).", when(deadline), hours(deadline - now)),
    }
}

fn when(seconds: i64) -> String {
    let text = crate::report::rfc3339(seconds);
    format!("{} {} UTC", &text[..10], &text[11..16])
}

fn hours(seconds: i64) -> String {
    format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
}

fn pushes_table(submissions: &[CandidateSubmission]) -> String {
    let mut out = String::from(
        "<table><caption>Every push, newest first</caption><tr><th scope=\"col\">#</th><th scope=\"col\">commit</th><th scope=\"col\">pushed</th>\
         <th scope=\"col\">graded run</th><th scope=\"col\">public run</th></tr>",
    );
    for s in submissions {
        let graded = s.grade_status.clone().unwrap_or_else(|| s.status.clone());
        let public = match &s.public_run {
            None => "not run yet".to_string(),
            Some(PublicRunView { report: Some(r), .. }) => r.status.as_str().to_string(),
            Some(_) => "not run (our side)".to_string(),
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"#push-{n}\">{n}</a></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.commit[..s.commit.len().min(10)]),
            esc(&s.pushed_at),
            status_word(&graded),
            status_word(&public),
            n = s.number
        );
    }
    out.push_str("</table>");
    out
}

fn status_word(status: &str) -> String {
    let class = if matches!(status, "graded" | "ok") {
        "ok"
    } else if matches!(status, "queued" | "running" | "not run yet") {
        ""
    } else {
        "bad"
    };
    format!("<span class=\"{class}\">{}</span>", esc(&status.replace('_', " ")))
}

fn push_section(s: &CandidateSubmission) -> String {
    let mut out = format!(
        "<section id=\"push-{n}\" aria-labelledby=\"push-{n}-h\"><h3 id=\"push-{n}-h\">Push {n} <small>(<code>{}</code>, {})</small></h3>",
        esc(&s.commit[..s.commit.len().min(10)]),
        esc(&s.pushed_at),
        n = s.number
    );
    out.push_str("<h4>Public run</h4>");
    match &s.public_run {
        None => out.push_str("<p>Not run yet: it runs after the graded run.</p>"),
        Some(PublicRunView { not_run: Some(why), .. }) => {
            let _ = write!(out, "<p>{}</p>", esc(why));
        }
        Some(view) => {
            if let Some(report) = &view.report {
                out.push_str(&run_html(report, s.number, "public"));
            }
            if let Some(scores) = &view.public_score {
                out.push_str("<table><caption>Score on the public data (the hidden data decides the grade)</caption><tr><th scope=\"col\">output</th><th scope=\"col\">metric</th><th scope=\"col\" class=\"num\">value</th></tr>");
                for score in scores {
                    let value = score.value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "not scored".into());
                    let _ = write!(out, "<tr><td>{}</td><td>{}</td><td class=\"num\">{value}</td></tr>", esc(&score.file), esc(&score.metric));
                }
                out.push_str("</table>");
            }
        }
    }
    out.push_str("<h4>Graded run (hidden data)</h4>");
    match &s.report {
        None => {
            let _ = write!(out, "<p>{}.</p>", esc(&s.status.replace('_', " ")));
        }
        Some(report) => out.push_str(&run_html(report, s.number, "graded")),
    }
    out.push_str("</section>");
    out
}

/// One run's steps, outputs and lint findings.
fn run_html(report: &CandidateReport, number: i64, which: &str) -> String {
    let mut out = format!(
        "<table><caption>Steps of the {which} run: {}</caption><tr><th scope=\"col\">step</th><th scope=\"col\">outcome</th><th scope=\"col\">exit code</th>\
         <th scope=\"col\">time</th><th scope=\"col\">peak memory</th></tr>",
        status_word(report.status.as_str())
    );
    for step in &report.steps {
        out.push_str(&step_row(step));
    }
    out.push_str("</table>");
    for step in &report.steps {
        match &step.details {
            Some(d) => {
                for (stream, tail, truncated) in [("output", &d.stdout_tail, d.stdout_truncated), ("errors", &d.stderr_tail, d.stderr_truncated)] {
                    if !tail.is_empty() {
                        let cut = if truncated { " (the last part)" } else { "" };
                        let _ = write!(
                            out,
                            "<details{}><summary>{} {stream}{cut}</summary><pre id=\"{which}-{number}-{}-{stream}\">{}</pre></details>",
                            if step.outcome != crate::sandbox::Outcome::Ok && stream == "errors" { " open" } else { "" },
                            esc(&step.name),
                            esc(&step.name),
                            esc(tail)
                        );
                    }
                }
            }
            None => {
                let _ = write!(
                    out,
                    "<p>{}: this step read hidden data, so its logs stay with the assessors; the public run shows the same step's logs.</p>",
                    esc(&step.name)
                );
            }
        }
    }
    out.push_str(&outputs_html(&report.outputs));
    for rejected in &report.rejected {
        let _ = write!(out, "<p class=\"bad\">Refused in /output: <code>{}</code> ({})</p>", esc(&rejected.path), esc(&rejected.reason));
    }
    if !report.lint.findings.is_empty() {
        let _ = write!(out, "<details><summary>{} lint findings (ruff)</summary><ul>", report.lint.findings.len());
        for f in &report.lint.findings {
            let _ = write!(out, "<li><code>{}:{}</code> {} {}</li>", esc(&f.file), f.line, esc(&f.rule), esc(&f.message));
        }
        out.push_str("</ul></details>");
    }
    out
}

fn step_row(step: &CandidateStep) -> String {
    let outcome =
        format!("{}{}", status_word(step.outcome.as_str()), if step.message.is_empty() { String::new() } else { format!(" — {}", esc(&step.message)) });
    match &step.details {
        Some(d) => format!(
            "<tr><td>{}</td><td>{outcome}</td><td>{}</td><td>{:.2} s of {:.0} s</td><td>{}</td></tr>",
            esc(&step.name),
            d.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into()),
            d.wall_seconds,
            d.timeout_seconds,
            match d.peak_memory_bytes {
                Some(peak) => format!("{} of {}", format_size(peak), format_size(d.memory_limit_bytes)),
                None => format!("— of {}", format_size(d.memory_limit_bytes)),
            }
        ),
        None => format!("<tr><td>{}</td><td>{outcome}</td><td>withheld</td><td>withheld</td><td>withheld</td></tr>", esc(&step.name)),
    }
}

fn outputs_html(outputs: &[CandidateOutput]) -> String {
    let mut out = String::from("<table><caption>Outputs: format check</caption><tr><th scope=\"col\">file</th><th scope=\"col\">format</th></tr>");
    for o in outputs {
        let verdict = match &o.problem {
            None => "<span class=\"ok\">as expected</span> (or not reached)".to_string(),
            Some(p) => format!("<span class=\"bad\">{}</span>: {}", esc(&p.kind.as_str().replace('_', " ")), esc(&p.message)),
        };
        let _ = write!(out, "<tr><td><code>/output/{}</code></td><td>{verdict}</td></tr>", esc(&o.file));
    }
    out.push_str("</table>");
    out
}
