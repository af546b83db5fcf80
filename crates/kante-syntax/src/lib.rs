//! LXD's value syntaxes and the kernel's text formats that every crate reads
//! the same way: byte sizes as LXD writes them (`size=20GiB`, `500MB`,
//! `1073741824`) and mountinfo's octal escapes. No dependencies, so the
//! runtime, storage, network and image crates, the engine and the test
//! harness all share one parser.

use std::fmt;

/// A value that is not in the syntax asked for; the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses a byte size: a plain number of bytes, or a number (a decimal
/// fraction is allowed) followed by a decimal unit (`kB`, `MB`, `GB`, `TB`,
/// `PB`, `EB`, or `K`…`E`) or a binary one (`KiB`, `MiB`, `GiB`, `TiB`,
/// `PiB`, `EiB`); `B` means bytes. Spaces around the unit are allowed. A
/// fraction is exact (rounded down), never through floating point.
pub fn parse_size(s: &str) -> Result<u64, SyntaxError> {
    let bad = |why: &str| SyntaxError(format!("invalid size {s:?}: {why}"));
    let t = s.trim();
    let end = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(t.len());
    let (number, unit) = (&t[..end], t[end..].trim());
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad("expected a number followed by an optional unit"));
    }
    let factor: u64 = match unit {
        "" | "B" => 1,
        "kB" | "KB" | "k" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "TB" | "T" => 1_000_000_000_000,
        "PB" | "P" => 1_000_000_000_000_000,
        "EB" | "E" => 1_000_000_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "PiB" => 1 << 50,
        "EiB" => 1 << 60,
        _ => return Err(bad(&format!("unknown unit {unit:?}"))),
    };
    match number.split_once('.') {
        None => {
            let n: u64 = number.parse().map_err(|_| bad("number too large"))?;
            n.checked_mul(factor).ok_or_else(|| bad("too large"))
        }
        Some((int, frac)) => {
            if frac.contains('.') {
                return Err(bad("expected a number followed by an optional unit"));
            }
            let int: u64 = int.parse().map_err(|_| bad("number too large"))?;
            let whole = int.checked_mul(factor).ok_or_else(|| bad("too large"))?;
            // The fraction, exactly: frac / 10^len of `factor`, rounded down.
            let digits = &frac[..frac.len().min(18)];
            let num: u128 = digits.parse().map_err(|_| bad("invalid fraction"))?;
            let part = num * factor as u128 / 10u128.pow(digits.len() as u32);
            whole
                .checked_add(u64::try_from(part).map_err(|_| bad("too large"))?)
                .ok_or_else(|| bad("too large"))
        }
    }
}

/// Writes a byte count the short way LXD does: the largest binary unit that
/// divides it exactly (`5GiB`, `1536MiB`), else plain bytes.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("EiB", 60),
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    if bytes == 0 {
        return "0B".into();
    }
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift && bytes & ((1 << shift) - 1) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// Undoes mountinfo's octal escapes (`\040` for a space; also tab, newline
/// and backslash): the raw bytes of the path.
pub fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// A mountinfo path field as a path.
pub fn mountinfo_path(s: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(unescape_mountinfo(s)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("10B").unwrap(), 10);
        assert_eq!(parse_size("5GiB").unwrap(), 5 << 30);
        assert_eq!(parse_size(" 5 GiB ").unwrap(), 5 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("2kB").unwrap(), 2000);
        assert_eq!(parse_size("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("0.25KiB").unwrap(), 256);
        assert_eq!(parse_size("1EiB").unwrap(), 1 << 60);
        for bad in [
            "",
            "GiB",
            "-1",
            "1.2.3GiB",
            "1XB",
            "1gib",
            ".5GiB",
            "5.GiB",
            "16EiB",
            "1 2",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_size("3XB").unwrap_err().to_string();
        assert!(e.contains("unknown unit") && e.contains("XB"), "{e}");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(5 << 30), "5GiB");
        assert_eq!(format_size(1536 << 20), "1536MiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(0), "0B");
        for n in [1u64 << 30, 123456789, 7 << 40] {
            assert_eq!(parse_size(&format_size(n)).unwrap(), n);
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo("/x\\134y\\011z"), b"/x\\y\tz");
        // Not an escape: left as is.
        assert_eq!(unescape_mountinfo("/a\\04"), b"/a\\04");
        assert_eq!(unescape_mountinfo("/a\\9xy"), b"/a\\9xy");
        // Non-ASCII bytes pass through untouched.
        assert_eq!(
            mountinfo_path("/d\\303\\251j\\303\\240"),
            std::path::PathBuf::from("/déjà")
        );
    }
}
