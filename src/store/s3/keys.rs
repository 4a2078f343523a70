//! Where DataJoint puts an object in a bucket, and S3's time stamps: pure text.
//!
//! DataJoint 0.14 makes an object's S3 key from the store's `location` and
//! the object's relative key with `PurePosixPath(PureWindowsPath(location))`,
//! dropping the first part when it holds `\` or `:` (a root or a drive;
//! `ExternalTable._make_external_filepath`). Python 3.12 changed how a
//! Windows path becomes a POSIX one, so clients on Python ≤ 3.11 and ≥ 3.12
//! can disagree: the older ones drop any Windows root, drive or UNC share
//! (`/dj/x` → `dj/x/…`, `//server/share/x` → `x/…`); the newer ones read `\`
//! as `/`, keep a POSIX root (`/dj/x` → `/dj/x/…`, `//server/share/x` →
//! `//server/share/x/…`) and drop only a first component holding `:`
//! (`C:dj` → `…`). `scripts/s3_key_table.py` shows both for a table of
//! locations.

/// The key prefix Python ≤ 3.11 clients derive from `location` (no root, no
/// trailing `/`), or `None` where DataJoint fails on the location (one made
/// of `.` components only).
fn prefix_until_py311(location: &str) -> Option<String> {
    if location.is_empty() {
        return Some(String::new());
    }
    let (anchored, rest) = windows_split_root(&location.replace('/', "\\"));
    let mut parts: Vec<&str> = rest.split('\\').filter(|c| !c.is_empty() && *c != ".").collect();
    // Without a drive or root the first part is a component: dropped when it has a ':'.
    if !anchored && parts.first()?.contains(':') {
        parts.remove(0);
    }
    Some(parts.join("/"))
}

/// `PureWindowsPath`'s split of a path (`\` separators) as Python 3.8 to
/// 3.11 make it (`_WindowsFlavour.splitroot`): whether it has a drive or a
/// root (which DataJoint then drops), and the rest.
fn windows_split_root(path: &str) -> (bool, String) {
    let mut extended = false;
    let mut part = path.to_string();
    if let Some(rest) = path.strip_prefix("\\\\?\\") {
        extended = true;
        part = match rest.strip_prefix("UNC\\") {
            Some(unc) => format!("\\\\{unc}"),
            None => rest.to_string(),
        };
    }
    let b = part.as_bytes();
    let (first, second, third) = (b.first().copied(), b.get(1).copied(), b.get(2).copied());
    if first == Some(b'\\') && second == Some(b'\\') && third != Some(b'\\') {
        // \\server\share\rest: the share is the drive
        if let Some(index) = part[2..].find('\\').map(|i| i + 2) {
            let index2 = part[index + 1..].find('\\').map(|i| i + index + 1);
            if index2 != Some(index + 1) {
                let index2 = index2.unwrap_or(part.len());
                return (true, part.get(index2 + 1..).unwrap_or("").to_string());
            }
        }
    }
    let (mut rest, mut first, mut drive) = (part.as_str(), first, false);
    if second == Some(b':') && first.is_some_and(|c| c.is_ascii_alphabetic()) {
        (rest, first, drive) = (&part[2..], third, true);
    }
    let root = first == Some(b'\\');
    if root {
        rest = rest.trim_start_matches('\\');
    }
    (extended || drive || root, rest.to_string())
}

/// What Python ≥ 3.12 clients put before the relative key: the location
/// with `\` read as `/`, its POSIX root (`/`, or exactly `//`) kept, empty
/// and `.` components dropped, and a first component holding `:` dropped when
/// there is no root; `None` where DataJoint fails on the location.
fn prefix_from_py312(location: &str) -> Option<String> {
    if location.is_empty() {
        return Some(String::new());
    }
    let s = location.replace('\\', "/");
    let (root, rest) = match s.strip_prefix('/') {
        None => ("", s.as_str()),
        Some(r) if r.starts_with('/') && !r[1..].starts_with('/') => ("//", &r[1..]),
        Some(r) => ("/", r),
    };
    let mut parts: Vec<&str> = rest.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if root.is_empty() && parts.first()?.contains(':') {
        parts.remove(0);
    }
    Some(format!("{root}{}", parts.join("/")))
}

fn join(prefix: &str, relative: &str) -> String {
    match prefix {
        "" => relative.to_string(),
        p if p.ends_with('/') => format!("{p}{relative}"),
        p => format!("{p}/{relative}"),
    }
}

/// The key prefix the plugin writes under: Python ≤ 3.11's (see the module
/// doc), empty for a location DataJoint cannot use.
pub fn location_prefix(location: &str) -> String {
    prefix_until_py311(location).unwrap_or_default()
}

/// The key an object is written under (Python ≤ 3.11's), and the key Python
/// ≥ 3.12 clients give it when that one differs: readers look under both.
pub fn object_keys(location: &str, relative: &str) -> (String, Option<String>) {
    let written = join(&location_prefix(location), relative);
    let other = prefix_from_py312(location).map(|p| join(&p, relative)).filter(|k| *k != written);
    (written, other)
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

#[cfg(test)]
mod tests {
    use super::{location_prefix, object_keys};

    /// The keys of relative key `s/ab/cd/f` under each location: the key
    /// DataJoint 0.14.9 gives it on Python 3.11.7, and the one it gives on
    /// Python 3.12.1 where that differs. Produced by running DataJoint's own
    /// expression under both Pythons: `scripts/s3_key_table.py --rust
    /// python3.11 python3.12` prints these rows (3.8 to 3.11 agree, and so
    /// do 3.12 and 3.13). `None` as the first key: DataJoint fails on the
    /// location (IndexError).
    #[rustfmt::skip]
    const TABLE: &[(&str, Option<&str>, Option<&str>)] = &[
        ("dj/x", Some("dj/x/s/ab/cd/f"), None),
        ("/dj/x", Some("dj/x/s/ab/cd/f"), Some("/dj/x/s/ab/cd/f")),
        ("/dj/x/", Some("dj/x/s/ab/cd/f"), Some("/dj/x/s/ab/cd/f")),
        ("//dj//./x", Some("dj/x/s/ab/cd/f"), Some("//dj/x/s/ab/cd/f")),
        ("\\dj\\x", Some("dj/x/s/ab/cd/f"), Some("/dj/x/s/ab/cd/f")),
        ("\\dj", Some("dj/s/ab/cd/f"), Some("/dj/s/ab/cd/f")),
        ("C:\\dj\\x", Some("dj/x/s/ab/cd/f"), None),
        ("C:/dj", Some("dj/s/ab/cd/f"), None),
        ("C:dj", Some("dj/s/ab/cd/f"), Some("s/ab/cd/f")),
        ("c:", Some("s/ab/cd/f"), None),
        ("C:\\", Some("s/ab/cd/f"), None),
        ("/", Some("s/ab/cd/f"), Some("/s/ab/cd/f")),
        ("\\", Some("s/ab/cd/f"), Some("/s/ab/cd/f")),
        ("", Some("s/ab/cd/f"), None),
        (".", None, None),
        ("./", None, None),
        ("./dj", Some("dj/s/ab/cd/f"), None),
        ("dj\\x", Some("dj/x/s/ab/cd/f"), None),
        ("dj//x", Some("dj/x/s/ab/cd/f"), None),
        ("dj/x/.", Some("dj/x/s/ab/cd/f"), None),
        ("a/../b", Some("a/../b/s/ab/cd/f"), None),
        ("//", Some("s/ab/cd/f"), Some("//s/ab/cd/f")),
        ("///dj", Some("dj/s/ab/cd/f"), Some("/dj/s/ab/cd/f")),
        ("//server/share/x", Some("x/s/ab/cd/f"), Some("//server/share/x/s/ab/cd/f")),
        ("\\\\server\\share\\x", Some("x/s/ab/cd/f"), Some("//server/share/x/s/ab/cd/f")),
        ("//server/share", Some("s/ab/cd/f"), Some("//server/share/s/ab/cd/f")),
        ("\\\\server", Some("server/s/ab/cd/f"), Some("//server/s/ab/cd/f")),
        ("\\\\server\\\\share", Some("server/share/s/ab/cd/f"), Some("//server/share/s/ab/cd/f")),
        ("\\\\?\\C:\\dj", Some("dj/s/ab/cd/f"), Some("//?/C:/dj/s/ab/cd/f")),
        ("\\\\?\\UNC\\server\\share\\x", Some("x/s/ab/cd/f"), Some("//?/UNC/server/share/x/s/ab/cd/f")),
        ("//./C:/dj", Some("dj/s/ab/cd/f"), Some("//C:/dj/s/ab/cd/f")),
        ("/C:/dj", Some("C:/dj/s/ab/cd/f"), Some("/C:/dj/s/ab/cd/f")),
        ("dj:x/y", Some("y/s/ab/cd/f"), None),
        ("/dj:x", Some("dj:x/s/ab/cd/f"), Some("/dj:x/s/ab/cd/f")),
        (" /dj", Some(" /dj/s/ab/cd/f"), None),
        ("/dj/Ströme", Some("dj/Ströme/s/ab/cd/f"), Some("/dj/Ströme/s/ab/cd/f")),
    ];

    #[test]
    fn keys_under_both_python_lines() {
        for &(location, written, other) in TABLE {
            let got = object_keys(location, "s/ab/cd/f");
            match written {
                Some(w) => assert_eq!(got, (w.to_string(), other.map(str::to_string)), "location {location:?}"),
                // DataJoint cannot use such a store; the plugin writes the relative key as is.
                None => assert_eq!(got, ("s/ab/cd/f".to_string(), None), "location {location:?}"),
            }
            let prefix = location_prefix(location);
            let expected = written.map_or("", |w| w.strip_suffix("s/ab/cd/f").unwrap_or(w).trim_end_matches('/'));
            assert_eq!(prefix, expected, "prefix of {location:?}");
        }
    }
}
