//! Parsing and printing of the human units that task files use: durations (`90s`, `10m`, `4h`,
//! `1h30m`) and byte sizes (`512MiB`, `2GiB`, `1GB`), and the clock every module stamps times
//! with ([`now`], Unix seconds). Pure functions otherwise; no I/O.

use std::time::Duration;

/// Seconds since the Unix epoch: what the store and the pages keep times in.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A duration or size that does not read, with the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("expected a duration like 30s, 10m, 1h30m or 4h, got {0:?}")]
    Duration(String),
    #[error("expected a size like 512MiB, 2GiB or 1GB, got {0:?}")]
    Size(String),
}

/// Parses `30s`, `10m`, `4h`, `1h30m`, `500ms`, `2d`. A bare number is refused: its unit would be a guess.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let expected = || UnitError::Duration(text.to_string());
    let text = text.trim();
    if text.is_empty() {
        return Err(expected());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(expected)?;
        if number_len == 0 {
            return Err(expected());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| expected())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(expected()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * seconds_per_unit);
    }
    Ok(total)
}

/// Parses `512MiB`, `2GiB`, `1.5GB`, `64KiB`, `100B`. Binary (KiB, MiB, GiB) and decimal
/// (KB, MB, GB) units; a bare number is refused.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let expected = || UnitError::Size(text.to_string());
    let text = text.trim();
    let number_len = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(expected)?;
    if number_len == 0 {
        return Err(expected());
    }
    let number: f64 = text[..number_len].parse().map_err(|_| expected())?;
    let multiplier: f64 = match text[number_len..].trim() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return Err(expected()),
    };
    Ok((number * multiplier).round() as u64)
}

/// Prints a byte count with a binary unit, for messages: `1.5 GiB`, `300 KiB`, `12 B`.
/// `1 step`, `3 steps`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value >= 100.0 || value.fract() < 0.05 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Prints a duration the way task files write it: `90s` as `1m30s`, `4h`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 1000 != 0 {
        return format!("{:.3}s", duration.as_secs_f64());
    }
    let mut seconds = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "10", "10 minutes", "m", "-5s", "1h 30m", "5x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.500s");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        for bad in ["", "2", "2 gigs", "GiB", "2gib"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(2 << 30), "2 GiB");
    }
}
