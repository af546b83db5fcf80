//! `instance_type` of a create request (`lxc launch -t c2-m4`): LXD's
//! `cCPU-mMEMORY` shorthand (CPUs, memory in GiB) turned into
//! `limits.cpu` and `limits.memory`, each only where the request's own
//! config does not set it. Named cloud types (`t2.micro`) need LXD's
//! downloaded table, which an edge host does not fetch: they are refused
//! by name.

use kante_api::instance::InstancesPost;

use crate::error::{EngineError, Result};

/// Applies `req.instance_type` to `req.put.config` (nothing when empty).
pub(crate) fn apply_instance_type(req: &mut InstancesPost) -> Result<()> {
    let kind = req.instance_type.trim();
    if kind.is_empty() || kind == "container" {
        return Ok(());
    }
    let (cpus, memory) = parse(kind).ok_or_else(|| {
        EngineError::bad(format!(
            "Provided instance type {kind:?} doesn't exist: use cCPUS-mGIB (e.g. c2-m4)"
        ))
    })?;
    let config = &mut req.put.config;
    config
        .entry("limits.cpu".into())
        .or_insert(cpus.to_string());
    config
        .entry("limits.memory".into())
        .or_insert(format!("{memory}MiB"));
    Ok(())
}

/// `c2-m4` → (2 CPUs, 4096 MiB); `c1-m0.5` → (1, 512). CPUs at least 1
/// and at most 4096, memory at least 1 MiB and at most 64 TiB.
fn parse(kind: &str) -> Option<(u32, u64)> {
    let (c, m) = kind.strip_prefix('c')?.split_once("-m")?;
    let cpus: u32 = c.parse().ok().filter(|n| (1..=4096).contains(n))?;
    let gib: f64 = m.parse().ok().filter(|g: &f64| g.is_finite() && *g > 0.0)?;
    let mib = (gib * 1024.0).round();
    (1.0..=64.0 * 1024.0 * 1024.0)
        .contains(&mib)
        .then_some((cpus, mib as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_sets_limits_the_request_leaves_open() {
        let mut req = InstancesPost {
            instance_type: "c2-m0.5".into(),
            ..Default::default()
        };
        req.put.config.insert("limits.cpu".into(), "1".into());
        apply_instance_type(&mut req).unwrap();
        assert_eq!(
            req.put.config["limits.cpu"], "1",
            "the request's own key wins"
        );
        assert_eq!(req.put.config["limits.memory"], "512MiB");
        assert_eq!(parse("c4-m8"), Some((4, 8192)));
    }

    #[test]
    fn other_types_are_refused_by_name() {
        for bad in [
            "t2.micro", "c0-m1", "c1-m0", "c1-mNaN", "c1-m-1", "cx-m1", "c1-m1e12",
        ] {
            let mut req = InstancesPost {
                instance_type: bad.into(),
                ..Default::default()
            };
            let e = apply_instance_type(&mut req).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
            assert!(req.put.config.is_empty());
        }
        let mut plain = InstancesPost::default();
        apply_instance_type(&mut plain).unwrap();
        assert!(plain.put.config.is_empty());
    }
}
