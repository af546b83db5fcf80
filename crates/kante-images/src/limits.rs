//! Caps on what unpacking or packing an archive may cost: bytes written
//! (a decompression bomb, a backup bigger than the disk) and time.
//!
//! The defaults follow the disk: an import may unpack at most the free
//! space of the target's filesystem minus a reserve, a backup may hold at
//! most the free space of the backups filesystem minus a reserve; both get
//! six hours. Environment variables of `kanted` override them:
//! `KANTE_MAX_IMPORT_BYTES`, `KANTE_MAX_IMPORT_SECONDS`,
//! `KANTE_MAX_BACKUP_BYTES`, `KANTE_MAX_BACKUP_SECONDS` (plain numbers;
//! bytes also take `KiB`/`MiB`/`GiB`/`TiB` suffixes).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::ImageError;

/// Default time cap of an import or a backup.
pub const DEFAULT_SECONDS: u64 = 6 * 3600;
/// Never keep less than this free, whatever the filesystem's size.
const MIN_RESERVE: u64 = 64 << 20;
/// At most this much is held back on big filesystems.
const MAX_RESERVE: u64 = 2 << 30;

/// How much an archive operation may write, and for how long it may run.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Most bytes the operation may write.
    pub max_bytes: Option<u64>,
    /// Where `max_bytes` comes from, for error messages (say,
    /// "KANTE_MAX_IMPORT_BYTES" or "the free space of /var/lib/kante").
    pub max_bytes_from: String,
    /// How long the operation may take.
    pub timeout: Option<Duration>,
}

impl Limits {
    /// No cap at all.
    pub fn none() -> Self {
        Limits::default()
    }

    /// An explicit byte cap (tests, callers that know better).
    pub fn bytes(max: u64, from: impl Into<String>) -> Self {
        Limits {
            max_bytes: Some(max),
            max_bytes_from: from.into(),
            timeout: None,
        }
    }

    /// Caps for unpacking an image or a backup into `target` (a directory
    /// on the destination filesystem, which must exist).
    pub fn import_into(target: &Path) -> Result<Self, ImageError> {
        Limits::from_env_or_disk(target, "KANTE_MAX_IMPORT_BYTES", "KANTE_MAX_IMPORT_SECONDS")
    }

    /// Caps for writing a backup into `dir` (which must exist).
    pub fn backup_into(dir: &Path) -> Result<Self, ImageError> {
        Limits::from_env_or_disk(dir, "KANTE_MAX_BACKUP_BYTES", "KANTE_MAX_BACKUP_SECONDS")
    }

    fn from_env_or_disk(dir: &Path, bytes_var: &str, secs_var: &str) -> Result<Self, ImageError> {
        let (max_bytes, max_bytes_from) = match env_value(bytes_var, parse_bytes)? {
            Some(v) => (v, bytes_var.to_string()),
            None => (
                usable_space(dir)?,
                format!(
                    "the free space of the filesystem of {} minus a reserve; {bytes_var} overrides it",
                    dir.display()
                ),
            ),
        };
        let secs = env_value(secs_var, |s| s.trim().parse::<u64>().ok())?;
        Ok(Limits {
            max_bytes: Some(max_bytes),
            max_bytes_from,
            timeout: Some(Duration::from_secs(secs.unwrap_or(DEFAULT_SECONDS))),
        })
    }

    /// What is left of these limits once `used` bytes are written, with
    /// the time left until `deadline`.
    pub(crate) fn less(&self, used: u64, deadline: &Deadline) -> Limits {
        Limits {
            max_bytes: self.max_bytes.map(|m| m.saturating_sub(used)),
            max_bytes_from: self.max_bytes_from.clone(),
            timeout: deadline.remaining(),
        }
    }

    /// The moment the operation must be over, counted from now.
    pub(crate) fn deadline(&self) -> Deadline {
        Deadline {
            at: self.timeout.map(|t| Instant::now() + t),
            timeout: self.timeout,
        }
    }

    /// The error for `what` going past `max_bytes`.
    pub(crate) fn too_large(&self, what: &str) -> ImageError {
        let max = self.max_bytes.unwrap_or(0);
        ImageError::TooLarge(format!(
            "{what} more than {} ({max} bytes), the limit ({})",
            human(max),
            self.max_bytes_from
        ))
    }

    /// Whether `n` bytes go past `max_bytes`.
    pub(crate) fn exceeded_by(&self, n: u64) -> bool {
        self.max_bytes.is_some_and(|m| n > m)
    }
}

/// The deadline of one operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Option<Instant>,
    timeout: Option<Duration>,
}

impl Deadline {
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    pub(crate) fn passed(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// Fails once the deadline has passed.
    pub(crate) fn check(&self, what: &str) -> Result<(), ImageError> {
        if self.passed() {
            Err(self.error(what))
        } else {
            Ok(())
        }
    }

    pub(crate) fn error(&self, what: &str) -> ImageError {
        let secs = self.timeout.map(|t| t.as_secs()).unwrap_or(0);
        ImageError::TimedOut(format!("{what} took longer than {secs} s"))
    }
}

fn env_value<T>(var: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, ImageError> {
    match std::env::var(var) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => parse(&v)
            .map(Some)
            .ok_or_else(|| ImageError::InvalidLimit(format!("{var}={v:?} is not a number"))),
        Err(_) => Ok(None),
    }
}

/// `123`, `64MiB`, `2 GiB`, `1TiB`, `500KiB` (also `K`, `M`, `G`, `T`).
pub(crate) fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Free space of `dir`'s filesystem (that of its nearest existing
/// ancestor) minus a reserve: 5% of its size, between 64 MiB and 2 GiB.
pub(crate) fn usable_space(dir: &Path) -> Result<u64, ImageError> {
    let existing = dir
        .ancestors()
        .find(|a| a.symlink_metadata().is_ok())
        .unwrap_or(dir);
    let st = statvfs_of(existing)?;
    let free = st.0;
    let reserve = (st.1 / 20).clamp(MIN_RESERVE, MAX_RESERVE);
    Ok(free.saturating_sub(reserve))
}

/// (available bytes, total bytes) of the filesystem holding `dir`.
fn statvfs_of(dir: &Path) -> Result<(u64, u64), ImageError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| ImageError::io(format!("statvfs {}", dir.display()), e.into()))?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(ImageError::io(
            format!("statvfs {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// `1.5 GiB`-style sizes for messages.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes(" 2 GiB "), Some(2 << 30));
        assert_eq!(parse_bytes("1T"), Some(1 << 40));
        assert_eq!(parse_bytes("12 apples"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("99999999999999TiB"), None);
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }

    #[test]
    fn free_space_keeps_a_reserve() {
        let t = tempfile::tempdir().unwrap();
        let (avail, total) = statvfs_of(t.path()).unwrap();
        let usable = usable_space(t.path()).unwrap();
        assert!(usable <= avail.saturating_sub(MIN_RESERVE.min(total)));
        // A directory still to be made: its nearest existing ancestor's filesystem.
        let later = usable_space(&t.path().join("not/yet")).unwrap();
        assert!(later <= avail);
        assert!(statvfs_of(Path::new("/nonexistent/x")).is_err());
    }

    #[test]
    fn caps_and_messages() {
        let l = Limits::bytes(1000, "KANTE_MAX_IMPORT_BYTES");
        assert!(!l.exceeded_by(1000));
        assert!(l.exceeded_by(1001));
        let e = l.too_large("the archive unpacks to").to_string();
        assert!(e.contains("KANTE_MAX_IMPORT_BYTES"), "{e}");
        assert!(e.contains("1000 bytes"), "{e}");
        assert!(!Limits::none().exceeded_by(u64::MAX));
        assert!(!Limits::none().deadline().passed());
        let zero = Limits {
            timeout: Some(Duration::ZERO),
            ..Limits::none()
        };
        let d = zero.deadline();
        assert!(d.passed());
        assert!(matches!(d.check("x"), Err(ImageError::TimedOut(_))));
    }
}
