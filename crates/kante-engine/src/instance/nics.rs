//! The `nic` devices of a running instance: made in its network namespace
//! between the runtime's "created" and "go" (so init never sees a half-made
//! network), hot-plugged on config changes, and taken down at exit.

use kante_api::{ConfigMap, DevicesMap};
use kante_network::{AppliedNic, NetnsRef, NicPlan, NicRequest};

use super::Running;
use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    /// Makes every planned NIC inside the namespace of `pid` and brings it
    /// up. On failure the ones already made are removed again.
    pub(crate) async fn apply_nics(&self, plans: &[NicPlan], pid: i32) -> Result<Vec<AppliedNic>> {
        let netns = NetnsRef::Pid(pid as u32);
        let mut applied: Vec<AppliedNic> = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let made = async {
                let a = plan.apply(&self.net, &netns).await?;
                self.net.ops.set_up_in(&netns, &a.name).await?;
                Ok::<_, kante_network::NetworkError>(a)
            }
            .await;
            match made {
                Ok(a) => applied.push(a),
                Err(e) => {
                    let _ = plan.remove(&self.net, false).await;
                    for p in &plans[..i] {
                        let _ = p.remove(&self.net, false).await;
                    }
                    return Err(EngineError::from(e));
                }
            }
        }
        Ok(applied)
    }

    /// Takes NICs down; `forever` also drops their DHCP reservations.
    pub(crate) async fn remove_nics(&self, instance: &str, plans: &[NicPlan], forever: bool) {
        for p in plans {
            if let Err(e) = p.remove(&self.net, forever).await {
                tracing::warn!(%instance, device = %p.device, "removing nic: {e}");
            }
        }
    }

    /// Plans an instance's NICs from its stored record (used after the
    /// daemon restarts and at delete). Errors mean "nothing to undo".
    pub(crate) async fn stored_nic_plans(&self, row: &kante_store::InstanceRow) -> Vec<NicPlan> {
        let Ok((_, devices)) = self.expanded(row).await else {
            return Vec::new();
        };
        match self
            .plan_instance_nics(&row.name, &devices, &row.config)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(instance = %row.name, "no nic plan: {e}");
                Vec::new()
            }
        }
    }

    /// Applies the NIC section of a live change to a running instance:
    /// the NICs of `stop` go, those of `start` come (both: changed).
    /// `config` receives the `volatile.<dev>.*` keys of what was made.
    pub(crate) async fn hotplug_nics(
        &self,
        running: &Running,
        instance: &str,
        new: &DevicesMap,
        stop: &[String],
        start: &[NicRequest],
        config: &mut ConfigMap,
    ) -> Result<()> {
        // Planned over the whole new set, as at a start, so names, MACs and
        // host names stay unique with the NICs that are kept.
        let new_plans = self.plan_instance_nics(instance, new, config).await?;
        let to_add: Vec<NicPlan> = new_plans
            .into_iter()
            .filter(|p| start.iter().any(|r| r.device == p.device))
            .collect();
        let current: Vec<NicPlan> = super::lock_nics(running).clone();
        let (to_remove, keep): (Vec<NicPlan>, Vec<NicPlan>) =
            current.into_iter().partition(|p| stop.contains(&p.device));
        // Names inside the instance must stay unique across kept and added.
        for a in &to_add {
            if keep.iter().any(|k| k.name == a.name) {
                return Err(EngineError::bad(format!(
                    "Device {:?}: an interface named {:?} already exists in the instance",
                    a.device, a.name
                )));
            }
        }
        for p in &to_remove {
            let gone = !new.contains_key(&p.device);
            if let Err(e) = p.remove(&self.net, gone).await {
                tracing::warn!(%instance, device = %p.device, "hot-unplug: {e}");
            }
            if gone {
                config.remove(&format!("volatile.{}.host_name", p.device));
                config.remove(&format!("volatile.{}.hwaddr", p.device));
            }
        }
        let applied = match self.apply_nics(&to_add, running.pid).await {
            Ok(a) => a,
            Err(e) => {
                *super::lock_nics(running) = keep;
                return Err(e);
            }
        };
        record_applied(config, &applied);
        let mut all = keep;
        all.extend(to_add);
        *super::lock_nics(running) = all;
        Ok(())
    }
}

/// Stores what was made as `volatile.<dev>.hwaddr` / `.host_name`, LXD's keys.
pub(crate) fn record_applied(config: &mut ConfigMap, applied: &[AppliedNic]) {
    for a in applied {
        config.insert(
            format!("volatile.{}.hwaddr", a.device),
            a.hwaddr.to_string(),
        );
        match &a.host_name {
            Some(h) => config.insert(format!("volatile.{}.host_name", a.device), h.clone()),
            None => config.remove(&format!("volatile.{}.host_name", a.device)),
        };
    }
}
