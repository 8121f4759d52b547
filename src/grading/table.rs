//! Reading candidates' outputs and the hidden truth: CSV (UTF-8, with or without a BOM, LF or
//! CRLF, quoted fields) and Parquet, chosen by the file's extension. Pure reading; the caller
//! decides what a failure means (a candidate's `bad_format`, or our broken truth).

use std::path::Path;

use polars::prelude::*;

pub(crate) use super::records::first_line;
pub use super::records::{header, Format};

/// Reads a table with its column types inferred (ids and numbers as numbers). If a value later
/// in the file does not fit the inferred type, reads again with every column as text.
pub fn read_typed(path: &Path) -> Result<DataFrame, String> {
    read_typed_with(path, &[])
}

/// Like [`read_typed`], with the types of some columns fixed (for example a label column read as
/// categories, four bytes a row). Columns that the file does not have are ignored.
pub fn read_typed_with(path: &Path, fixed: &[(&str, DataType)]) -> Result<DataFrame, String> {
    let names = header(path)?;
    let fixed: Vec<(&str, DataType)> = fixed.iter().filter(|(name, _)| names.iter().any(|n| n == name)).cloned().collect();
    match Format::of(path) {
        Format::Parquet => {
            let mut table = read_parquet(path)?;
            for (name, dtype) in &fixed {
                let column = table.column(name).map_err(|e| first_line(&e.to_string()))?.cast(dtype).map_err(|e| first_line(&e.to_string()))?;
                table.with_column(column).map_err(|e| first_line(&e.to_string()))?;
            }
            Ok(table)
        }
        Format::Csv => read_csv_with(path, Some(1000), &fixed).or_else(|_| read_csv_with(path, Some(0), &fixed)),
    }
}

/// What a table's file says of its size before a row is decoded: an upper bound on its rows (the
/// newline count of a CSV, the row count of a Parquet footer), the bytes its rows take uncompressed
/// (the file size of a CSV; the sum of the column chunks' uncompressed sizes of a Parquet file), and
/// its column count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub rows: u64,
    pub uncompressed_bytes: u64,
    pub columns: usize,
}

pub fn extent(path: &Path) -> Result<Extent, String> {
    match Format::of(path) {
        Format::Parquet => {
            let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
            let mut reader = ParquetReader::new(file);
            let metadata = reader.get_metadata().map_err(|error| format!("not a readable Parquet file: {}", first_line(&error.to_string())))?.clone();
            let group_rows: u64 = metadata.row_groups.iter().map(|g| g.num_rows() as u64).sum();
            let column_bytes: u64 = metadata.row_groups.iter().flat_map(|g| g.parquet_columns()).map(|c| c.uncompressed_size().max(0) as u64).sum();
            let group_bytes: u64 = metadata.row_groups.iter().map(|g| g.total_byte_size() as u64).sum();
            let columns = reader.schema().map_err(|error| format!("not a readable Parquet file: {}", first_line(&error.to_string())))?.len();
            Ok(Extent { rows: (metadata.num_rows as u64).max(group_rows), uncompressed_bytes: column_bytes.max(group_bytes), columns })
        }
        Format::Csv => {
            use std::io::Read;
            let mut file = std::fs::File::open(path).map_err(|error| error.to_string())?;
            let mut buffer = vec![0u8; 1 << 20];
            let (mut newlines, mut bytes, mut last) = (0u64, 0u64, b'\n');
            loop {
                let n = file.read(&mut buffer).map_err(|error| error.to_string())?;
                if n == 0 {
                    break;
                }
                newlines += memchr::memchr_iter(b'\n', &buffer[..n]).count() as u64;
                bytes += n as u64;
                last = buffer[n - 1];
            }
            let lines = newlines + u64::from(last != b'\n');
            let columns = super::records::csv_header(path).map(|header| header.names.len()).unwrap_or(0);
            Ok(Extent { rows: lines.saturating_sub(1), uncompressed_bytes: bytes, columns })
        }
    }
}

/// Reads a table with every column as text (CSV), or as stored and then cast to text (Parquet).
pub fn read_text(path: &Path) -> Result<DataFrame, String> {
    let table = match Format::of(path) {
        Format::Parquet => read_parquet(path)?,
        Format::Csv => return read_csv(path, Some(0)),
    };
    let columns: Vec<Column> =
        table.columns().iter().map(|column| column.cast(&DataType::String).map_err(|error| first_line(&error.to_string()))).collect::<Result<_, _>>()?;
    DataFrame::new(table.height(), columns).map_err(|error| first_line(&error.to_string()))
}

fn read_csv(path: &Path, infer_rows: Option<usize>) -> Result<DataFrame, String> {
    read_csv_with(path, infer_rows, &[])
}

fn read_csv_with(path: &Path, infer_rows: Option<usize>, fixed: &[(&str, DataType)]) -> Result<DataFrame, String> {
    let overwrite = (!fixed.is_empty()).then(|| Arc::new(Schema::from_iter(fixed.iter().map(|(name, dtype)| Field::new((*name).into(), dtype.clone())))));
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(infer_rows)
        .with_schema_overwrite(overwrite)
        .with_low_memory(std::env::var_os("TAKEHOME_CSV_LOW_MEMORY").is_some())
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|reader| reader.finish())
        .map_err(|error| describe_csv_error(&error.to_string()))
}

fn read_parquet(path: &Path) -> Result<DataFrame, String> {
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    ParquetReader::new(file).finish().map_err(|error| format!("not a readable Parquet file: {}", first_line(&error.to_string())))
}

fn describe_csv_error(message: &str) -> String {
    let line = first_line(message);
    if line.to_ascii_lowercase().contains("utf-8") || line.to_ascii_lowercase().contains("utf8") {
        format!("not UTF-8 text ({line})")
    } else {
        line
    }
}

/// The names of a table's columns.
pub fn column_names(table: &DataFrame) -> Vec<String> {
    table.get_column_names().iter().map(|name| name.to_string()).collect()
}
