//! Reading asset files (JSON array or CSV with a header) into validated rows. Every row is
//! read before anything is written; errors name the row and the field.

use anyhow::{Context as _, bail};
use certfleet_shared::db::assets::{AssetInput, FieldError, RowError, RowSource};
use serde_json::{Map, Value};
use std::path::Path;

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A JSON array of objects.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Picks the format from the file name when not given.
pub fn guess(path: &Path) -> anyhow::Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        _ => bail!("cannot tell the format of {} from its name; pass --format json or --format csv", path.display()),
    }
}

/// Parses one row object, naming the field (the CSV column) on error: the same parser as
/// the API's.
fn row(index: usize, value: Value, source: RowSource) -> Result<AssetInput, RowError> {
    AssetInput::from_row(index, value, source)
}

/// One row of a file: parsed, or naming its bad field; `Err` of the outer result when the
/// file itself cannot be read on (malformed CSV).
pub type Row = anyhow::Result<Result<AssetInput, RowError>>;

/// Reads a JSON array of assets (whole: a JSON inventory is not a bulk format).
fn from_json(text: &str) -> anyhow::Result<Vec<Result<AssetInput, RowError>>> {
    let value: Value = serde_json::from_str(text).context("the file is not valid JSON")?;
    let Value::Array(items) = value else { bail!("the JSON file must hold an array of asset objects") };
    Ok(items.into_iter().enumerate().map(|(i, v)| row(i, v, RowSource::Json)).collect())
}

/// Converts one CSV cell to the JSON value its column expects. Empty cells are absent.
fn csv_cell(column: &str, cell: &str) -> Result<Option<Value>, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(None);
    }
    Ok(Some(match column {
        "subject_alternative_name" => Value::Array(
            cell.split([';', ',', ' ']).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())).collect(),
        ),
        "port" => Value::Number(cell.parse::<i64>().map_err(|_| format!("{cell:?} is not a number"))?.into()),
        "certificate_validation" => match cell.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => return Err(format!("{cell:?} is not true or false")),
        },
        "settings" => serde_json::from_str(cell).map_err(|e| format!("not valid JSON: {e}"))?,
        _ => Value::String(cell.to_owned()),
    }))
}

fn static_column(column: &str) -> &'static str {
    certfleet_shared::db::assets::static_field(column).unwrap_or("(row)")
}

/// Reads a CSV file with a header row, one record at a time.
fn from_csv<R: std::io::Read>(input: R) -> anyhow::Result<impl Iterator<Item = Row>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::Headers).from_reader(input);
    let headers = reader.headers().context("reading the CSV header")?.clone();
    Ok(reader.into_records().enumerate().map(move |(i, record)| {
        let record = record.with_context(|| format!("row {}: malformed CSV", i + 1))?;
        Ok(csv_row(i, &headers, &record))
    }))
}

/// One CSV record as an asset, or the first bad cell.
fn csv_row(i: usize, headers: &csv::StringRecord, record: &csv::StringRecord) -> Result<AssetInput, RowError> {
    let mut object = Map::new();
    for (column, cell) in headers.iter().zip(record.iter()) {
        match csv_cell(column, cell) {
            Ok(Some(v)) => {
                object.insert(column.to_owned(), v);
            }
            Ok(None) => {}
            Err(reason) => {
                return Err(RowError {
                    row: i + 1,
                    name: object.get("system_name").and_then(Value::as_str).map(str::to_owned),
                    error: FieldError { field: static_column(column), reason },
                });
            }
        }
    }
    row(i, Value::Object(object), RowSource::Csv)
}

/// The message of a refused import: every bad row, one per line.
pub fn invalid_rows(file: &Path, lines: impl Iterator<Item = String>) -> String {
    let lines: Vec<String> = lines.collect();
    format!("{}: {} invalid row(s), nothing imported:\n  {}", file.display(), lines.len(), lines.join("\n  "))
}

/// Reads `path` as `format` row by row, each parsed or naming its bad field; the checks
/// that need the configuration (issuers, routes) are left to the importer or to the API
/// server. A CSV file is streamed (read as it is consumed), so memory does not grow with it.
pub fn rows(path: &Path, format: Format) -> anyhow::Result<Box<dyn Iterator<Item = Row> + Send>> {
    let cannot = || format!("cannot read {}", path.display());
    Ok(match format {
        Format::Json => {
            let text = std::fs::read_to_string(path).with_context(cannot)?;
            Box::new(from_json(&text)?.into_iter().map(Ok))
        }
        Format::Csv => {
            let file = std::fs::File::open(path).with_context(cannot)?;
            Box::new(from_csv(std::io::BufReader::with_capacity(1 << 20, file))?)
        }
    })
}

/// Every row of `path` at once (for the API, which takes one request body).
pub fn parse(path: &Path, format: Format) -> anyhow::Result<Vec<Result<AssetInput, RowError>>> {
    rows(path, format)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_text(text: &str) -> anyhow::Result<Vec<Result<AssetInput, RowError>>> {
        from_csv(text.as_bytes())?.collect()
    }

    #[test]
    fn csv_cells_convert_by_column() {
        let rows = csv_text(
            "system_name,common_name,subject_alternative_name,certificate_authority,host_platform,port,certificate_validation,settings\n\
             a,a.test,a.test;b.test,internal,files,443,false,\"{\"\"cert_path\"\":\"\"/x\"\"}\"\n\
             b,b.test,,internal,files,http,true,\n",
        )
        .unwrap();
        let a = rows[0].as_ref().unwrap();
        assert_eq!(a.subject_alternative_name, vec!["a.test", "b.test"]);
        assert_eq!(a.port, Some(443));
        assert!(!a.certificate_validation);
        assert_eq!(a.settings.as_ref().unwrap()["cert_path"], "/x");
        let err = rows[1].as_ref().unwrap_err();
        assert_eq!((err.row, err.error.field), (2, "port"));
    }

    #[test]
    fn csv_errors_name_the_missing_column_and_quote_bad_dates() {
        let rows = csv_text(
            "system_name,certificate_authority,host_platform,certificate_expiration\n\
             a,internal,local,2027-13-01\n\
             b,internal,local,\n",
        )
        .unwrap();
        let missing = rows[1].as_ref().unwrap_err();
        assert_eq!(missing.error.field, "common_name");
        assert_eq!(
            missing.to_string(),
            "row 2 (b): field `common_name`: required, but the column is missing or the cell is empty"
        );
        let rows = csv_text(
            "system_name,common_name,certificate_authority,host_platform,certificate_expiration\n\
             a,a.test,internal,local,2027-13-01\n",
        )
        .unwrap();
        let date = rows[0].as_ref().unwrap_err().to_string();
        assert!(
            date.starts_with(
                "row 1 (a): field `certificate_expiration`: \"2027-13-01\" is not a date and time in RFC 3339"
            ),
            "{date}"
        );
        assert!(date.contains("2027-01-31T00:00:00Z"), "{date}");
    }

    #[test]
    fn json_errors_name_row_and_field() {
        let rows = from_json(r#"[{"system_name":"a","common_name":"a.test","certificate_authority":"internal","host_platform":"x","port":"443"},
                                 {"system_name":"b","common_name":"b.test","certificate_authority":"internal","host_platform":"x","prot":1}]"#).unwrap();
        let e0 = rows[0].as_ref().unwrap_err();
        assert_eq!((e0.row, e0.error.field), (1, "port"));
        let e1 = rows[1].as_ref().unwrap_err();
        assert!(e1.to_string().contains("row 2 (b)") && e1.to_string().contains("prot"), "{e1}");
    }
}
