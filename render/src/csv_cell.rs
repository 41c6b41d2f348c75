//! Text of CSV cells that spreadsheet applications will not run as formulas.
//!
//! Excel, LibreOffice and Google Sheets treat a cell beginning with `=`, `+`, `-` or `@`
//! as a formula (and a leading tab or carriage return can hide one), so a CSV opened in
//! them can run `=HYPERLINK(...)` or worse from text an upstream or a user chose. OWASP's
//! remedy (<https://owasp.org/www-community/attacks/CSV_Injection>) is to prefix such
//! text cells with a single quote, which spreadsheets show as literal text. Every CSV
//! writer in this crate passes its text cells through [`escape_formula`].

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

use crate::text::cell_text;

/// The characters that make a spreadsheet read a cell as a formula.
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `text` as a CSV text cell: prefixed with `'` when it begins with a formula trigger
/// (`=`, `+`, `-`, `@`, tab or carriage return), else unchanged.
///
/// Only for text: a number written by this crate (say `-5`) must stay a number, so callers
/// pass numbers as they are (see [`json_cell`]).
pub(crate) fn escape_formula(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_TRIGGERS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The CSV cell of a JSON value: strings escaped with [`escape_formula`], numbers, booleans
/// and `null` as [`cell_text`] writes them, arrays and objects as compact JSON (which
/// begins with `[` or `{`, never a trigger).
pub(crate) fn json_cell(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => escape_formula(s),
        other => cell_text(other),
    }
}

/// Writes one record of cells made by [`escape_formula`] or [`json_cell`].
pub(crate) fn write_cells<'a, W: Write>(
    csv: &mut csv::Writer<W>,
    cells: impl IntoIterator<Item = Cow<'a, str>>,
) -> csv::Result<()> {
    for cell in cells {
        csv.write_field(cell.as_bytes())?;
    }
    // An empty record ends the one the fields above were written to.
    csv.write_record(None::<&[u8]>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_beginning_with_a_formula_trigger_is_quoted() {
        for text in [
            "=HYPERLINK(\"http://evil\",\"x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(escape_formula(text), format!("'{text}"), "{text:?}");
        }
    }

    #[test]
    fn other_text_is_unchanged() {
        for text in ["", "Chess", "a=b", "1-2", " =1", "'quoted", "Zoë"] {
            assert!(matches!(escape_formula(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn numbers_stay_numbers_but_numeric_looking_text_is_escaped() {
        assert_eq!(json_cell(&json!(-5)), "-5");
        assert_eq!(json_cell(&json!(-2.5)), "-2.5");
        assert_eq!(json_cell(&json!("-5")), "'-5");
        assert_eq!(json_cell(&json!("+5")), "'+5");
        assert_eq!(json_cell(&json!(null)), "");
        assert_eq!(json_cell(&json!(true)), "true");
        assert_eq!(json_cell(&json!(["=1"])), r#"["=1"]"#);
    }
}
