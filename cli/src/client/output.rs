//! Printing: the API's JSON as it is for `--output json`, compact tables and lines for
//! people. Standard output carries results only; messages and progress go to standard
//! error, so `quire … --output json | jq` always sees one JSON document.

use std::io::Write;

use serde_json::Value;

use super::error::Error;

/// Writes `text` to standard output (an error, not a panic, when the pipe is closed).
pub fn print(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("writing to standard output", e))
}

/// One JSON document on standard output, pretty-printed.
pub fn print_json(value: &Value) -> Result<(), Error> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| Error::io("encoding JSON", e.into()))?;
    text.push('\n');
    print(&text)
}

/// A message for the person at the terminal, on standard error.
pub fn note(text: &str) {
    let mut stderr = std::io::stderr().lock();
    // Nothing sensible to do if standard error is gone.
    let _ = writeln!(stderr, "{text}");
}

/// A JSON value as one table cell: strings bare, `null` as `-`, arrays joined with `,`,
/// times as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => time(s).unwrap_or_else(|| s.clone()),
        Value::Array(items) => {
            let cells: Vec<String> = items.iter().map(cell).collect();
            if cells.is_empty() {
                "-".to_owned()
            } else {
                cells.join(",")
            }
        }
        other => other.to_string(),
    }
}

/// An RFC 3339 time as people read it, in UTC; `None` for anything else.
fn time(text: &str) -> Option<String> {
    // Only strings shaped like a time: a report type named `2024` stays as it is.
    if text.len() < 20 || text.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(
        at.with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
    )
}

/// A table with a header row, columns padded to their widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A row of `keys` looked up in `item`.
    pub fn row_of(&mut self, item: &Value, keys: &[&str]) {
        self.row(keys.iter().map(|k| cell(&item[*k])).collect());
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, text) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(text);
                } else {
                    let pad = widths[c].saturating_sub(text.chars().count());
                    line.push_str(text);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `label  value` lines, labels aligned, for one object; absent and `null` fields are
/// left out.
pub fn details(item: &Value, fields: &[(&str, &str)]) -> String {
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, key) in fields {
        let value = &item[*key];
        if value.is_null() {
            continue;
        }
        out.push_str(&format!("{label:<width$}  {}\n", cell(value)));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cells_read_well() {
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!(42)), "42");
        assert_eq!(
            cell(&json!("2025-03-01T10:20:30.123456Z")),
            "2025-03-01 10:20:30"
        );
        assert_eq!(cell(&json!("profile")), "profile");
    }

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new(&["ID", "STATUS"]);
        table.row(vec!["a".into(), "completed".into()]);
        table.row(vec!["longer-id".into(), "queued".into()]);
        assert_eq!(
            table.render(),
            "ID         STATUS\na          completed\nlonger-id  queued\n"
        );
    }
}
