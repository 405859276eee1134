//! Durations as people write them on a command line or in a setting.

use std::time::Duration;

/// `90`, `90s`, `5m`, `1h`, `250ms`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let invalid = || format!("invalid duration {text:?}: use e.g. 90s, 5m or 1h");
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(invalid()),
    };
    if duration.is_zero() {
        return Err(format!(
            "invalid duration {text:?}: it must be more than zero"
        ));
    }
    Ok(duration)
}

/// A duration as [`parse`] reads it back (`2m`, `90s`, `250ms`), for the
/// defaults that help text shows; kept for the life of the process, as clap
/// keeps the defaults it formats itself.
pub fn text(duration: Duration) -> &'static str {
    let text = match (duration.subsec_millis(), duration.as_secs()) {
        (0, secs) if secs % 3600 == 0 && secs > 0 => format!("{}h", secs / 3600),
        (0, secs) if secs % 60 == 0 && secs > 0 => format!("{}m", secs / 60),
        (0, secs) => format!("{secs}s"),
        _ => format!("{}ms", duration.as_millis()),
    };
    Box::leak(text.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse("0").unwrap_err().contains("more than zero"));
        assert!(parse("soon")
            .unwrap_err()
            .contains("invalid duration \"soon\""));
        assert!(parse("5d").is_err());
        assert_eq!(
            parse("18446744073709551615h"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn text_reads_back_as_the_same_duration() {
        for duration in [120, 90, 3600, 1].map(Duration::from_secs) {
            assert_eq!(super::parse(super::text(duration)), Ok(duration));
        }
        assert_eq!(super::text(Duration::from_secs(120)), "2m");
        assert_eq!(super::text(Duration::from_millis(250)), "250ms");
    }
}
