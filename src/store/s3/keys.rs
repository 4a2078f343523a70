//! Where DataJoint puts an object in a bucket, and S3's time stamps: pure text.

/// The key prefix DataJoint derives from `location` for S3: the location
/// without its root or drive, normalized as `pathlib` does (no empty or `.`
/// components, no trailing `/`), `\` read as `/` as `PureWindowsPath` does.
pub fn location_prefix(location: &str) -> String {
    let s = location.replace('\\', "/");
    let b = s.as_bytes();
    let s = if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' { &s[2..] } else { &s[..] };
    s.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/")
}

/// The key an object is written under, and the second key it may have been
/// written under: DataJoint clients on Python ≥ 3.12 keep a leading `/` of
/// the location in the key (older ones strip it), so when the location
/// starts with `/` readers also look under `/<key>`.
pub fn object_keys(location: &str, relative: &str) -> (String, Option<String>) {
    let prefix = location_prefix(location);
    let key = if prefix.is_empty() { relative.to_string() } else { format!("{prefix}/{relative}") };
    let rooted = location.starts_with('/').then(|| format!("/{key}"));
    (key, rooted)
}

/// Seconds since the epoch of an S3 timestamp (`2026-11-25T12:00:00.000Z`).
pub fn parse_time(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.as_bytes().get(4) != Some(&b'-') || s.as_bytes().get(10) != Some(&b'T') || !(1..=12).contains(&m) {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}
