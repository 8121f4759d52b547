//! Streaming column reading for grading: only the columns asked for, in bounded pieces, one thread
//! per part of the file, each record handed at once to a [`Sink`] that compacts it (a class index,
//! a number, a matched row). No table of the whole file is ever built, so the memory a grade needs
//! is what its compact columns need, and both cores parse.
//!
//! CSV as RFC 4180 reads it, and as the rest of `grading` reads it: UTF-8 with or without a BOM,
//! LF or CRLF, fields quoted with `"` and quotes in them doubled; blank lines are skipped; a
//! record with fewer fields than the header has empty ones, one with more is an error. A quote
//! opens or closes quoting wherever it stands, so the parity of the quotes before a byte says
//! whether that byte is quoted — which is how a file is cut into parts exactly: at a newline
//! after an even number of quotes.
//!
//! Parquet is read through polars, the wanted columns cast to what a sink takes, and handed to
//! the sink row by row on one thread.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use polars::prelude::*;

/// One field of a record, as a sink receives it. CSV gives `Null` (an empty field) or `Text`;
/// Parquet gives typed values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Float(f64),
}

/// Why a sink stops reading: a message about the record at hand (the reader adds where it is).
#[derive(Debug, Clone, PartialEq)]
pub struct Stop(pub String);

/// Takes the records of one part of a file, in order. `row` counts the part's data records from 0.
pub trait Sink: Send {
    fn record(&mut self, row: u64, fields: &[Field<'_>]) -> Result<(), Stop>;
    /// Called once after the part's last record.
    fn finish(&mut self) -> Result<(), Stop> {
        Ok(())
    }
}

/// The bytes one read brings in: small enough that the piece, its delimiters and what a sink
/// reads at random share the core's cache.
const PIECE: usize = 1 << 18;
/// A header longer than this is not a header.
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Nor one with more columns than this.
const MAX_COLUMNS: usize = 10_000;
/// The longest record a grading file may hold.
const MAX_RECORD_BYTES: usize = 16 << 20;
/// Files smaller than this are read on one thread.
const MIN_PART_BYTES: u64 = 4 << 20;

/// The column names of a file, and where its data begins.
#[derive(Debug, Clone)]
pub struct Header {
    pub names: Vec<String>,
    data_start: u64,
}

impl Header {
    /// Where each wanted column stands in a record, or the first problem: a wanted column that the
    /// file lacks or has twice.
    fn positions(&self, wanted: &[&str]) -> Result<Vec<usize>, String> {
        wanted
            .iter()
            .map(|name| {
                let mut at = self.names.iter().enumerate().filter(|(_, n)| n == name).map(|(i, _)| i);
                match (at.next(), at.next()) {
                    (Some(i), None) => Ok(i),
                    (None, _) => Err(format!("no column {name:?}")),
                    (Some(_), Some(_)) => Err(format!("the column {name:?} appears twice")),
                }
            })
            .collect()
    }
}

/// Reads the header of a CSV file (its first record).
pub fn csv_header(path: &Path) -> Result<Header, String> {
    let file = File::open(path).map_err(|error| error.to_string())?;
    let length = file.metadata().map_err(|error| error.to_string())?.len();
    let mut buffer = vec![0u8; MAX_HEADER_BYTES.min(length as usize)];
    file.read_exact_at(&mut buffer, 0).map_err(|error| error.to_string())?;
    let bom = if buffer.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let at_eof = buffer.len() as u64 == length;
    let mut names = Vec::new();
    let mut scratch = Vec::new();
    let mut position = bom;
    loop {
        let bytes = &buffer[position..];
        if bytes.is_empty() && at_eof {
            return Err("no header".to_string());
        }
        let mut ranges = Vec::new();
        match next_record(bytes, at_eof, &mut ranges)? {
            Scan::Blank(used) => position += used,
            Scan::Record(used) => {
                if ranges.len() > MAX_COLUMNS {
                    return Err(format!("the header has {} columns, more than {MAX_COLUMNS}", ranges.len()));
                }
                std::str::from_utf8(&bytes[..used]).map_err(|_| "not UTF-8 text (in the header)".to_string())?;
                for range in &ranges {
                    names.push(field_text(bytes, range, &mut scratch).to_string());
                }
                return Ok(Header { names, data_start: (position + used) as u64 });
            }
            Scan::Incomplete => {
                return Err(if at_eof { "the header ends inside a quoted field".to_string() } else { "the header is longer than 1 MiB".to_string() })
            }
        }
    }
}

/// The column names of a table file (CSV header or Parquet schema).
pub fn header(path: &Path) -> Result<Vec<String>, String> {
    match Format::of(path) {
        Format::Csv => csv_header(path).map(|header| header.names),
        Format::Parquet => {
            let file = File::open(path).map_err(|error| error.to_string())?;
            let schema = ParquetReader::new(file).schema().map_err(|error| format!("not a readable Parquet file: {}", first_line(&error.to_string())))?;
            Ok(schema.iter_names().map(|n| n.to_string()).collect())
        }
    }
}

/// A table's file format, by its extension (`.parquet`, `.pq`; anything else is CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("parquet") | Some("pq") => Format::Parquet,
            _ => Format::Csv,
        }
    }
}

/// The first line of an error's text (polars' messages go on for pages).
pub(crate) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// How a wanted column is handed to a sink from a Parquet file (CSV hands text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Integers as `Int`, anything else as text.
    Id,
    /// Text.
    Label,
    /// Numbers as `Float`, anything else as text.
    Number,
}

/// Reads the `wanted` columns of a CSV or Parquet file into sinks made by `make_sink` (one per
/// part, in file order), refusing more than `max_rows` data records. Returns the sinks and each
/// part's record count. An `Err` says what is wrong and where (`row N` counts the header as row 1).
pub fn read<S: Sink>(path: &Path, wanted: &[(&str, Want)], max_rows: u64, make_sink: impl Fn() -> S + Sync) -> Result<Vec<(S, u64)>, String> {
    match Format::of(path) {
        Format::Csv => read_csv(path, wanted, max_rows, make_sink),
        Format::Parquet => read_parquet(path, wanted, max_rows, make_sink()).map(|part| vec![part]),
    }
}

fn read_csv<S: Sink>(path: &Path, wanted: &[(&str, Want)], max_rows: u64, make_sink: impl Fn() -> S + Sync) -> Result<Vec<(S, u64)>, String> {
    let header = csv_header(path)?;
    let names: Vec<&str> = wanted.iter().map(|(name, _)| *name).collect();
    let positions = header.positions(&names)?;
    let file = File::open(path).map_err(|error| error.to_string())?;
    let length = file.metadata().map_err(|error| error.to_string())?.len();
    let parts = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    let bounds = split(&file, header.data_start, length, parts)?;
    let results: Vec<Result<(S, u64), (u64, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (file, positions, header_len, make_sink) = (&file, &positions, header.names.len(), &make_sink);
                let (start, end) = (w[0], w[1]);
                scope.spawn(move || read_part(file, start, end, positions, header_len, max_rows, make_sink()))
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap_or_else(|_| Err((0, "the reader failed".to_string())))).collect()
    });
    let mut parts = Vec::with_capacity(results.len());
    let mut rows_before = 0u64;
    for result in results {
        match result {
            Ok((sink, rows)) => {
                rows_before += rows;
                parts.push((sink, rows));
            }
            Err((row, message)) => return Err(format!("row {}: {message}", rows_before + row + 2)),
        }
    }
    if rows_before > max_rows {
        return Err(format!("{rows_before} rows, far more than expected (at most {max_rows}); not read"));
    }
    Ok(parts)
}

/// Cuts `[start, end)` into up to `parts` byte ranges that each begin at a record: at the first
/// newline after each cut point that follows an even number of quotes.
fn split(file: &File, start: u64, end: u64, parts: usize) -> Result<Vec<u64>, String> {
    let mut bounds = vec![start];
    if parts < 2 || end.saturating_sub(start) < MIN_PART_BYTES * 2 {
        bounds.push(end);
        return Ok(bounds);
    }
    let mut buffer = vec![0u8; PIECE];
    let (mut position, mut quotes) = (start, 0u64);
    for k in 1..parts as u64 {
        let target = start + (end - start) * k / parts as u64;
        if target <= *bounds.last().expect("one bound") {
            continue;
        }
        // Count the quotes up to the cut point, then find the first newline outside quotes.
        while position < target {
            let n = ((target - position) as usize).min(PIECE);
            file.read_exact_at(&mut buffer[..n], position).map_err(|error| error.to_string())?;
            quotes += memchr::memchr_iter(b'"', &buffer[..n]).count() as u64;
            position += n as u64;
        }
        let mut cut = None;
        while cut.is_none() && position < end {
            let n = ((end - position) as usize).min(PIECE);
            file.read_exact_at(&mut buffer[..n], position).map_err(|error| error.to_string())?;
            for (i, &byte) in buffer[..n].iter().enumerate() {
                match byte {
                    b'"' => quotes += 1,
                    b'\n' if quotes % 2 == 0 => {
                        cut = Some(position + i as u64 + 1);
                        // Continue counting from the cut.
                        quotes += memchr::memchr_iter(b'"', &buffer[i + 1..n]).count() as u64;
                        break;
                    }
                    _ => {}
                }
            }
            position += n as u64;
        }
        match cut {
            Some(cut) if cut < end => bounds.push(cut),
            _ => break,
        }
    }
    bounds.push(end);
    Ok(bounds)
}

/// Reads the records in `[start, end)` into `sink`. `Err((row, message))` names the part's row.
fn read_part<S: Sink>(file: &File, start: u64, end: u64, positions: &[usize], n_columns: usize, max_rows: u64, sink: S) -> Result<(S, u64), (u64, String)> {
    // Where each record field goes among the wanted ones.
    let mut slot_of = vec![usize::MAX; n_columns];
    for (slot, &column) in positions.iter().enumerate() {
        slot_of[column] = slot;
    }
    let mut part = Part { sink, row: 0, slot_of, n_columns, max_rows, scratch: vec![Vec::new(); positions.len()], spare: Vec::with_capacity(positions.len()) };
    let mut buffer: Vec<u8> = Vec::with_capacity(PIECE);
    let mut position = start;
    let mut ranges: Vec<FieldRange> = Vec::with_capacity(n_columns);
    let mut found: Vec<u32> = Vec::new();
    loop {
        // Top the buffer up with the next piece.
        let kept = buffer.len();
        let want = ((end - position) as usize).min(PIECE.max(kept));
        buffer.resize(kept + want, 0);
        file.read_exact_at(&mut buffer[kept..], position).map_err(|error| (part.row, error.to_string()))?;
        position += want as u64;
        let at_eof = position >= end;
        let text = match utf8_prefix(&buffer, at_eof) {
            Ok(text) => text,
            Err(valid) => {
                let line = memchr::memchr_iter(b'\n', &buffer[..valid]).count() as u64;
                return Err((part.row + line, "not UTF-8 text".to_string()));
            }
        };
        let bytes = text.as_bytes();
        let mut at = 0usize;
        if memchr::memchr(b'"', bytes).is_none() {
            // No quote in the piece: every comma and newline is a delimiter, and each field is
            // handed over where it lies, as it is found (no ranges, no second pass).
            delimiters(bytes, &mut found);
            let mut fields = recycle(std::mem::take(&mut part.spare));
            fields.clear();
            fields.resize(part.scratch.len(), Field::Null);
            let (mut field_start, mut column) = (0usize, 0usize);
            for &delimiter in &found {
                let delimiter = delimiter as usize;
                if bytes[delimiter] == b',' {
                    part.put(&mut fields, column, &text[field_start..delimiter]);
                    column += 1;
                    field_start = delimiter + 1;
                    continue;
                }
                let mut field_end = delimiter;
                if field_end > field_start && bytes[field_end - 1] == b'\r' {
                    field_end -= 1;
                }
                // A blank line is no record.
                if !(column == 0 && field_end == field_start) {
                    part.put(&mut fields, column, &text[field_start..field_end]);
                    part.emit_fields(&mut fields, column + 1)?;
                }
                column = 0;
                field_start = delimiter + 1;
                at = field_start;
            }
            if at_eof && at < bytes.len() {
                let mut field_end = bytes.len();
                if bytes[field_end - 1] == b'\r' {
                    field_end -= 1;
                }
                if !(column == 0 && field_end == field_start) {
                    part.put(&mut fields, column, &text[field_start..field_end]);
                    part.emit_fields(&mut fields, column + 1)?;
                }
                at = bytes.len();
            }
            part.spare = recycle(fields);
        } else {
            loop {
                ranges.clear();
                match next_record(&bytes[at..], at_eof, &mut ranges).map_err(|message| (part.row, message))? {
                    Scan::Incomplete => break,
                    Scan::Blank(used) => at += used,
                    Scan::Record(used) => {
                        part.emit(text, at, &ranges)?;
                        at += used;
                    }
                }
            }
        }
        if at_eof {
            if at < bytes.len() {
                return Err((part.row, "the file ends inside a quoted field".to_string()));
            }
            part.sink.finish().map_err(|Stop(message)| (part.row, message))?;
            return Ok((part.sink, part.row));
        }
        // Keep what is left (an incomplete record, or a character cut by the piece's end).
        buffer.drain(..at);
        if buffer.len() > MAX_RECORD_BYTES {
            return Err((part.row, format!("a record longer than {} MiB", MAX_RECORD_BYTES >> 20)));
        }
    }
}

/// The positions of every comma and newline in `bytes`, in order: eight bytes at a time, each
/// word's delimiters found at once (an exact zero-byte test on the word xor'd with the delimiter),
/// so that the scan does not branch on every byte.
fn delimiters(bytes: &[u8], found: &mut Vec<u32>) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    // High bit set in each byte of `word` that is zero, and only there.
    let zero_bytes = |word: u64| !(((word & LOW7) + LOW7) | word | LOW7);
    found.clear();
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0u32;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let mut mask = zero_bytes(word ^ (ONES * u64::from(b','))) | zero_bytes(word ^ (ONES * u64::from(b'\n')));
        while mask != 0 {
            found.push(base + mask.trailing_zeros() / 8);
            mask &= mask - 1;
        }
        base += 8;
    }
    for (i, &byte) in chunks.remainder().iter().enumerate() {
        if byte == b',' || byte == b'\n' {
            found.push(base + i as u32);
        }
    }
}

/// One part's reading state.
struct Part<S> {
    sink: S,
    row: u64,
    slot_of: Vec<usize>,
    n_columns: usize,
    max_rows: u64,
    scratch: Vec<Vec<u8>>,
    spare: Vec<Field<'static>>,
}

impl<S: Sink> Part<S> {
    /// Puts the field of `column` into its wanted slot, if it is wanted.
    #[inline]
    fn put<'a>(&self, fields: &mut [Field<'a>], column: usize, value: &'a str) {
        if let Some(&slot) = self.slot_of.get(column) {
            if slot != usize::MAX {
                fields[slot] = if value.is_empty() { Field::Null } else { Field::Text(value) };
            }
        }
    }

    /// Hands a record of `columns` fields, already in `fields`, to the sink, and empties them.
    #[inline]
    fn emit_fields(&mut self, fields: &mut [Field<'_>], columns: usize) -> Result<(), (u64, String)> {
        let row = self.row;
        if columns > self.n_columns {
            return Err((row, format!("{columns} fields, but the header has {}", self.n_columns)));
        }
        if row >= self.max_rows {
            return Err((row, format!("more than {} rows, far more than expected; not read", self.max_rows)));
        }
        self.sink.record(row, fields).map_err(|Stop(message)| (row, message))?;
        fields.fill(Field::Null);
        self.row += 1;
        Ok(())
    }

    /// Hands one record (its fields at `base + range` in `text`) to the sink.
    fn emit(&mut self, text: &str, base: usize, ranges: &[FieldRange]) -> Result<(), (u64, String)> {
        let row = self.row;
        if ranges.len() > self.n_columns {
            return Err((row, format!("{} fields, but the header has {}", ranges.len(), self.n_columns)));
        }
        if row >= self.max_rows {
            return Err((row, format!("more than {} rows, far more than expected; not read", self.max_rows)));
        }
        let mut fields = recycle(std::mem::take(&mut self.spare));
        fields.resize(self.scratch.len(), Field::Null);
        // Fields from the record's own bytes need no copy; unquoting writes to scratch.
        let mut quoted = false;
        for (column, range) in ranges.iter().enumerate() {
            let slot = self.slot_of[column];
            if slot == usize::MAX {
                continue;
            }
            if range.plain {
                let value = &text[base + range.start..base + range.end];
                fields[slot] = if value.is_empty() { Field::Null } else { Field::Text(value) };
            } else {
                unquote(&text.as_bytes()[base + range.start..base + range.end], &mut self.scratch[slot]);
                quoted = true;
            }
        }
        if quoted {
            for (column, range) in ranges.iter().enumerate() {
                let slot = self.slot_of[column];
                if slot != usize::MAX && !range.plain {
                    let value = std::str::from_utf8(&self.scratch[slot]).map_err(|_| (row, "not UTF-8 text".to_string()))?;
                    fields[slot] = if value.is_empty() { Field::Null } else { Field::Text(value) };
                }
            }
        }
        self.sink.record(row, &fields).map_err(|Stop(message)| (row, message))?;
        self.spare = recycle(fields);
        self.row += 1;
        Ok(())
    }
}

/// `text` without the spaces around it: ASCII fast, Unicode as `str::trim` has it.
pub fn trim(text: &str) -> &str {
    match text.as_bytes() {
        [] => text,
        [first, .., last] | [first @ last] if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// A number as `str::parse::<f64>` reads it. Plain decimals of up to 19 digits whose value is
/// exact in a double before scaling (`-12.345`) take Clinger's fast path — one exact division by a
/// power of ten, correctly rounded — and anything else the standard parser.
pub fn parse_number(text: &str) -> Option<f64> {
    const POWERS: [f64; 23] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
    let bytes = text.as_bytes();
    let (negative, start) = sign(bytes);
    let (mantissa, whole_end) = digits(bytes, start, 0);
    let (mantissa, end) = match bytes.get(whole_end) {
        Some(b'.') => digits(bytes, whole_end + 1, mantissa),
        _ => (mantissa, whole_end),
    };
    let count = end - start - usize::from(end > whole_end);
    let fraction = end.saturating_sub(whole_end + 1);
    if end != bytes.len() || count == 0 || count > 19 || mantissa >= 1 << 53 || fraction > 22 {
        return text.parse().ok();
    }
    let value = mantissa as f64 / POWERS[fraction];
    Some(if negative { -value } else { value })
}

/// Whether a number is negative, and where its digits start (after a `-` or `+`).
fn sign(bytes: &[u8]) -> (bool, usize) {
    match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    }
}

/// Reads decimal digits from `at` onward into `value`; where they end.
fn digits(bytes: &[u8], mut at: usize, mut value: u64) -> (u64, usize) {
    while let Some(&byte) = bytes.get(at) {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        at += 1;
    }
    (value, at)
}

/// An integer as `str::parse::<i64>` reads it; up to 18 digits without a detour.
pub fn parse_integer(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (negative, start) = sign(bytes);
    let (value, end) = digits(bytes, start, 0);
    if end != bytes.len() || end == start || end - start > 18 {
        return text.parse().ok();
    }
    Some(if negative { -(value as i64) } else { value as i64 })
}

/// An empty vector of fields that may borrow from something new, in the old one's allocation.
fn recycle<'b>(mut fields: Vec<Field<'_>>) -> Vec<Field<'b>> {
    fields.clear();
    fields.into_iter().map(|_| unreachable!("cleared")).collect()
}

/// The longest valid UTF-8 prefix; at the end of the input it must be all of it. `Err(valid)`
/// when invalid bytes stand before the end.
fn utf8_prefix(bytes: &[u8], at_eof: bool) -> Result<&str, usize> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(error) if error.error_len().is_none() && !at_eof => Ok(std::str::from_utf8(&bytes[..error.valid_up_to()]).expect("checked")),
        Err(error) => Err(error.valid_up_to()),
    }
}

/// Where one field lies in its record: raw bytes, with `plain` when they need no unquoting.
#[derive(Debug, Clone, Copy)]
struct FieldRange {
    start: usize,
    end: usize,
    plain: bool,
}

enum Scan {
    /// A record of this many bytes (its newline included); its fields are in the ranges.
    Record(usize),
    /// A blank line of this many bytes.
    Blank(usize),
    /// The input ends before the record does.
    Incomplete,
}

/// Scans one record at the start of `bytes`. Quotes toggle quoting wherever they stand.
fn next_record(bytes: &[u8], at_eof: bool, ranges: &mut Vec<FieldRange>) -> Result<Scan, String> {
    if bytes.is_empty() {
        return Ok(Scan::Incomplete);
    }
    match bytes {
        [b'\n', ..] => return Ok(Scan::Blank(1)),
        [b'\r', b'\n', ..] => return Ok(Scan::Blank(2)),
        [b'\r'] if at_eof => return Ok(Scan::Blank(1)),
        _ => {}
    }
    let mut i = 0usize;
    loop {
        let start = i;
        let mut quotes = 0u32;
        let mut inside = false;
        // The common field: no quote, up to a comma or a newline.
        while i < bytes.len() {
            let byte = bytes[i];
            if byte == b'"' {
                inside = !inside;
                quotes += 1;
            } else if !inside && (byte == b',' || byte == b'\n') {
                break;
            }
            i += 1;
        }
        if i == bytes.len() && !at_eof {
            return Ok(Scan::Incomplete);
        }
        if inside {
            // Only reachable at the end of the input.
            return Ok(Scan::Incomplete);
        }
        let last = i == bytes.len() || bytes[i] == b'\n';
        let mut end = i;
        if last && end > start && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        let plain = quotes == 0;
        if quotes == 2 && end - start >= 2 && bytes[start] == b'"' && bytes[end - 1] == b'"' {
            ranges.push(FieldRange { start: start + 1, end: end - 1, plain: true });
        } else {
            ranges.push(FieldRange { start, end, plain });
        }
        if last {
            let used = if i < bytes.len() { i + 1 } else { i };
            return Ok(Scan::Record(used));
        }
        i += 1;
        if ranges.len() > MAX_COLUMNS {
            return Err(format!("more than {MAX_COLUMNS} fields"));
        }
    }
}

/// A field's value with its quotes taken out (a doubled quote inside quotes is one quote).
fn unquote(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut inside = false;
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'"' if inside && raw.get(i + 1) == Some(&b'"') => {
                out.push(b'"');
                i += 1;
            }
            b'"' => inside = !inside,
            byte => out.push(byte),
        }
        i += 1;
    }
}

fn field_text<'a>(bytes: &'a [u8], range: &FieldRange, scratch: &'a mut Vec<u8>) -> std::borrow::Cow<'a, str> {
    if range.plain {
        String::from_utf8_lossy(&bytes[range.start..range.end])
    } else {
        unquote(&bytes[range.start..range.end], scratch);
        String::from_utf8_lossy(scratch)
    }
}

/// Parquet: the wanted columns through polars, cast for the sink, handed over row by row.
fn read_parquet<S: Sink>(path: &Path, wanted: &[(&str, Want)], max_rows: u64, mut sink: S) -> Result<(S, u64), String> {
    let names = header(path)?;
    let header = Header { names, data_start: 0 };
    let plain: Vec<&str> = wanted.iter().map(|(name, _)| *name).collect();
    header.positions(&plain)?;
    let file = File::open(path).map_err(|error| error.to_string())?;
    let columns: Vec<String> = plain.iter().map(|name| name.to_string()).collect();
    let table = ParquetReader::new(file)
        .with_columns(Some(columns))
        .finish()
        .map_err(|error| format!("not a readable Parquet file: {}", first_line(&error.to_string())))?;
    if table.height() as u64 > max_rows {
        return Err(format!("{} rows, far more than expected (at most {max_rows}); not read", table.height()));
    }
    let cast = |name: &str, want: Want| -> Result<Series, String> {
        let series = table.column(name).map_err(|error| first_line(&error.to_string()))?.as_materialized_series().clone();
        let dtype = series.dtype().clone();
        let target = match want {
            Want::Id if dtype.is_integer() => DataType::Int64,
            Want::Number if dtype.is_primitive_numeric() => DataType::Float64,
            _ => DataType::String,
        };
        series.cast(&target).map_err(|error| format!("column {name:?}: {}", first_line(&error.to_string())))
    };
    let series: Vec<Series> = wanted.iter().map(|(name, want)| cast(name, *want)).collect::<Result<_, _>>()?;
    let mut fields = vec![Field::Null; series.len()];
    for row in 0..table.height() {
        for (slot, column) in series.iter().enumerate() {
            fields[slot] = match column.dtype() {
                DataType::Int64 => column.i64().expect("cast").get(row).map_or(Field::Null, Field::Int),
                DataType::Float64 => column.f64().expect("cast").get(row).map_or(Field::Null, Field::Float),
                _ => match column.str().expect("cast").get(row) {
                    None | Some("") => Field::Null,
                    Some(text) => Field::Text(text),
                },
            };
        }
        sink.record(row as u64, &fields).map_err(|Stop(message)| format!("row {}: {message}", row + 2))?;
    }
    sink.finish().map_err(|Stop(message)| format!("row {}: {message}", table.height() + 1))?;
    Ok((sink, table.height() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<Vec<String>>);
    impl Sink for Collect {
        fn record(&mut self, _row: u64, fields: &[Field<'_>]) -> Result<(), Stop> {
            self.0.push(fields.iter().map(|f| format!("{f:?}")).collect());
            Ok(())
        }
    }

    fn parse(text: &[u8], wanted: &[&str]) -> Result<Vec<Vec<String>>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        let wanted: Vec<(&str, Want)> = wanted.iter().map(|w| (*w, Want::Label)).collect();
        let parts = read(&path, &wanted, u64::MAX, || Collect(Vec::new()))?;
        Ok(parts.into_iter().flat_map(|(c, _)| c.0).collect())
    }

    #[test]
    fn quotes_crlf_bom_and_blank_lines() {
        let rows = parse(b"\xEF\xBB\xBFid,\"la,bel\"\r\n1,\"a\"\"b\"\r\n\r\n2,\"x\ny\"\r\n3,\n4", &["la,bel", "id"]).unwrap();
        assert_eq!(
            rows,
            vec![vec!["Text(\"a\\\"b\")", "Text(\"1\")"], vec!["Text(\"x\\ny\")", "Text(\"2\")"], vec!["Null", "Text(\"3\")"], vec!["Null", "Text(\"4\")"],]
        );
        assert_eq!(parse(b"id,label\n1,a,b\n", &["id"]).unwrap_err(), "row 2: 3 fields, but the header has 2");
        assert_eq!(parse(b"id,label\n1,\"a\n", &["id"]).unwrap_err(), "row 2: the file ends inside a quoted field");
        assert_eq!(parse(b"id,label\n1,a\n2,\xff\n", &["id"]).unwrap_err(), "row 3: not UTF-8 text");
        assert_eq!(parse(b"id,id\n1,2\n", &["id"]).unwrap_err(), "the column \"id\" appears twice");
    }

    #[test]
    fn unquoted_files_take_the_fast_path_alike() {
        let rows = parse(b"id,label,extra\r\n1,alpha,x\r\n\r\n22,,y\n333,gamma-delta-epsilon,\n\n4444,\xc3\xa9t\xc3\xa9,z", &["label", "id"]).unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["Text(\"alpha\")", "Text(\"1\")"],
                vec!["Null", "Text(\"22\")"],
                vec!["Text(\"gamma-delta-epsilon\")", "Text(\"333\")"],
                vec!["Text(\"\u{e9}t\u{e9}\")", "Text(\"4444\")"],
            ]
        );
        let mut found = Vec::new();
        let text = b"a,bcdefghij\nk,,lmnopqrstuvw,\nxyz";
        delimiters(text, &mut found);
        let expected: Vec<u32> = text.iter().enumerate().filter(|(_, &b)| b == b',' || b == b'\n').map(|(i, _)| i as u32).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn numbers_parse_as_the_standard_parser_does() {
        let cases = [
            "0",
            "-0",
            "1.5",
            "-12.345",
            "100.0001",
            "0.1",
            "9007199254740993",
            "123456789012345678901",
            "1e5",
            "inf",
            "-NaN",
            ".5",
            "5.",
            "+3.25",
            "1.2.3",
            "",
            "-",
            ".",
            "12a",
            "0.30000000000000004",
        ];
        for case in cases {
            let expected = case.parse::<f64>().ok();
            let got = parse_number(case);
            assert_eq!(got.map(f64::to_bits), expected.map(f64::to_bits), "{case:?}");
        }
        for case in [
            "0",
            "-0",
            "+7",
            "007",
            "-12",
            "123456789012345678",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "",
            "-",
            "1.0",
            "1e3",
            " 1",
        ] {
            assert_eq!(parse_integer(case), case.parse::<i64>().ok(), "{case:?}");
        }
        let mut state = 99u64;
        for _ in 0..200_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let text = format!("{}.{:0width$}", (state >> 40) as i64 - (1 << 23), (state >> 8) % 1_000_000, width = (state % 7) as usize);
            assert_eq!(parse_number(&text).map(f64::to_bits), text.parse::<f64>().ok().map(f64::to_bits), "{text:?}");
        }
    }

    #[test]
    fn parts_cut_at_records_only() {
        // Big enough for several parts, with quoted newlines and commas around every cut.
        let mut text = b"id,label\n".to_vec();
        for i in 0..400_000 {
            text.extend_from_slice(format!("{i},\"v\n{i},\"\n").as_bytes());
        }
        let rows = parse(&text, &["id", "label"]).unwrap();
        assert_eq!(rows.len(), 400_000);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row[0], format!("Text(\"{i}\")"));
            assert_eq!(row[1], format!("Text(\"v\\n{i},\")"));
        }
    }
}
