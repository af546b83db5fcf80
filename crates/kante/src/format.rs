//! Sizes and dates written the way lxc writes them.

use kante_api::Timestamp;

/// lxc's `GetByteSizeString`: decimal units (`736B`, `2.13kB`, `96.27MB`).
pub fn size_decimal(bytes: i64) -> String {
    scaled(bytes, 1000.0, &["kB", "MB", "GB", "TB", "PB", "EB"])
}

/// lxc's `GetByteSizeStringIEC`: binary units (`26.71MiB`).
pub fn size_iec(bytes: i64) -> String {
    scaled(bytes, 1024.0, &["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"])
}

fn scaled(bytes: i64, base: f64, units: &[&str]) -> String {
    if (bytes as f64) < base {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    for unit in units {
        value /= base;
        if value < base {
            return format!("{value:.2}{unit}");
        }
    }
    format!("{value:.2}{}", units[units.len() - 1])
}

/// `lxc image list` / `image info` sizes: MiB labelled "MB" (what lxc 5.0 prints).
pub fn image_size(bytes: i64) -> String {
    format!("{:.2}MB", bytes as f64 / 1024.0 / 1024.0)
}

/// LXD writes "never" as year 1 (and sometimes as the Unix epoch).
pub fn is_never(ts: &Timestamp) -> bool {
    ts.timestamp() <= 0
}

/// `2026/11/22 13:15 UTC`; empty for "never".
pub fn date_short(ts: &Timestamp) -> String {
    if is_never(ts) {
        return String::new();
    }
    ts.format("%Y/%m/%d %H:%M UTC").to_string()
}

/// `Nov 22, 2026 at 12:15pm (UTC)` as in `lxc image list`.
pub fn date_upload(ts: &Timestamp) -> String {
    ts.format("%b %-d, %Y at %-I:%M%P (UTC)").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn sizes_like_lxc() {
        assert_eq!(size_decimal(736), "736B");
        assert_eq!(size_decimal(2130), "2.13kB");
        assert_eq!(size_iec(28_008_448), "26.71MiB");
        assert_eq!(size_iec(68_200_000), "65.04MiB");
        assert_eq!(image_size(100_949_597), "96.27MB");
    }

    #[test]
    fn dates_like_lxc() {
        assert_eq!(
            date_short(&ts("2026-11-22T13:15:04.671Z")),
            "2026/11/22 13:15 UTC"
        );
        assert_eq!(date_short(&ts("1970-01-01T00:00:00Z")), "");
        assert_eq!(date_short(&kante_api::zero_time()), "");
        assert_eq!(
            date_upload(&ts("2026-11-22T12:15:48Z")),
            "Nov 22, 2026 at 12:15pm (UTC)"
        );
        assert_eq!(
            date_upload(&ts("2026-01-02T03:04:00Z")),
            "Jan 2, 2026 at 3:04am (UTC)"
        );
    }
}
