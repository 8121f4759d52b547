//! Reading candidates' outputs and the hidden truth: CSV (UTF-8, with or without a BOM, LF or
//! CRLF, quoted fields) and Parquet, chosen by the file's extension. Pure reading; the caller
//! decides what a failure means (a candidate's `bad_format`, or our broken truth).

use std::path::Path;

use polars::prelude::*;

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

/// Reads a table with its column types inferred (ids and numbers as numbers). If a value later
/// in the file does not fit the inferred type, reads again with every column as text.
pub fn read_typed(path: &Path) -> Result<DataFrame, String> {
    match Format::of(path) {
        Format::Parquet => read_parquet(path),
        Format::Csv => read_csv(path, Some(1000)).or_else(|_| read_csv(path, Some(0))),
    }
}

/// Reads a table with every column as text (CSV), or as stored and then cast to text (Parquet).
pub fn read_text(path: &Path) -> Result<DataFrame, String> {
    let table = match Format::of(path) {
        Format::Parquet => read_parquet(path)?,
        Format::Csv => return read_csv(path, Some(0)),
    };
    let columns: Vec<Column> = table
        .columns()
        .iter()
        .map(|column| column.cast(&DataType::String).map_err(|error| first_line(&error.to_string())))
        .collect::<Result<_, _>>()?;
    DataFrame::new(table.height(), columns).map_err(|error| first_line(&error.to_string()))
}

fn read_csv(path: &Path, infer_rows: Option<usize>) -> Result<DataFrame, String> {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(infer_rows)
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

pub(crate) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// The names of a table's columns.
pub fn column_names(table: &DataFrame) -> Vec<String> {
    table.get_column_names().iter().map(|name| name.to_string()).collect()
}
