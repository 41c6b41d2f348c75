//! Durations in settings: `500ms`, `30s`, `15m`, `1h`, `7d`, or plain seconds (`90`).

use std::time::Duration;

/// Parses a setting's duration (see the module docs). For clap's `value_parser`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!(
            "`{text}` is not a duration: expected a whole number and a unit, e.g. 30s, 15m, 1h, 7d"
        )
    })?;
    let seconds = |factor: u64| {
        number
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{text}` is too long a duration"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(60 * 60),
        "d" => seconds(24 * 60 * 60),
        other => Err(format!(
            "`{text}` has an unknown unit `{other}`: use ms, s, m, h or d"
        )),
    }
}

/// The largest whole unit that spells `duration` exactly: `7d`, `90s`, `1500ms`.
pub fn display(duration: Duration) -> String {
    let ms = duration.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s != 0 && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_seconds_parse() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse(" 2s "), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for bad in [
            "",
            "s",
            "-1s",
            "1.5s",
            "10x",
            "1 h",
            "99999999999999999999d",
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(
                error.contains("duration") || error.contains("unit"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn display_uses_the_largest_exact_unit() {
        assert_eq!(display(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(display(Duration::from_secs(5400)), "90m");
        assert_eq!(display(Duration::from_secs(90)), "90s");
        assert_eq!(display(Duration::from_millis(1500)), "1500ms");
        assert_eq!(display(Duration::ZERO), "0s");
        assert_eq!(
            parse(&display(Duration::from_secs(3600))),
            Ok(Duration::from_secs(3600))
        );
    }
}
