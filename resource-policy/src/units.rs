//! The units of the `resource_*` directives: sizes (`512k`, `64m`, `1g`),
//! rates (a size per second, `10m` or `10m/s`), milliseconds, seconds and
//! load averages (two decimals).

/// A size in bytes: digits with an optional `k`, `m` or `g` (either case),
/// as nginx writes sizes. `None` when malformed or past `u64`.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&text[..text.len() - 1], 1 << 20),
        b'g' | b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    parse_digits(digits)?.checked_mul(unit)
}

/// A rate in bytes per second: a size, optionally followed by `/s`.
pub fn parse_rate(text: &str) -> Option<u64> {
    parse_size(text.strip_suffix("/s").unwrap_or(text))
}

/// A size for messages, as the directives write it (`32m`, `1g`, `1500`).
pub fn format_size(bytes: u64) -> String {
    for (unit, suffix) in [(1u64 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")] {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Milliseconds: digits, optionally followed by `ms`.
pub fn parse_ms(text: &str) -> Option<u64> {
    parse_digits(text.strip_suffix("ms").unwrap_or(text))
}

/// Seconds: digits with an optional `s`, `m` (minutes) or `h`.
pub fn parse_seconds(text: &str) -> Option<u64> {
    let (digits, unit) = match text.as_bytes().last()? {
        b's' => (&text[..text.len() - 1], 1u64),
        b'm' => (&text[..text.len() - 1], 60),
        b'h' => (&text[..text.len() - 1], 3600),
        _ => (text, 1),
    };
    parse_digits(digits)?.checked_mul(unit)
}

/// A load average in hundredths: `4`, `4.5`, `4.25` (at most two decimals).
pub fn parse_load(text: &str) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 2 || (text.contains('.') && frac.is_empty()) {
        return None;
    }
    let whole = parse_digits(whole)?;
    let frac = if frac.is_empty() { 0 } else { parse_digits(frac)? * if frac.len() == 1 { 10 } else { 1 } };
    whole.checked_mul(100)?.checked_add(frac)
}

/// Hundredths as a load average for messages (`4.50`).
pub fn format_load(hundredths: u64) -> String {
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// Only ASCII digits (no sign, no spaces), at most 19 of them.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        for bad in ["", "k", "-1", "1.5m", "1t", " 1", "1 ", "99999999999999999999", "17179869184g"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        let formatted: Vec<String> = [32 << 20, 2 << 30, 1536 << 10, 1500, 0].map(format_size).to_vec();
        assert_eq!(formatted, ["32m", "2g", "1536k", "1500", "0"]);
    }

    #[test]
    fn rates_ms_seconds() {
        assert_eq!(parse_rate("10m/s"), Some(10 << 20));
        assert_eq!(parse_rate("10m"), Some(10 << 20));
        assert_eq!(parse_rate("/s"), None);
        assert_eq!(parse_ms("250"), Some(250));
        assert_eq!(parse_ms("250ms"), Some(250));
        assert_eq!(parse_ms("2s"), None);
        assert_eq!(parse_seconds("30"), Some(30));
        assert_eq!(parse_seconds("30s"), Some(30));
        assert_eq!(parse_seconds("2m"), Some(120));
        assert_eq!(parse_seconds("1h"), Some(3600));
        assert_eq!(parse_seconds("1d"), None);
    }

    #[test]
    fn loads() {
        assert_eq!(parse_load("4"), Some(400));
        assert_eq!(parse_load("4.5"), Some(450));
        assert_eq!(parse_load("0.25"), Some(25));
        for bad in ["", ".", "4.", ".5", "4.123", "-1", "a", "4,5"] {
            assert_eq!(parse_load(bad), None, "{bad:?}");
        }
        assert_eq!(format_load(450), "4.50");
        assert_eq!(format_load(7), "0.07");
    }
}
