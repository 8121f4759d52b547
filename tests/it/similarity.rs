//! Cohort similarity on a planted set: six independent cleaners of the penguins task (five in
//! `tests/fixtures/similarity/independent/`, written apart in different styles, and the task's
//! reference) and, for each,
//! near-copies a candidate might hand in — names renamed, functions reordered, comments and
//! literals changed, dead code added, and all of these at once. Copies must be found; independent
//! solutions must not be paired. Also: the similarity page and API of a real daemon, with the
//! starter subtracted, a known solution, and every candidate-made line escaped.

use std::path::Path;

use takehome::similarity::{compare, fingerprint, Cohort, Fingerprints};

use super::common::repo_root;

/// Words that are Python's or pandas' own: a renamer leaves them alone.
const KEEP: &[&str] = &[
    "import",
    "from",
    "as",
    "def",
    "return",
    "for",
    "in",
    "if",
    "else",
    "elif",
    "not",
    "and",
    "or",
    "is",
    "None",
    "True",
    "False",
    "with",
    "open",
    "class",
    "self",
    "str",
    "int",
    "float",
    "pd",
    "np",
    "re",
    "csv",
    "sys",
    "os",
    "len",
    "range",
    "print",
    "set",
    "list",
    "dict",
    "lambda",
    "try",
    "except",
    "continue",
    "break",
    "while",
    "pass",
    "main",
    "__name__",
    "__main__",
    "staticmethod",
    "dataclass",
    "annotations",
    "__future__",
    "Path",
    "get",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Renames every name the source defines or assigns (whole words, everywhere, as a hurried
/// copier's search-and-replace would).
pub fn rename(text: &str) -> String {
    let mut defined: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let name: String = if let Some(rest) = t.strip_prefix("def ").or_else(|| t.strip_prefix("class ")) {
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        } else if let Some(rest) = t.strip_prefix("for ") {
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        } else {
            let word: String = t.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if t[word.len()..].trim_start().starts_with('=') && !t[word.len()..].trim_start().starts_with("==") {
                word
            } else {
                String::new()
            }
        };
        if !name.is_empty() && name.starts_with(is_ident_start) && !KEEP.contains(&name.as_str()) && !defined.contains(&name) {
            defined.push(name);
        }
    }
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if let Some(i) = defined.iter().position(|d| d == word) {
            out.push_str(&format!("v{i}_{}", word.chars().rev().collect::<String>().to_ascii_lowercase()));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Top-level blocks in reverse order (the imports stay first, the `__main__` guard last).
pub fn reorder(text: &str) -> String {
    let mut blocks: Vec<String> = vec![String::new()];
    for line in text.lines() {
        let starts = line.starts_with("def ") || line.starts_with("class ") || line.starts_with('@') || line.starts_with("if __name__");
        if starts && !blocks.last().unwrap().trim_end().ends_with('@') && !blocks.last().unwrap().lines().last().unwrap_or("").starts_with('@') {
            blocks.push(String::new());
        }
        let last = blocks.last_mut().unwrap();
        last.push_str(line);
        last.push('\n');
    }
    let head = blocks.remove(0);
    let guard = blocks.iter().position(|b| b.starts_with("if __name__")).map(|i| blocks.remove(i));
    blocks.reverse();
    let mut out = head;
    for b in blocks {
        out.push_str("\n\n");
        out.push_str(b.trim_end());
        out.push('\n');
    }
    if let Some(guard) = guard {
        out.push_str("\n\n");
        out.push_str(&guard);
    }
    out
}

/// Comments reworded and numbers changed.
pub fn relabel(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find(" # ").or_else(|| line.trim_start().starts_with('#').then(|| line.find('#').unwrap())) {
            Some(at) => format!("{}# see notes", &line[..at]),
            None => line.to_string(),
        };
        let mut changed = String::new();
        let mut digits = String::new();
        for c in line.chars().chain(std::iter::once('\n')) {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            if !digits.is_empty() {
                changed.push_str(&(digits.parse::<u64>().unwrap_or(0) * 3 + 7).to_string());
                digits.clear();
            }
            if c != '\n' {
                changed.push(c);
            }
        }
        out.push_str(&changed);
        out.push('\n');
    }
    out
}

/// Dead code added before and after the copied code (each copier pads with code of their own).
pub fn pad(text: &str) -> String {
    const DEAD: [&str; 4] = [
        "def _unused_summary(rows):\n    total = 0\n    for row in rows:\n        total += len(str(row))\n    return total / max(len(rows), 1)\n",
        "class _Cache:\n    def __init__(self):\n        self.items = {}\n\n    def put(self, key, value):\n        self.items[key] = value\n        return value\n",
        "def _retry(action, attempts=3):\n    last = None\n    while attempts > 0:\n        try:\n            return action()\n        except OSError as error:\n            last = error\n            attempts -= 1\n    raise last\n",
        "def _histogram(values, bins=10):\n    low, high = min(values), max(values)\n    width = (high - low) / bins or 1\n    counts = [0] * bins\n    for v in values:\n        counts[min(int((v - low) / width), bins - 1)] += 1\n    return counts\n",
    ];
    let pick = text.len() % DEAD.len();
    let (first, second) = (DEAD[pick], DEAD[(pick + 1) % DEAD.len()]);
    let split = text.find("\ndef ").or_else(|| text.find("\nclass ")).unwrap_or(text.len());
    format!("{}\n\n{first}\n\n{}\n\n{second}", &text[..split], &text[split..])
}

/// A copier's transform of a source.
pub type Transform = fn(&str) -> String;

pub const TRANSFORMS: &[(&str, Transform)] =
    &[("renamed", rename), ("reordered", reorder), ("relabelled", relabel), ("padded", pad), ("all four", |t| pad(&relabel(&reorder(&rename(t)))))];

/// The planted set: (name, original it derives from, fingerprints).
pub fn planted() -> Vec<(String, String, Fingerprints)> {
    let dir = repo_root().join("tests/fixtures/similarity/independent");
    let mut originals: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    // The task's own reference solution is the sixth.
    originals.push(("reference".into(), std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap()));
    originals.sort();
    let mut set = Vec::new();
    for (name, text) in &originals {
        set.push((name.clone(), name.clone(), fingerprint(&[("clean.py".into(), text.clone())])));
        for (how, transform) in TRANSFORMS {
            set.push((format!("{name} ({how})"), name.clone(), fingerprint(&[("clean.py".into(), transform(text))])));
        }
    }
    set
}

/// (precision, recall, pairs found, related pairs, the highest similarity of an unrelated pair,
/// the lowest of a related pair) of `compare` on the planted set at `threshold`.
pub fn precision_recall(set: &[(String, String, Fingerprints)], given: &Path, threshold: f64) -> (f64, f64, usize, usize, f64, f64) {
    let starter = fingerprint(&[("clean.py".into(), std::fs::read_to_string(given).unwrap())]).hashes();
    let cohort = Cohort { entries: set.iter().map(|(n, _, f)| (n.clone(), f)).collect(), given: starter, candidates: set.len() };
    let found = compare(&cohort, threshold, 8, 0.5);
    let origin = |name: &str| set.iter().find(|(n, ..)| n == name).map(|(_, o, _)| o.clone()).unwrap();
    let all = compare(&cohort, 0.0, 1, 0.5);
    let unrelated_max = all.iter().filter(|p| origin(&p.a) != origin(&p.b)).map(|p| p.similarity).fold(0.0, f64::max);
    let related_min = all.iter().filter(|p| origin(&p.a) == origin(&p.b)).map(|p| p.similarity).fold(1.0, f64::min);
    let true_found = found.iter().filter(|p| origin(&p.a) == origin(&p.b)).count();
    let mut related = 0;
    for i in 0..set.len() {
        for j in i + 1..set.len() {
            related += usize::from(set[i].1 == set[j].1);
        }
    }
    let precision = if found.is_empty() { 1.0 } else { true_found as f64 / found.len() as f64 };
    (precision, true_found as f64 / related as f64, found.len(), related, unrelated_max, related_min)
}

#[test]
fn planted_copies_are_found_and_independent_solutions_are_not() {
    let set = planted();
    let starter = repo_root().join("tasks/penguins-cleaning/starter/clean.py");
    let (precision, recall, found, related, unrelated_max, related_min) = precision_recall(&set, &starter, takehome::web::signals::DEFAULT_THRESHOLD);
    eprintln!(
        "similarity on the planted set ({} entries): precision {precision:.3}, recall {recall:.3} ({found} pairs found, {related} related pairs); \
         highest unrelated pair {unrelated_max:.2}, lowest related pair {related_min:.2}",
        set.len()
    );
    assert!(recall >= 0.95, "recall {recall:.3}: copies missed");
    assert!(precision >= 0.95, "precision {precision:.3}: independent solutions paired");
    // No two independent originals are paired at any listed threshold.
    let originals: Vec<(String, String, Fingerprints)> = set.iter().filter(|(n, o, _)| n == o).cloned().collect();
    let cohort = Cohort { entries: originals.iter().map(|(n, _, f)| (n.clone(), f)).collect(), given: Default::default(), candidates: originals.len() };
    let pairs = compare(&cohort, 0.3, 8, 0.5);
    assert!(pairs.is_empty(), "independent solutions paired: {:?}", pairs.iter().map(|p| (&p.a, &p.b, p.similarity)).collect::<Vec<_>>());
}

#[test]
#[ignore]
fn explain_planted() {
    let set = planted();
    let starter = fingerprint(&[("clean.py".into(), std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/starter/clean.py")).unwrap())]).hashes();
    let cohort = Cohort { entries: set.iter().map(|(n, _, f)| (n.clone(), f)).collect(), given: starter, candidates: set.len() };
    let all = compare(&cohort, 0.0, 1, 0.5);
    let origin = |name: &str| set.iter().find(|(n, ..)| n == name).map(|(_, o, _)| o.clone()).unwrap();
    for p in &all {
        let related = origin(&p.a) == origin(&p.b);
        if (related && (p.similarity < 0.5 || p.shared < 8)) || (!related && p.similarity >= 0.3) {
            eprintln!("{} {:.2} shared {} : {} | {}", if related { "MISS" } else { "FALSE" }, p.similarity, p.shared, p.a, p.b);
        }
    }
    let found: std::collections::HashSet<(String, String)> = all.iter().map(|p| (p.a.clone(), p.b.clone())).collect();
    for i in 0..set.len() {
        for j in i + 1..set.len() {
            if set[i].1 == set[j].1 && !found.contains(&(set[i].0.clone(), set[j].0.clone())) && !found.contains(&(set[j].0.clone(), set[i].0.clone())) {
                eprintln!("ABSENT {} | {}", set[i].0, set[j].0);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_similarity_page_finds_a_copied_push_and_a_copied_known_solution() {
    // In process (`TestApp`: the router, a real store, real repositories and commits; nothing is
    // graded: similarity reads the pushed commits).
    let root = repo_root();
    let app = super::test_app::TestApp::new(&root).await;
    let task = takehome::task::load(&root.join("tasks/penguins-cleaning")).unwrap();
    let reference = std::fs::read_to_string(root.join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let known = std::fs::read_to_string(root.join("tasks/penguins-cleaning/known/public-notebook.py")).unwrap();
    let independent = std::fs::read_to_string(root.join("tests/fixtures/similarity/independent/cleaner_class.py")).unwrap();
    let submissions = [
        ("first@example.com", reference.clone()),
        ("copier@example.com", {
            // Hostile text inside the copied lines, so that the fragment shows it.
            let copy = pad(&relabel(&rename(&reference)));
            let at = copy.find("drop_duplicates").map(|i| copy[..i].rfind('\n').unwrap() + 1).unwrap();
            format!("{}    # </pre><script>alert('copied')</script>\n{}", &copy[..at], &copy[at..])
        }),
        ("honest@example.com", independent),
        ("notebook@example.com", rename(&known)),
    ];
    let mut ids = Vec::new();
    for (n, (candidate, source)) in submissions.iter().enumerate() {
        let id = format!("a{n}similar");
        app.push(&id, &task, candidate, &[("clean.py", source.as_bytes())], "solution").await;
        ids.push(id);
    }
    let cookie = app.assessor_cookie("ada").await;
    let api = |path: &'static str| {
        let cookie = cookie.clone();
        let app = &app;
        async move {
            let (status, text) = app.get(path, &[(axum::http::header::COOKIE, cookie)]).await;
            assert_eq!(status, axum::http::StatusCode::OK, "{path}: {text}");
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        }
    };
    let alias = |i: usize| takehome::review::alias(&ids[i]);
    let report = api("/api/tasks/penguins-cleaning/similarity").await;
    let pairs = report["pairs"].as_array().unwrap();
    let names = |p: &serde_json::Value| (p["a"].as_str().unwrap().to_string(), p["b"].as_str().unwrap().to_string());
    let has = |x: &str, y: &str| {
        pairs.iter().any(|p| {
            let (a, b) = names(p);
            (a.starts_with(x) && b.starts_with(y)) || (a.starts_with(y) && b.starts_with(x))
        })
    };
    assert!(has(&alias(0), &alias(1)), "the renamed, relabelled, padded copy was not found: {report:#}");
    assert!(has(&alias(3), "known: public-notebook.py"), "the copied public notebook was not found: {report:#}");
    assert!(pairs.iter().all(|p| !names(p).0.starts_with(&alias(2)) && !names(p).1.starts_with(&alias(2))), "the independent solution was paired: {report:#}");
    let copy = pairs.iter().find(|p| names(p).0.starts_with(&alias(0)) || names(p).1.starts_with(&alias(0))).unwrap();
    assert!(copy["similarity"].as_f64().unwrap() > 0.8 && !copy["fragments"].as_array().unwrap().is_empty(), "{copy:#}");
    assert!(!report.to_string().contains("@example.com"), "blind review: no name in the similarity answer");

    // Each push is fingerprinted once: the second look reads the stored fingerprints.
    let cache = app.app.config.data_dir.join("similarity");
    let stamps = |dir: &Path| -> Vec<(String, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = stamps(&cache);
    assert_eq!(before.len(), 4, "{before:?}");
    let again = api("/api/tasks/penguins-cleaning/similarity").await;
    assert_eq!(again["pairs"].as_array().unwrap().len(), pairs.len());
    assert_eq!(stamps(&cache), before, "fingerprints were computed again");

    // The page shows the fragments side by side, escaped.
    let html = app.page(&cookie, "/tasks/penguins-cleaning/similarity").await;
    let _ = std::fs::create_dir_all(root.join("target/test-artifacts"));
    std::fs::write(root.join("target/test-artifacts/similarity.html"), &html).ok();
    assert!(html.contains("A signal to read, never a verdict") && html.contains("Matched fragments") && html.contains(&alias(1)));
    assert!(!html.contains("<script>alert") && !html.contains("@example.com"), "unescaped or named: {html}");
    assert!(html.contains("&lt;script&gt;alert"), "the copied lines are not shown");
}

/// A push is compared on arrival and the comparison kept: views read it (here they could not
/// compute it: the pushes' repositories and fingerprints are gone), until a new push arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_is_compared_on_arrival_and_views_read_the_kept_comparison() {
    let root = repo_root();
    let app = super::test_app::TestApp::new(&root).await;
    let task = takehome::task::load(&root.join("tasks/penguins-cleaning")).unwrap();
    let reference = std::fs::read_to_string(root.join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let cookie = app.assessor_cookie("ada").await;
    let view = || async {
        let (status, text) = app.get("/api/tasks/penguins-cleaning/similarity", &[(axum::http::header::COOKIE, cookie.clone())]).await;
        assert_eq!(status, axum::http::StatusCode::OK, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    for (id, candidate) in [("a0memo0first", "first@example.com"), ("a0memo0copy", "copy@example.com")] {
        let (submission, _) = app.push(id, &task, candidate, &[("clean.py", reference.as_bytes())], "solution").await;
        let commit = app.app.store.submission(submission).await.unwrap().unwrap().0.commit;
        takehome::web::signals::fingerprint_on_arrival(&app.app, submission, id, &"penguins-cleaning".parse().unwrap(), &commit);
    }
    // The arrivals are handled one at a time in the background: wait for the second's comparison.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.app.similarity.lock().unwrap().get(&"penguins-cleaning".parse::<takehome::task::TaskId>().unwrap()).is_none_or(|m| m.submissions() != (2, 2)) {
        assert!(std::time::Instant::now() < deadline, "no comparison was kept on arrival");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let first = view().await;
    assert_eq!(first["pairs"].as_array().unwrap().len(), 1, "{first:#}");
    // Nothing left to compute from: a view that compared again would find no pair.
    for id in ["a0memo0first", "a0memo0copy"] {
        std::fs::remove_dir_all(app.app.repos.path(id)).unwrap();
    }
    std::fs::remove_dir_all(app.app.config.data_dir.join("similarity")).unwrap();
    let kept = view().await;
    assert_eq!(kept["pairs"], first["pairs"], "the kept comparison answers");
    assert_eq!(view().await["pairs"].as_array().unwrap().len(), 1);
    // A new push changes the task's submissions: the next view compares again (and can only
    // fingerprint the new push now).
    app.push("a0memo0third", &task, "third@example.com", &[("clean.py", reference.as_bytes())], "solution").await;
    let again = view().await;
    assert_eq!((again["submissions"].as_u64(), again["pairs"].as_array().unwrap().len()), (Some(1), 0), "{again:#}");
}
