//! Parsing of LXD's value syntaxes: byte sizes, CPU sets, allowances.

use kante_syntax::SyntaxError;

/// A refusal naming the value, as the syntax's other parsers word it.
fn bad(msg: String) -> SyntaxError {
    SyntaxError(msg)
}

/// Parses a byte size in LXD's syntax (see `kante_syntax::parse_size`).
pub fn parse_size(s: &str) -> Result<u64, SyntaxError> {
    kante_syntax::parse_size(s)
}

/// A memory limit: a size or a percentage of host memory.
pub fn parse_memory_limit(s: &str, host_total: u64) -> Result<u64, SyntaxError> {
    if let Some(p) = s.trim().strip_suffix('%') {
        let pct: f64 = p
            .trim()
            .parse()
            .map_err(|_| bad(format!("invalid percentage {s:?}")))?;
        if !(0.0..=100.0).contains(&pct) || pct == 0.0 {
            return Err(bad(format!("memory percentage {s:?} must be in (0, 100]")));
        }
        return Ok((host_total as f64 * pct / 100.0) as u64);
    }
    let v = parse_size(s)?;
    if v == 0 {
        return Err(bad("memory limit must be above zero".into()));
    }
    Ok(v)
}

/// The highest CPU number a kernel can have (`NR_CPUS` is at most 8192).
/// Also what keeps `0-4000000000` from expanding into billions of entries.
pub const MAX_CPU: u32 = 8191;

/// A CPU set like `0-3,6`: the sorted, de-duplicated list of CPU numbers.
pub fn parse_cpu_set(s: &str) -> Result<Vec<u32>, SyntaxError> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad(format!("invalid CPU set {s:?}")));
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("invalid CPU set {s:?}")))?;
                let b: u32 = b
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("invalid CPU set {s:?}")))?;
                if a > b {
                    return Err(bad(format!("invalid CPU range {part:?} in {s:?}")));
                }
                if b > MAX_CPU {
                    return Err(bad(format!("CPU {b} in {s:?} is above {MAX_CPU}")));
                }
                cpus.extend(a..=b);
            }
            None => {
                let n: u32 = part
                    .parse()
                    .map_err(|_| bad(format!("invalid CPU set {s:?}")))?;
                if n > MAX_CPU {
                    return Err(bad(format!("CPU {n} in {s:?} is above {MAX_CPU}")));
                }
                cpus.push(n);
            }
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// `limits.cpu`: a count of CPUs, or an explicit set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuLimit {
    Count(u32),
    Set(Vec<u32>),
}

pub fn parse_cpu_limit(s: &str) -> Result<CpuLimit, SyntaxError> {
    let t = s.trim();
    if t.contains(['-', ',']) {
        return parse_cpu_set(t).map(CpuLimit::Set);
    }
    match t.parse::<u32>() {
        Ok(0) => Err(bad("limits.cpu must be at least 1".into())),
        Ok(n) => Ok(CpuLimit::Count(n)),
        Err(_) => Err(bad(format!("invalid limits.cpu {s:?}"))),
    }
}

/// `limits.cpu.allowance`: `50%` (a share) or `25ms/100ms` (a hard quota).
#[derive(Debug, Clone, PartialEq)]
pub enum CpuAllowance {
    Percent(f64),
    Quota { quota_us: u64, period_us: u64 },
}

pub fn parse_cpu_allowance(s: &str) -> Result<CpuAllowance, SyntaxError> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p
            .parse()
            .map_err(|_| bad(format!("invalid allowance {s:?}")))?;
        if v <= 0.0 || v > 100.0 {
            return Err(bad(format!("allowance {s:?} must be in (0%, 100%]")));
        }
        return Ok(CpuAllowance::Percent(v));
    }
    let (q, p) = t
        .split_once('/')
        .ok_or_else(|| bad(format!("invalid allowance {s:?} (use 50% or 25ms/100ms)")))?;
    let ms = |x: &str| -> Result<u64, SyntaxError> {
        let v: u64 = x
            .trim()
            .strip_suffix("ms")
            .ok_or_else(|| bad(format!("invalid allowance {s:?}")))?
            .parse()
            .map_err(|_| bad(format!("invalid allowance {s:?}")))?;
        v.checked_mul(1000)
            .ok_or_else(|| bad(format!("allowance {s:?} is too large")))
    };
    let (quota_us, period_us) = (ms(q)?, ms(p)?);
    if quota_us == 0 || period_us == 0 {
        return Err(bad(format!("allowance {s:?} must be above zero")));
    }
    Ok(CpuAllowance::Quota {
        quota_us,
        period_us,
    })
}

/// LXD's expiry syntax: a list of `<n><unit>` with units M (minutes), H, d, w, m (months), y.
pub fn parse_expiry(spec: &str) -> std::result::Result<Option<chrono::Duration>, SyntaxError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(None);
    }
    let mut total = chrono::Duration::zero();
    for part in spec.split_whitespace() {
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| bad(format!("invalid expiry {part:?}")))?;
        let (n, unit) = part.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| bad(format!("invalid expiry {part:?}")))?;
        total += match unit {
            "M" => chrono::Duration::minutes(n),
            "H" => chrono::Duration::hours(n),
            "d" => chrono::Duration::days(n),
            "w" => chrono::Duration::weeks(n),
            "m" => chrono::Duration::days(30 * n),
            "y" => chrono::Duration::days(365 * n),
            other => return Err(bad(format!("invalid expiry unit {other:?} in {spec:?}"))),
        };
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("16GB").unwrap(), 16_000_000_000);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_memory_limit("50%", 1000).unwrap(), 500);
        assert!(parse_memory_limit("0%", 1000).is_err());
        assert!(parse_memory_limit("150%", 1000).is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpu_limit("2").unwrap(), CpuLimit::Count(2));
        assert_eq!(parse_cpu_limit("0-1").unwrap(), CpuLimit::Set(vec![0, 1]));
        assert_eq!(
            parse_cpu_limit("0,2-3,2").unwrap(),
            CpuLimit::Set(vec![0, 2, 3])
        );
        assert!(parse_cpu_limit("0").is_err());
        assert!(parse_cpu_limit("3-1").is_err());
        assert!(parse_cpu_limit("x").is_err());
        assert_eq!(
            parse_cpu_allowance("50%").unwrap(),
            CpuAllowance::Percent(50.0)
        );
        assert_eq!(
            parse_cpu_allowance("25ms/100ms").unwrap(),
            CpuAllowance::Quota {
                quota_us: 25000,
                period_us: 100000
            }
        );
        assert!(parse_cpu_allowance("25/100").is_err());
        assert!(parse_cpu_allowance("0%").is_err());
    }

    /// Found by fuzzing (fuzz/fuzz_targets/sizes.rs): `0-388188818` took
    /// seconds and 1.5 GB to expand; a larger range exhausted memory.
    #[test]
    fn cpu_sets_past_the_kernels_last_cpu_are_refused_not_expanded() {
        assert!(parse_cpu_set("0-388188818,6,6").is_err());
        assert!(parse_cpu_limit("0-4294967295").is_err());
        assert!(parse_cpu_set("8192").is_err());
        assert_eq!(parse_cpu_set("8190-8191").unwrap(), vec![8190, 8191]);
    }

    /// Found by fuzzing: milliseconds past u64::MAX / 1000 overflowed
    /// (a panic in debug builds, a wrapped quota in release ones).
    #[test]
    fn cpu_allowance_too_large_for_microseconds_is_refused() {
        assert!(parse_cpu_allowance("77777777777777775ms/101ms").is_err());
        assert!(parse_cpu_allowance("25ms/18446744073709551615ms").is_err());
        assert_eq!(
            parse_cpu_allowance("18446744073709551ms/100ms").unwrap(),
            CpuAllowance::Quota {
                quota_us: 18446744073709551000,
                period_us: 100000
            }
        );
    }

    #[test]
    fn expiry_specs() {
        assert_eq!(parse_expiry("").unwrap(), None);
        assert_eq!(
            parse_expiry("2w").unwrap(),
            Some(chrono::Duration::weeks(2))
        );
        assert_eq!(
            parse_expiry("1d 12H").unwrap(),
            Some(chrono::Duration::hours(36))
        );
        assert!(parse_expiry("3x").is_err());
        assert!(parse_expiry("d").is_err());
    }
}
