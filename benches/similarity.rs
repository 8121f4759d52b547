//! Cohort similarity at scale: `cargo bench --bench similarity [-- N]` (default 1000) builds a
//! cohort of N submissions from the planted set's independent cleaners and their near-copies
//! (tests/it/similarity.rs), fingerprints each once (as a push is) and compares the cohort (as
//! the similarity page does), and prints the precision and recall on the planted set.

#[path = "../tests/it/similarity.rs"]
#[allow(dead_code)]
mod similarity;

mod common {
    pub fn repo_root() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }
}

use std::time::Instant;

use takehome::similarity::{compare, fingerprint, Cohort};

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
    let root = common::repo_root();
    let dir = root.join("tests/fixtures/similarity/independent");
    let mut originals: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    originals.push(std::fs::read_to_string(root.join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap());
    originals.sort();
    // N sources: each original under a different mix of the copiers' transforms, with a
    // different dead-code tail per submission so that no two are byte-equal.
    let sources: Vec<String> = (0..n)
        .map(|i| {
            let base = &originals[i % originals.len()];
            let (_, transform) = similarity::TRANSFORMS[(i / originals.len()) % similarity::TRANSFORMS.len()];
            format!("{}\n\ndef helper_{i}(x):\n    return x * {i} + {}\n", transform(base), i % 7)
        })
        .collect();
    let started = Instant::now();
    let prints: Vec<_> = sources.iter().map(|s| fingerprint(&[("clean.py".to_string(), s.clone())])).collect();
    let fingerprinting = started.elapsed();
    let starter = fingerprint(&[("clean.py".into(), std::fs::read_to_string(root.join("tasks/penguins-cleaning/starter/clean.py")).unwrap())]).hashes();
    let entries: Vec<(String, &takehome::similarity::Fingerprints)> = prints.iter().enumerate().map(|(i, p)| (format!("s{i}"), p)).collect();
    let mut times = Vec::new();
    let mut pairs = 0;
    for _ in 0..5 {
        let cohort = Cohort { entries: entries.clone(), given: starter.clone(), candidates: n };
        let started = Instant::now();
        pairs = compare(&cohort, 0.5, 8, 0.5).len();
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "cohort of {n}: fingerprinting {:.3} s ({:.2} ms a submission), comparing all pairs {:.3} s (median of 5; {pairs} pairs listed)",
        fingerprinting.as_secs_f64(),
        fingerprinting.as_secs_f64() * 1000.0 / n as f64,
        times[2]
    );
    let set = similarity::planted();
    let (precision, recall, found, related, unrelated_max, related_min) =
        similarity::precision_recall(&set, &root.join("tasks/penguins-cleaning/starter/clean.py"), 0.5);
    println!(
        "planted set ({} entries): precision {precision:.3}, recall {recall:.3} at 0.5 ({found} found, {related} related); highest unrelated {unrelated_max:.2}, lowest related {related_min:.2}",
        set.len()
    );
}
