//! Slices: which hidden rows each of an output's `slices:` rules takes, read from the hidden files
//! the rules name, and the metric on each slice's rows.
//!
//! A rule reads the id (or key) column and its own columns of one hidden file (the truth unless
//! it says `from:`), streaming, and puts each row's id into the slices its values fall in. The
//! graders then mark each truth row with the slices it belongs to (a bit each: at most
//! [`MAX_SLICES`]) and keep a tally per slice beside the whole one, so that each slice's metric
//! is the task's metric on that slice's rows alone, exactly as scikit-learn would give it on
//! those rows. Slices are hidden data: they reach the assessors' report only.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::records::{self, parse_number, trim, Field, Sink, Stop, Want};
use crate::task::{GradingSpec, SliceRule, SliceSpec, MAX_SLICES, MAX_SLICE_VALUES};

/// Distinct values an `each` rule may meet before it gives up on the column.
const MAX_DISTINCT: usize = 10_000;

/// One slice's rows, by id as the data spells it (spaces around it trimmed).
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub name: String,
    pub ids: Ids,
}

/// A slice's ids: integers kept as integers (8 bytes each, so that a rule over ten million rows
/// holds 80 MB, not half a gigabyte of strings), any other id as its text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ids {
    pub ints: Vec<i64>,
    pub texts: Vec<String>,
}

/// An id as a slice holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Key<'a> {
    Int(i64),
    Text(&'a str),
}

impl Ids {
    pub fn push(&mut self, id: &str) {
        match records::parse_integer(id) {
            Some(int) => self.ints.push(int),
            None => self.texts.push(id.to_string()),
        }
    }

    pub fn len(&self) -> usize {
        self.ints.len() + self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append(&mut self, mut other: Ids) {
        self.ints.append(&mut other.ints);
        self.texts.append(&mut other.texts);
    }

    pub fn keys(&self) -> impl Iterator<Item = Key<'_>> {
        self.ints.iter().map(|&i| Key::Int(i)).chain(self.texts.iter().map(|t| Key::Text(t)))
    }

    /// Every id as text (integers as the grader reads them: `007` is `7`).
    pub fn texts(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        self.ints.iter().map(|i| std::borrow::Cow::Owned(i.to_string())).chain(self.texts.iter().map(|t| std::borrow::Cow::Borrowed(t.as_str())))
    }
}

/// The metric on one slice of the hidden rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceScore {
    pub name: String,
    /// The slice's rows that the truth holds.
    pub rows: usize,
    /// The metric on those rows; `None` where it is undefined (no rows, one class for ROC AUC).
    pub value: Option<f64>,
    /// Why there is no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The slices of an output's rules, in the rules' order. An `Err` says which rule and file could
/// not be read: the task's data is at fault, never the candidate's.
pub fn members(spec: &GradingSpec, dataset_dir: &Path) -> Result<Vec<Slice>, String> {
    let id = spec.id.as_deref().unwrap_or("id");
    let mut out: Vec<Slice> = Vec::new();
    for (index, slice) in spec.slices.iter().enumerate() {
        let mut made = of_rule(slice, spec, dataset_dir, id).map_err(|message| format!("slices[{index}]: {message}"))?;
        if matches!(slice.rule, SliceRule::Each { .. }) && made.len() > MAX_SLICE_VALUES {
            // The most common values, then in their own order (the task check refuses more).
            made.sort_by(|a, b| b.ids.len().cmp(&a.ids.len()).then_with(|| natural(&a.name, &b.name)));
            made.truncate(MAX_SLICE_VALUES);
            made.sort_by(|a, b| natural(&a.name, &b.name));
        }
        for mut made in made {
            // Names are unique (an `each` value may repeat a name the author wrote).
            let base = made.name.clone();
            let mut n = 2;
            while out.iter().any(|s| s.name == made.name) {
                made.name = format!("{base} ({n})");
                n += 1;
            }
            out.push(made);
        }
    }
    out.truncate(MAX_SLICES);
    Ok(out)
}

/// The slices one rule makes (`each`: one per value, however many).
pub fn of_rule(slice: &SliceSpec, spec: &GradingSpec, dataset_dir: &Path, id: &str) -> Result<Vec<Slice>, String> {
    if let SliceRule::Ids(ids) = &slice.rule {
        let mut listed = Ids::default();
        ids.iter().for_each(|id| listed.push(id));
        return Ok(vec![Slice { name: slice.name_of(0), ids: listed }]);
    }
    let from = slice.from.as_deref().unwrap_or(&spec.truth);
    let path = dataset_dir.join(from);
    let columns = slice.rule.columns();
    let names = records::header(&path).map_err(|message| format!("{from}: {message}"))?;
    for column in std::iter::once(id).chain(columns.iter().copied()) {
        if !names.iter().any(|n| n == column) {
            return Err(format!("{from} has no column {column:?} (its columns: {})", names.join(", ")));
        }
    }
    let mut wanted: Vec<(&str, Want)> = vec![(id, Want::Id)];
    wanted.extend(columns.iter().map(|c| (*c, Want::Label)));
    let parts = records::read(&path, &wanted, u64::MAX, || RuleSink::new(&slice.rule, &spec.missing)).map_err(|message| format!("{from}: {message}"))?;
    let mut buckets: HashMap<String, Ids> = HashMap::new();
    for (sink, _) in parts {
        for (key, ids) in sink.into_buckets() {
            buckets.entry(key).or_default().append(ids);
        }
    }
    if buckets.len() > MAX_DISTINCT {
        return Err(format!("{from}: more than {MAX_DISTINCT} values in {:?}", columns[0]));
    }
    Ok(match &slice.rule {
        SliceRule::Each { .. } => {
            let mut values: Vec<(String, Ids)> = buckets.into_iter().collect();
            values.sort_by(|a, b| natural(&a.0, &b.0));
            let label = slice.name.clone().unwrap_or_else(|| slice.name_of(0));
            values.into_iter().map(|(value, ids)| Slice { name: format!("{label} = {value}"), ids }).collect()
        }
        SliceRule::Bins { edges, .. } => {
            (0..=edges.len()).map(|bin| Slice { name: slice.name_of(bin), ids: buckets.remove(&bin.to_string()).unwrap_or_default() }).collect()
        }
        _ => vec![Slice { name: slice.name_of(0), ids: buckets.remove("").unwrap_or_default() }],
    })
}

/// Numbers in number order, then text: `2 < 10`, `Biscoe < Dream`.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    match (parse_number(a), parse_number(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Sorts one part's rows into the rule's buckets: a value for `each`, a bin's index for `bins`,
/// `""` for a rule's one slice. No row allocates but a new value's first and a text id.
struct RuleSink<'r> {
    rule: &'r SliceRule,
    missing: &'r [String],
    buckets: HashMap<String, Ids>,
    /// `bins`: by bin; other rules: `[0]` is their one slice.
    indexed: Vec<Ids>,
}

impl<'r> RuleSink<'r> {
    fn new(rule: &'r SliceRule, missing: &'r [String]) -> RuleSink<'r> {
        let n = match rule {
            SliceRule::Bins { edges, .. } => edges.len() + 1,
            _ => 1,
        };
        RuleSink { rule, missing, buckets: HashMap::new(), indexed: (0..n).map(|_| Ids::default()).collect() }
    }

    /// The buckets by key (`each`'s values, bins' indexes as text, `""`).
    fn into_buckets(self) -> HashMap<String, Ids> {
        let mut buckets = self.buckets;
        match self.rule {
            SliceRule::Each { .. } => {}
            SliceRule::Bins { .. } => buckets.extend(self.indexed.into_iter().enumerate().map(|(bin, ids)| (bin.to_string(), ids))),
            _ => buckets.extend(self.indexed.into_iter().next().map(|ids| (String::new(), ids))),
        }
        buckets
    }
}

/// A field's text, spaces around it trimmed (numbers written out).
fn text_of<'a>(field: &Field<'a>) -> Option<std::borrow::Cow<'a, str>> {
    match *field {
        Field::Null => None,
        Field::Text(text) => Some(std::borrow::Cow::Borrowed(trim(text))),
        Field::Int(i) => Some(std::borrow::Cow::Owned(i.to_string())),
        Field::Float(x) => Some(std::borrow::Cow::Owned(x.to_string())),
    }
}

fn number_of(field: &Field<'_>) -> Option<f64> {
    match *field {
        Field::Null => None,
        Field::Text(text) => parse_number(trim(text)),
        Field::Int(i) => Some(i as f64),
        Field::Float(x) => Some(x),
    }
    .filter(|x| x.is_finite())
}

impl RuleSink<'_> {
    fn is_missing(&self, field: &Field<'_>) -> bool {
        match *field {
            Field::Null => true,
            Field::Text(text) => trim(text).is_empty() || self.missing.iter().any(|m| m == text),
            Field::Float(x) => x.is_nan(),
            Field::Int(_) => false,
        }
    }

    /// Whether a row with these values (after its id) is in the rule's one slice (not `each` or
    /// `bins`).
    fn takes(&self, values: &[Field<'_>]) -> bool {
        match self.rule {
            SliceRule::Range { min, max, .. } => number_of(&values[0]).is_some_and(|x| min.is_none_or(|min| min <= x) && max.is_none_or(|max| x < max)),
            SliceRule::Values { values: wanted, .. } => text_of(&values[0]).is_some_and(|text| wanted.iter().any(|w| *w == text)),
            SliceRule::Contains { texts, .. } => text_of(&values[0]).is_some_and(|text| {
                let text = text.to_lowercase();
                texts.iter().any(|t| text.contains(t.as_str()))
            }),
            SliceRule::Missing { .. } => values.iter().any(|field| self.is_missing(field)),
            SliceRule::Each { .. } | SliceRule::Bins { .. } | SliceRule::Ids(_) => false,
        }
    }
}

/// Adds a row's id to a slice's ids.
fn add_id(ids: &mut Ids, id: &Field<'_>) {
    match *id {
        Field::Int(int) => ids.ints.push(int),
        Field::Text(text) => {
            let text = trim(text);
            if !text.is_empty() {
                ids.push(text);
            }
        }
        Field::Float(x) => ids.push(&x.to_string()),
        Field::Null => {}
    }
}

impl Sink for RuleSink<'_> {
    fn record(&mut self, _row: u64, fields: &[Field<'_>]) -> Result<(), Stop> {
        let values = &fields[1..];
        match self.rule {
            SliceRule::Each { .. } => {
                let Some(value) = text_of(&values[0]).filter(|t| !t.is_empty()) else { return Ok(()) };
                if !self.buckets.contains_key(value.as_ref()) {
                    if self.buckets.len() >= MAX_DISTINCT {
                        return Err(Stop(format!("more than {MAX_DISTINCT} distinct values")));
                    }
                    self.buckets.insert(value.to_string(), Ids::default());
                }
                if let Some(ids) = self.buckets.get_mut(value.as_ref()) {
                    add_id(ids, &fields[0]);
                }
            }
            SliceRule::Bins { edges, .. } => {
                if let Some(x) = number_of(&values[0]) {
                    add_id(&mut self.indexed[edges.partition_point(|&edge| edge <= x)], &fields[0]);
                }
            }
            _ => {
                if self.takes(values) {
                    add_id(&mut self.indexed[0], &fields[0]);
                }
            }
        }
        Ok(())
    }
}

/// Which slices each truth row belongs to: a bit per slice.
pub struct Masks {
    pub names: Vec<String>,
    /// By truth row: as narrow as the slices allow, since the output's records read them at
    /// random (a byte a row for up to 8 slices is 10 MB at ten million rows, not 80).
    rows: Bits,
}

enum Bits {
    None,
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

impl Masks {
    /// Marks the truth rows of each slice; `row_of` finds a truth row by id (`None`: the truth
    /// has no such row, and the slice does not count it).
    pub fn new(slices: &[Slice], n_rows: usize, row_of: impl Fn(Key<'_>) -> Option<usize>) -> Masks {
        let slices = &slices[..slices.len().min(MAX_SLICES)];
        fn mark<T: Copy + Default + std::ops::BitOrAssign + From<u8> + std::ops::Shl<usize, Output = T>>(
            slices: &[Slice],
            n_rows: usize,
            row_of: &impl Fn(Key<'_>) -> Option<usize>,
        ) -> Vec<T> {
            let mut rows = vec![T::default(); n_rows];
            for (bit, slice) in slices.iter().enumerate() {
                for id in slice.ids.keys() {
                    if let Some(row) = row_of(id) {
                        rows[row] |= T::from(1u8) << bit;
                    }
                }
            }
            rows
        }
        let rows = match slices.len() {
            0 => Bits::None,
            1..=8 => Bits::U8(mark(slices, n_rows, &row_of)),
            9..=16 => Bits::U16(mark(slices, n_rows, &row_of)),
            17..=32 => Bits::U32(mark(slices, n_rows, &row_of)),
            _ => Bits::U64(mark(slices, n_rows, &row_of)),
        };
        Masks { names: slices.iter().map(|s| s.name.clone()).collect(), rows }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Each slice's rows.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.names.len()];
        let n = match &self.rows {
            Bits::None => 0,
            Bits::U8(v) => v.len(),
            Bits::U16(v) => v.len(),
            Bits::U32(v) => v.len(),
            Bits::U64(v) => v.len(),
        };
        for row in 0..n {
            for_each_bit(self.of(row), |bit| counts[bit] += 1);
        }
        counts
    }

    /// The slices row `row` is in, a bit each.
    #[inline]
    pub fn of(&self, row: usize) -> u64 {
        match &self.rows {
            Bits::None => 0,
            Bits::U8(v) => v.get(row).map_or(0, |&m| u64::from(m)),
            Bits::U16(v) => v.get(row).map_or(0, |&m| u64::from(m)),
            Bits::U32(v) => v.get(row).map_or(0, |&m| u64::from(m)),
            Bits::U64(v) => v.get(row).copied().unwrap_or(0),
        }
    }

    /// Asks the processor to bring row `row`'s bits into the cache (see `predictions`: the
    /// output's records meet their rows in random order).
    #[inline]
    pub fn prefetch(&self, row: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let address = match &self.rows {
                Bits::None => return,
                Bits::U8(v) => v.as_ptr().wrapping_add(row).cast::<i8>(),
                Bits::U16(v) => v.as_ptr().wrapping_add(row).cast::<i8>(),
                Bits::U32(v) => v.as_ptr().wrapping_add(row).cast::<i8>(),
                Bits::U64(v) => v.as_ptr().wrapping_add(row).cast::<i8>(),
            };
            // SAFETY: a prefetch is a hint; it never faults, whatever the address.
            unsafe { _mm_prefetch(address, _MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = row;
    }
}

/// Calls `f` with the index of each set bit of `mask`.
#[inline]
pub fn for_each_bit(mut mask: u64, mut f: impl FnMut(usize)) {
    while mask != 0 {
        f(mask.trailing_zeros() as usize);
        mask &= mask - 1;
    }
}

/// The slice whose value is worst by the metric's direction, and the spread (best − worst, in the
/// metric's units) over the slices that have a value.
pub fn worst_and_spread(slices: &[SliceScore], higher_is_better: bool) -> Option<(&SliceScore, f64)> {
    let valued: Vec<(&SliceScore, f64)> = slices.iter().filter_map(|s| s.value.map(|v| (s, v))).collect();
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    let worst = valued.iter().copied().reduce(|w, s| if better(w.1, s.1) { s } else { w })?;
    let best = valued.iter().copied().reduce(|b, s| if better(s.1, b.1) { s } else { b })?;
    Some((worst.0, (best.1 - worst.1).abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Metric;

    fn spec(slices: Vec<SliceSpec>) -> GradingSpec {
        GradingSpec {
            output: "predictions.csv".into(),
            truth: "hidden/labels.csv".into(),
            id: Some("id".into()),
            target: Some("y".into()),
            positive: None,
            classes: None,
            columns: Vec::new(),
            metric: Metric::Accuracy,
            scale: crate::task::Scale { zero_at: 0.0, full_at: 1.0 },
            weight: 1.0,
            tolerance: 1e-6,
            missing: GradingSpec::default_missing(),
            slices,
        }
    }

    fn rule(from: &str, rule: SliceRule) -> SliceSpec {
        SliceSpec { name: None, from: Some(from.into()), rule }
    }

    #[test]
    fn rules_take_the_rows_their_values_fall_in() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("hidden")).unwrap();
        std::fs::write(dir.path().join("hidden/labels.csv"), "id,y\n1,a\n2,b\n3,a\n4,b\n5,a\n").unwrap();
        std::fs::write(
            dir.path().join("hidden/features.csv"),
            "id,carat,island,species\n1,0.3, Biscoe,Adelie Penguin\n2,1.0,Dream,adelie\n3,2.5,Biscoe,Gentoo\n4,NA,Torgersen,\n5,,Dream,GENTOO p\n",
        )
        .unwrap();
        let f = "hidden/features.csv";
        let slices = members(
            &spec(vec![
                rule(f, SliceRule::Each { column: "island".into() }),
                rule(f, SliceRule::Bins { column: "carat".into(), edges: vec![0.5, 2.0] }),
                SliceSpec { name: Some("large".into()), from: Some(f.into()), rule: SliceRule::Range { column: "carat".into(), min: Some(2.0), max: None } },
                rule(f, SliceRule::Contains { column: "species".into(), texts: vec!["gentoo".into()] }),
                rule(f, SliceRule::Missing { columns: vec!["carat".into(), "species".into()] }),
                SliceSpec { name: Some("picked".into()), from: None, rule: SliceRule::Ids(vec!["2".into(), "9".into()]) },
                rule(f, SliceRule::Values { column: "island".into(), values: vec!["Dream".into()] }),
            ]),
            dir.path(),
        )
        .unwrap();
        let got: Vec<(String, Vec<String>)> = slices
            .into_iter()
            .map(|s| {
                let mut ids: Vec<String> = s.ids.texts().map(|t| t.into_owned()).collect();
                ids.sort();
                (s.name, ids)
            })
            .collect();
        let want = |name: &str, ids: &[&str]| (name.to_string(), ids.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            got,
            vec![
                want("island = Biscoe", &["1", "3"]),
                want("island = Dream", &["2", "5"]),
                want("island = Torgersen", &["4"]),
                want("carat < 0.5", &["1"]),
                want("0.5 ≤ carat < 2", &["2"]),
                want("carat ≥ 2", &["3"]),
                want("large", &["3"]),
                want("species contains \"gentoo\"", &["3", "5"]),
                want("carat or species missing", &["4", "5"]),
                want("picked", &["2", "9"]),
                want("island = Dream (2)", &["2", "5"]),
            ]
        );
        let err = members(&spec(vec![rule(f, SliceRule::Each { column: "colour".into() })]), dir.path()).unwrap_err();
        assert!(err.contains("slices[0]: hidden/features.csv has no column \"colour\""), "{err}");
    }

    #[test]
    fn the_worst_slice_follows_the_metrics_direction() {
        let score = |name: &str, value: Option<f64>| SliceScore { name: name.into(), rows: 1, value, note: None };
        let slices = vec![score("a", Some(0.9)), score("b", Some(0.5)), score("c", None), score("d", Some(0.7))];
        let (worst, spread) = worst_and_spread(&slices, true).unwrap();
        assert_eq!((worst.name.as_str(), (spread * 10.0).round()), ("b", 4.0));
        assert_eq!(worst_and_spread(&slices, false).unwrap().0.name, "a");
        assert!(worst_and_spread(&[score("c", None)], true).is_none());
    }
}
