//! Cohort similarity, the way MOSS and Dolos measure it: Python source is tokenised by a real
//! parser (tree-sitter's Python grammar), names and literals are normalised away (a renamed
//! variable or a changed constant is the same token), comments dropped, and the token stream is
//! fingerprinted by winnowing its k-grams (Schleimer, Wilkerson and Aiken, 2003): of every window
//! of `W` consecutive k-gram hashes the smallest is kept, so any shared run of at least
//! `K + W - 1` tokens is guaranteed to share a fingerprint, whatever the order of the functions.
//! Fingerprints of what every candidate was given (the starter) are subtracted, and so are those
//! shared by much of the cohort (boilerplate). A pair's similarity is the share of the smaller
//! side's fingerprints that the other side has too. It is a signal for a reader, never a verdict.
//!
//! Pure functions: no I/O. Fingerprints are stable across runs and versions (FNV-1a over token
//! names), so they can be stored and compared incrementally.
//!
//! *Bounded whatever was pushed*: at most [`MAX_FILE_SOURCE`] of a file and [`MAX_SOURCE`] of a
//! submission are tokenised, at most [`MAX_FILE_PRINTS`] fingerprints are kept per file and
//! [`MAX_PRINTS`] per submission; what was left out is counted in [`Fingerprints::cut`], so that
//! the page can say so.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Tokens per k-gram.
pub const K: usize = 12;
/// k-grams per winnowing window.
pub const W: usize = 8;
/// Bump when tokens or hashing change: stored fingerprints of another version are recomputed.
/// (2: sources and fingerprints capped.)
pub const VERSION: u32 = 2;
/// Source tokenised per file (a file is cut at its last line that fits).
pub const MAX_FILE_SOURCE: usize = 256 << 10;
/// Source tokenised per submission, over its files in order.
pub const MAX_SOURCE: usize = 2 << 20;
/// Tokens (as [`head_within`] estimates them) tokenised per file: tree-sitter's time grows with
/// the tokens, not the bytes (512 KiB of `x\n` is 262,144 statements).
pub const MAX_FILE_TOKENS: usize = 40_000;
/// Tokens tokenised per submission.
pub const MAX_TOKENS: usize = 100_000;
/// Fingerprints kept per file.
pub const MAX_FILE_PRINTS: usize = 10_000;
/// Fingerprints kept per submission.
pub const MAX_PRINTS: usize = 20_000;
/// Notebooks are parsed when at most this large (their code cells are then cut as any source).
pub const MAX_NOTEBOOK: usize = 2 << 20;

/// One normalised token and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: &'static str,
    pub file: usize,
    /// 1-based line.
    pub line: u32,
}

/// A kept fingerprint: the k-gram's hash and the lines it spans in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Print {
    pub hash: u64,
    pub file: u32,
    pub first_line: u32,
    pub last_line: u32,
}

/// A submission's (or a known solution's) fingerprints, with its files' names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fingerprints {
    pub version: u32,
    pub files: Vec<String>,
    pub prints: Vec<Print>,
    /// What of the sources was left out.
    #[serde(default)]
    pub cut: Cuts,
}

/// What of a submission's sources its fingerprints leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cuts {
    /// Files tokenised in part (over [`MAX_FILE_SOURCE`], or the rest of [`MAX_SOURCE`]).
    pub files_cut: usize,
    /// Files not tokenised (past [`MAX_SOURCE`], notebooks over [`MAX_NOTEBOOK`], or files past
    /// the reader's own count).
    pub files_left_out: usize,
    /// Fingerprints dropped past [`MAX_FILE_PRINTS`] or [`MAX_PRINTS`].
    pub prints_dropped: usize,
}

impl Cuts {
    pub fn is_empty(&self) -> bool {
        *self == Cuts::default()
    }

    /// For people: `2 files read in part, 12 not read, 41,000 fingerprints dropped`.
    pub fn note(&self) -> String {
        let mut parts = Vec::new();
        if self.files_cut > 0 {
            parts.push(format!("{} file{} read in part", self.files_cut, if self.files_cut == 1 { "" } else { "s" }));
        }
        if self.files_left_out > 0 {
            parts.push(format!("{} not read", self.files_left_out));
        }
        if self.prints_dropped > 0 {
            parts.push(format!("{} fingerprints dropped", self.prints_dropped));
        }
        format!(
            "{} (at most {} KiB and about {MAX_FILE_TOKENS} tokens of a file, {} MiB and {MAX_TOKENS} tokens of a submission, {MAX_FILE_PRINTS} fingerprints of a file and {MAX_PRINTS} of a submission)",
            parts.join(", "),
            MAX_FILE_SOURCE >> 10,
            MAX_SOURCE >> 20
        )
    }
}

impl Fingerprints {
    pub fn hashes(&self) -> HashSet<u64> {
        self.prints.iter().map(|p| p.hash).collect()
    }
}

fn fnv(bytes: &[u8], mut hash: u64) -> u64 {
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf29ce484222325;

/// The normalised tokens of one Python source: identifiers become `id`, strings `str`, numbers
/// `num`, comments vanish, keywords and punctuation stay as they are.
pub fn tokens(source: &str, file: usize, out: &mut Vec<Token>) {
    let mut parser = tree_sitter::Parser::new();
    if parser.set_language(&tree_sitter_python::LANGUAGE.into()).is_err() {
        return;
    }
    let Some(tree) = parser.parse(source, None) else { return };
    let mut cursor = tree.walk();
    loop {
        let node = cursor.node();
        let kind = node.kind();
        let leaf = node.child_count() == 0 || matches!(kind, "string" | "concatenated_string");
        if leaf {
            let normalised: Option<&'static str> = match kind {
                "comment" => None,
                "identifier" => Some("id"),
                "string" | "concatenated_string" => Some("str"),
                "integer" | "float" => Some("num"),
                "true" | "false" | "none" => Some("const"),
                // Docstring-free blank structure and tree-sitter's own markers carry nothing.
                "" | "\n" => None,
                other if node.is_error() || node.is_missing() => Some(if other.is_empty() { "error" } else { other }),
                other => Some(other),
            };
            if let Some(kind) = normalised {
                out.push(Token { kind, file, line: node.start_position().row as u32 + 1 });
            }
            // Do not descend into a string.
            while !cursor.goto_next_sibling() {
                if !cursor.goto_parent() {
                    return;
                }
            }
            continue;
        }
        if cursor.goto_first_child() {
            continue;
        }
        while !cursor.goto_next_sibling() {
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// Winnows the k-grams of `tokens`: the rightmost smallest hash of every window of `W`.
pub fn winnow(tokens: &[Token]) -> Vec<Print> {
    if tokens.len() < K {
        return Vec::new();
    }
    let grams: Vec<(u64, usize)> = (0..=tokens.len() - K)
        .map(|start| {
            let hash = tokens[start..start + K].iter().fold(FNV_OFFSET, |h, t| fnv(t.kind.as_bytes(), fnv(&[0xff], h)));
            (hash, start)
        })
        .collect();
    let mut prints: Vec<Print> = Vec::new();
    let mut last: Option<usize> = None;
    let windows = if grams.len() >= W { grams.len() - W + 1 } else { 1 };
    for w in 0..windows {
        let window = &grams[w..(w + W).min(grams.len())];
        let (mut best, mut at) = (u64::MAX, 0);
        for (i, (hash, _)) in window.iter().enumerate() {
            if *hash <= best {
                best = *hash;
                at = w + i;
            }
        }
        if last != Some(at) {
            last = Some(at);
            let start = grams[at].1;
            let (first, end) = (&tokens[start], &tokens[start + K - 1]);
            prints.push(Print {
                hash: best,
                file: first.file as u32,
                first_line: first.line,
                last_line: if end.file == first.file { end.line } else { first.line },
            });
        }
    }
    prints
}

/// The code cells of a notebook, joined (at most [`MAX_NOTEBOOK`] of JSON is parsed, and no more
/// than [`MAX_FILE_SOURCE`] of each cell kept).
pub fn notebook_code(text: &str) -> Option<String> {
    if text.len() > MAX_NOTEBOOK {
        return None;
    }
    let (cells, _) = crate::review::code::notebook_cells(text, crate::review::code::MAX_CELLS, MAX_FILE_SOURCE)?;
    let mut code = String::new();
    for cell in cells.iter().filter(|c| c.kind == "code") {
        if code.len() >= MAX_FILE_SOURCE {
            break;
        }
        code.push_str(&cell.source);
        code.push('\n');
    }
    Some(code)
}

/// The first part of `source` of at most `max` bytes: cut after its last newline that fits (or
/// at a character boundary when the first line alone is longer).
pub fn head(source: &str, max: usize) -> &str {
    head_within(source, max, usize::MAX).0
}

/// The first part of `source` within `max_bytes` and `max_tokens`, cut after its last newline
/// that fits (or at a character boundary when the first line alone is longer), and its tokens.
/// Tokens are estimated in one pass, never fewer than tree-sitter makes: a run of word
/// characters, each other visible character, each newline.
pub fn head_within(source: &str, max_bytes: usize, max_tokens: usize) -> (&str, usize) {
    let bytes = source.as_bytes();
    let (mut tokens, mut in_word) = (0usize, false);
    let (mut line_end, mut line_tokens) = (0usize, 0usize);
    for (i, &b) in bytes.iter().enumerate() {
        let word = b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        if word {
            tokens += usize::from(!in_word);
        } else if b == b'\n' || !b.is_ascii_whitespace() {
            tokens += 1;
        }
        in_word = word;
        if i >= max_bytes || tokens > max_tokens {
            if line_end > 0 {
                return (&source[..line_end], line_tokens);
            }
            let mut end = i;
            while !source.is_char_boundary(end) {
                end -= 1;
            }
            return (&source[..end], tokens.min(max_tokens));
        }
        if b == b'\n' {
            (line_end, line_tokens) = (i + 1, tokens);
        }
    }
    (source, tokens)
}

/// The fingerprints of a set of files (path, text): `.py` files, and notebooks' code cells;
/// within the bounds of this module (a file's text may come already cut by its reader, one byte
/// past [`MAX_FILE_SOURCE`] so that it counts as cut here).
pub fn fingerprint(files: &[(String, String)]) -> Fingerprints {
    let mut names = Vec::new();
    let mut prints = Vec::new();
    let mut cut = Cuts::default();
    let (mut source_left, mut tokens_left) = (MAX_SOURCE, MAX_TOKENS);
    for (path, text) in files {
        let notebook;
        let source = if path.to_ascii_lowercase().ends_with(".ipynb") {
            match notebook_code(text) {
                Some(code) => {
                    notebook = code;
                    notebook.as_str()
                }
                None => {
                    cut.files_left_out += 1;
                    continue;
                }
            }
        } else {
            text.as_str()
        };
        if source_left == 0 || tokens_left == 0 {
            cut.files_left_out += 1;
            continue;
        }
        let (kept, estimated) = head_within(source, MAX_FILE_SOURCE.min(source_left), MAX_FILE_TOKENS.min(tokens_left));
        if kept.len() < source.len() {
            cut.files_cut += 1;
        }
        source_left -= kept.len().min(source_left);
        tokens_left -= estimated.min(tokens_left);
        let mut toks = Vec::new();
        tokens(kept, names.len(), &mut toks);
        let mut mine = winnow(&toks);
        let room = MAX_FILE_PRINTS.min(MAX_PRINTS - prints.len());
        if mine.len() > room {
            cut.prints_dropped += mine.len() - room;
            mine.truncate(room);
        }
        prints.extend(mine);
        names.push(path.clone());
    }
    Fingerprints { version: VERSION, files: names, prints, cut }
}

/// Whether a path is source this module fingerprints.
pub fn is_source(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".py") || lower.ends_with(".ipynb")
}

/// One side of a matched fragment: a file and its lines.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Span {
    pub file: String,
    pub first_line: u32,
    pub last_line: u32,
}

/// A pair above the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    /// Shared fingerprints over the smaller side's (0–1).
    pub similarity: f64,
    /// Shared over each side's own (0–1).
    pub a_covered: f64,
    pub b_covered: f64,
    pub shared: usize,
    /// Matched fragments, side by side (a's lines, b's lines), merged where adjacent.
    pub fragments: Vec<(Span, Span)>,
}

/// What to compare: each entry's name and fingerprints (after the starter is subtracted).
pub struct Cohort<'a> {
    pub entries: Vec<(String, &'a Fingerprints)>,
    /// Fingerprints everyone was given.
    pub given: HashSet<u64>,
    /// Entries `0..candidates` are candidates' submissions; the rest are known solutions (compared
    /// with candidates only).
    pub candidates: usize,
}

/// Pairs sharing at least `min_shared` fingerprints and `threshold` of the smaller side, most
/// similar first. Fingerprints held by more than `common` of the candidates' submissions are
/// boilerplate and do not count.
pub fn compare(cohort: &Cohort, threshold: f64, min_shared: usize, common: f64) -> Vec<Pair> {
    let sets: Vec<HashSet<u64>> = cohort.entries.iter().map(|(_, f)| f.hashes().difference(&cohort.given).copied().collect()).collect();
    // Inverted index: fingerprint -> entries that have it.
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, set) in sets.iter().enumerate() {
        for &h in set {
            index.entry(h).or_default().push(i);
        }
    }
    let limit = ((cohort.candidates as f64 * common).ceil() as usize).max(4);
    let boiler: HashSet<u64> =
        index.iter().filter(|(_, holders)| holders.iter().filter(|&&i| i < cohort.candidates).count() > limit).map(|(h, _)| *h).collect();
    let mut shared: HashMap<(usize, usize), usize> = HashMap::new();
    for (h, holders) in &index {
        if boiler.contains(h) {
            continue;
        }
        for (x, &i) in holders.iter().enumerate() {
            for &j in &holders[x + 1..] {
                if i >= cohort.candidates && j >= cohort.candidates {
                    continue;
                }
                *shared.entry((i, j)).or_default() += 1;
            }
        }
    }
    let size = |i: usize| sets[i].iter().filter(|h| !boiler.contains(h)).count();
    let mut pairs = Vec::new();
    for ((i, j), n) in shared {
        let (si, sj) = (size(i), size(j));
        let smaller = si.min(sj);
        if n < min_shared || smaller == 0 {
            continue;
        }
        let similarity = n as f64 / smaller as f64;
        if similarity < threshold {
            continue;
        }
        let (fa, fb) = (cohort.entries[i].1, cohort.entries[j].1);
        let common_hashes: HashSet<u64> = sets[i].intersection(&sets[j]).filter(|h| !boiler.contains(h)).copied().collect();
        pairs.push(Pair {
            a: cohort.entries[i].0.clone(),
            b: cohort.entries[j].0.clone(),
            similarity,
            a_covered: n as f64 / si as f64,
            b_covered: n as f64 / sj as f64,
            shared: n,
            fragments: fragments(fa, fb, &common_hashes),
        });
    }
    pairs.sort_by(|x, y| y.similarity.total_cmp(&x.similarity).then(y.shared.cmp(&x.shared)).then(x.a.cmp(&y.a)).then(x.b.cmp(&y.b)));
    pairs
}

/// Matched fragments: for each shared fingerprint in `a`'s order, its lines on both sides,
/// merged while both sides stay adjacent (within 2 lines).
fn fragments(a: &Fingerprints, b: &Fingerprints, common: &HashSet<u64>) -> Vec<(Span, Span)> {
    let mut first_in_b: HashMap<u64, &Print> = HashMap::new();
    for p in &b.prints {
        first_in_b.entry(p.hash).or_insert(p);
    }
    let mut out: Vec<(Span, Span)> = Vec::new();
    for pa in a.prints.iter().filter(|p| common.contains(&p.hash)) {
        let Some(pb) = first_in_b.get(&pa.hash) else { continue };
        let name = |f: &Fingerprints, i: u32| f.files.get(i as usize).cloned().unwrap_or_default();
        let (sa, sb) = (
            Span { file: name(a, pa.file), first_line: pa.first_line, last_line: pa.last_line },
            Span { file: name(b, pb.file), first_line: pb.first_line, last_line: pb.last_line },
        );
        if let Some((la, lb)) = out.last_mut() {
            let near = |x: &Span, y: &Span| x.file == y.file && y.first_line <= x.last_line + 2 && y.last_line + 2 >= x.first_line;
            if near(la, &sa) && near(lb, &sb) {
                la.first_line = la.first_line.min(sa.first_line);
                la.last_line = la.last_line.max(sa.last_line);
                lb.first_line = lb.first_line.min(sb.first_line);
                lb.last_line = lb.last_line.max(sb.last_line);
                continue;
            }
        }
        out.push((sa, sb));
    }
    out.truncate(50);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
import pandas as pd


def load(path):
    """Read the raw file."""
    frame = pd.read_csv(path)
    frame.columns = [c.strip().lower() for c in frame.columns]
    return frame


def fix_units(frame):
    for column in ["mass", "length"]:
        values = frame[column].astype(str).str.replace(",", ".")
        frame[column] = pd.to_numeric(values, errors="coerce")
    frame.loc[frame["mass"] < 100, "mass"] *= 1000
    return frame


def main():
    frame = fix_units(load("/data/input/raw.csv"))
    frame = frame.drop_duplicates(subset="row_id")
    frame.to_csv("/output/clean.csv", index=False)


if __name__ == "__main__":
    main()
"#;

    fn prints(text: &str) -> Fingerprints {
        fingerprint(&[("clean.py".to_string(), text.to_string())])
    }

    fn similarity(a: &str, b: &str) -> f64 {
        let (fa, fb) = (prints(a), prints(b));
        let cohort = Cohort { entries: vec![("a".into(), &fa), ("b".into(), &fb)], given: HashSet::new(), candidates: 2 };
        compare(&cohort, 0.0, 1, 1.0).first().map(|p| p.similarity).unwrap_or(0.0)
    }

    #[test]
    fn renames_literals_and_comments_do_not_hide_a_copy() {
        let renamed = BASE
            .replace("frame", "df")
            .replace("values", "cleaned")
            .replace("fix_units", "normalise")
            .replace("1000", "1e3")
            .replace("\"mass\", \"length\"", "\"body_mass\", \"bill\"")
            .replace("\"\"\"Read the raw file.\"\"\"", "# reads it");
        assert!(similarity(BASE, &renamed) > 0.9, "{}", similarity(BASE, &renamed));
    }

    #[test]
    fn tokens_normalise_names_and_literals() {
        let mut a = Vec::new();
        tokens("x = foo(1, 'a')  # hi\n", 0, &mut a);
        let kinds: Vec<&str> = a.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, vec!["id", "=", "id", "(", "num", ",", "str", ")"]);
    }

    #[test]
    fn what_was_given_does_not_count() {
        let (fa, fb) = (prints(BASE), prints(BASE));
        let cohort = Cohort { entries: vec![("a".into(), &fa), ("b".into(), &fb)], given: fa.hashes(), candidates: 2 };
        assert!(compare(&cohort, 0.0, 1, 1.0).is_empty());
    }

    #[test]
    fn huge_sources_are_cut_and_say_so() {
        let huge = "x\n".repeat(256 << 10);
        let files: Vec<(String, String)> = (0..20).map(|i| (format!("f{i}.py"), huge.clone())).collect();
        let started = std::time::Instant::now();
        let found = fingerprint(&files);
        eprintln!("20 files of 512 KiB fingerprinted in {:?}", started.elapsed());
        assert!(found.prints.len() <= MAX_PRINTS);
        // 40,000 tokens (20,000 lines) of each of the first files, 100,000 in all.
        let read = MAX_TOKENS.div_ceil(MAX_FILE_TOKENS);
        assert_eq!(found.cut.files_cut, read);
        assert_eq!(found.cut.files_left_out, 20 - read);
        assert!(found.cut.prints_dropped > 0);
        assert!(found.cut.note().starts_with(&format!("{read} files read in part, {} not read, ", 20 - read)), "{}", found.cut.note());
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(serde_json::to_string(&found).unwrap().len() < 4 << 20);
        // A small submission is whole.
        assert!(prints(BASE).cut.is_empty());
        // A cut falls after a whole line.
        assert_eq!(head("ab\ncd\nef", 7), "ab\ncd\n");
        assert_eq!(head("abcdef", 3), "abc");
        assert_eq!(head("é", 1), "");
        assert_eq!(head_within("a = b\nc = d\n", 100, 4), ("a = b\n", 4));
        assert_eq!(head_within("x\n".repeat(10).as_str(), 100, 6).0, "x\nx\nx\n");
        // Real code is far from the token bound per byte.
        let (kept, tokens) = head_within(BASE, usize::MAX, usize::MAX);
        assert_eq!(kept, BASE);
        let mut real = Vec::new();
        tokens_of(BASE, &mut real);
        assert!(tokens >= real.len(), "{tokens} estimated, {} made", real.len());
    }

    fn tokens_of(source: &str, out: &mut Vec<Token>) {
        super::tokens(source, 0, out);
    }

    #[test]
    fn notebook_code_is_bounded() {
        let cells: Vec<String> = (0..2000).map(|_| r#"{"cell_type": "code", "source": ["x = 1\n"], "outputs": [{"text": "noise"}]}"#.to_string()).collect();
        let text = format!("{{\"cells\": [{}]}}", cells.join(","));
        let code = notebook_code(&text).unwrap();
        assert_eq!(code.lines().filter(|l| !l.is_empty()).count(), crate::review::code::MAX_CELLS);
        assert!(notebook_code(&" ".repeat(MAX_NOTEBOOK + 1)).is_none());
    }

    #[test]
    fn fingerprints_are_stable() {
        // Stored fingerprints must mean the same thing in the next run and version.
        assert_eq!(prints(BASE).prints, prints(BASE).prints);
        assert!(!prints(BASE).prints.is_empty());
        // FNV-1a 64 of "a", as published.
        assert_eq!(fnv(b"a", FNV_OFFSET), 0xaf63dc4c8601ec8c);
    }
}
