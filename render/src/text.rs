//! Text for PDF output: WinAnsi-safe strings, Helvetica widths, truncation to a width,
//! the text form of JSON cell values, and capitalised labels.

use std::borrow::Cow;

use serde_json::Value;

/// The two faces reports use (the PDF built-in Helvetica, no embedding needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Font {
    Regular,
    Bold,
}

/// Marks text that did not fit its box.
pub(crate) const ELLIPSIS: &str = "...";

/// Advance widths (1/1000 em) of ASCII 0x20..=0x7E, from Adobe's Helvetica AFM.
#[rustfmt::skip]
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // '0'..'?'
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // '@'..'O'
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // 'P'..'_'
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // '`'..'o'
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,      // 'p'..'~'
];

/// Advance widths (1/1000 em) of ASCII 0x20..=0x7E, from Adobe's Helvetica-Bold AFM.
#[rustfmt::skip]
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // '0'..'?'
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // '@'..'O'
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // 'P'..'_'
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // '`'..'o'
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,      // 'p'..'~'
];

/// Width of `c` in 1/1000 em. Non-ASCII WinAnsi characters use an average width: close
/// enough for accented letters, generous for the few wide symbols.
fn char_width(c: char, font: Font) -> u16 {
    let table = match font {
        Font::Regular => &HELVETICA,
        Font::Bold => &HELVETICA_BOLD,
    };
    match c {
        ' '..='~' => table[c as usize - 0x20],
        '\u{2026}' | '\u{2014}' | '\u{2030}' | '\u{0152}' | '\u{0153}' | '\u{2122}' => 1000,
        _ => 600,
    }
}

/// True when the built-in fonts' WinAnsi encoding has `c` (PDF 32000-1 Annex D.2).
fn is_win_ansi(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7E | 0xA0..=0xFF)
        || matches!(
            c,
            '\u{20AC}'
                | '\u{201A}'
                | '\u{0192}'
                | '\u{201E}'
                | '\u{2026}'
                | '\u{2020}'
                | '\u{2021}'
                | '\u{02C6}'
                | '\u{2030}'
                | '\u{0160}'
                | '\u{2039}'
                | '\u{0152}'
                | '\u{017D}'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201C}'
                | '\u{201D}'
                | '\u{2022}'
                | '\u{2013}'
                | '\u{2014}'
                | '\u{02DC}'
                | '\u{2122}'
                | '\u{0161}'
                | '\u{203A}'
                | '\u{0153}'
                | '\u{017E}'
                | '\u{0178}'
        )
}

/// The character a PDF shows for `c`: whitespace and control characters become a space
/// (a cell is one line), characters WinAnsi lacks become `?`.
fn pdf_char(c: char) -> char {
    if c.is_whitespace() || c.is_control() {
        ' '
    } else if is_win_ansi(c) {
        c
    } else {
        '?'
    }
}

/// Width of `text` in points once made PDF-safe.
pub(crate) fn text_width(text: &str, font: Font, size: f32) -> f32 {
    let units: u64 = text
        .chars()
        .map(|c| u64::from(char_width(pdf_char(c), font)))
        .sum();
    units as f32 * size / 1000.0
}

/// Width of `text` in points, but stops measuring once it exceeds `cap` (so a megabyte
/// cell costs no more than a short one).
pub(crate) fn text_width_capped(text: &str, font: Font, size: f32, cap: f32) -> f32 {
    let cap_units = (cap.max(0.0) * 1000.0 / size.max(0.1)) as u64;
    let mut units = 0u64;
    for c in text.chars() {
        units += u64::from(char_width(pdf_char(c), font));
        if units > cap_units {
            break;
        }
    }
    units as f32 * size / 1000.0
}

/// `text` made PDF-safe and cut to at most `max_width` points, ending in `...` when cut.
/// When not even the ellipsis fits, as many characters as fit (possibly none).
pub(crate) fn fit(text: &str, font: Font, size: f32, max_width: f32) -> String {
    let limit = (max_width.max(0.0) * 1000.0 / size.max(0.1)) as u64;
    let ellipsis: u64 = ELLIPSIS
        .chars()
        .map(|c| u64::from(char_width(c, font)))
        .sum();

    let mut out = String::new();
    let mut used = 0u64;
    // Length of `out` (bytes) at the last point where `out + ...` still fitted.
    let mut cut_at: Option<usize> = if ellipsis <= limit { Some(0) } else { None };
    let mut fallback = 0usize; // Length of the longest prefix that fits without an ellipsis.
    for c in text.chars().map(pdf_char) {
        let w = u64::from(char_width(c, font));
        if used + w > limit {
            return match cut_at {
                Some(at) => {
                    out.truncate(at);
                    out.push_str(ELLIPSIS);
                    out
                }
                None => {
                    out.truncate(fallback);
                    out
                }
            };
        }
        used += w;
        out.push(c);
        fallback = out.len();
        if used + ellipsis <= limit {
            cut_at = Some(out.len());
        }
    }
    out
}

/// The text of a JSON value in a CSV or PDF cell: strings as they are, `null` as nothing,
/// arrays and objects as compact JSON.
pub(crate) fn cell_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Null => Cow::Borrowed(""),
        Value::String(s) => Cow::Borrowed(s),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Array(_) | Value::Object(_) => Cow::Owned(value.to_string()),
    }
}

/// `s` with its first character upper-cased, for labels such as report types and statuses.
pub(crate) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn widths_follow_helvetica_metrics() {
        assert_eq!(text_width("", Font::Regular, 10.0), 0.0);
        // "Hi" = H 722 + i 222 at 10 pt.
        assert!((text_width("Hi", Font::Regular, 10.0) - 9.44).abs() < 1e-4);
        assert!(text_width("Hi", Font::Bold, 10.0) > text_width("Hi", Font::Regular, 10.0));
        assert!(text_width_capped(&"x".repeat(1_000_000), Font::Regular, 10.0, 50.0) < 60.0);
    }

    #[test]
    fn fit_keeps_short_text_and_cuts_long_text_with_an_ellipsis() {
        assert_eq!(fit("short", Font::Regular, 8.0, 100.0), "short");
        let cut = fit(&"abcdefghij".repeat(100), Font::Regular, 8.0, 60.0);
        assert!(cut.ends_with("..."), "{cut}");
        assert!(text_width(&cut, Font::Regular, 8.0) <= 60.0);
        assert!(cut.len() > 5, "{cut}");
    }

    #[test]
    fn fit_never_exceeds_tiny_widths() {
        assert_eq!(fit("abc", Font::Regular, 8.0, 0.0), "");
        assert_eq!(fit("", Font::Regular, 8.0, -5.0), "");
        let tiny = fit("abcdef", Font::Regular, 8.0, 6.0);
        assert!(text_width(&tiny, Font::Regular, 8.0) <= 6.0, "{tiny}");
    }

    #[test]
    fn text_is_made_win_ansi_safe() {
        assert_eq!(
            fit("Zoë\tcafé\n日本 — €", Font::Regular, 8.0, 1000.0),
            "Zoë café ?? — €"
        );
    }

    #[test]
    fn cells_render_json_values() {
        assert_eq!(cell_text(&json!(null)), "");
        assert_eq!(cell_text(&json!("a,b")), "a,b");
        assert_eq!(cell_text(&json!(1.5)), "1.5");
        assert_eq!(cell_text(&json!(true)), "true");
        assert_eq!(cell_text(&json!({"a": [1, 2]})), r#"{"a":[1,2]}"#);
    }
}
