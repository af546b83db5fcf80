//! kanted's own housekeeping: snapshots taken on each instance's
//! `snapshots.schedule`, and snapshots and backups past their `expires_at`
//! removed.

use std::sync::Weak;
use std::time::Duration;

use chrono::{NaiveDateTime, Timelike};

use crate::error::Result;
use crate::schedule::Schedule;
use crate::util::is_true;
use crate::util::parse_time;
use crate::Engine;

/// How often expired snapshots and backups are looked for (seconds). Schedules are
/// evaluated once per minute whatever this is; tests shorten it.
const EXPIRY_CHECK_ENV: &str = "KANTE_EXPIRY_CHECK_SECS";

/// The name `snapshots.pattern` gives the next scheduled snapshot: `%d`
/// becomes the lowest free number; a pattern without it gets `-N` on a clash.
pub fn pattern_name(pattern: &str, taken: &[String]) -> String {
    let pattern = if pattern.is_empty() {
        "snap%d"
    } else {
        pattern
    };
    let free = |f: &dyn Fn(u64) -> String| {
        (0..)
            .map(f)
            .find(|n| !taken.contains(n))
            .expect("an unbounded range has a free name")
    };
    if pattern.contains("%d") {
        free(&|i| pattern.replace("%d", &i.to_string()))
    } else if !taken.iter().any(|t| t == pattern) {
        pattern.to_string()
    } else {
        free(&|i| format!("{pattern}-{i}"))
    }
}

impl Engine {
    /// Starts the housekeeping task; it ends when the engine is dropped.
    pub(crate) fn start_snapshot_housekeeping(&self) {
        let me: Weak<Engine> = self.me.clone();
        let every = crate::util::env_secs(EXPIRY_CHECK_ENV, 60);
        tokio::spawn(async move {
            let mut last_minute: Option<NaiveDateTime> = None;
            loop {
                let now = chrono::Local::now().naive_local();
                let to_next_minute = 60 - u64::from(now.second());
                tokio::time::sleep(Duration::from_secs(every.min(to_next_minute))).await;
                let Some(engine) = me.upgrade() else { return };
                let minute = chrono::Local::now()
                    .naive_local()
                    .with_second(0)
                    .and_then(|t| t.with_nanosecond(0));
                if let Some(minute) = minute.filter(|m| Some(*m) != last_minute) {
                    last_minute = Some(minute);
                    if let Err(e) = engine.scheduled_snapshots(&minute).await {
                        tracing::warn!("scheduled snapshots: {e}");
                    }
                }
                if let Err(e) = engine.prune_expired_snapshots().await {
                    tracing::warn!("expired snapshots: {e}");
                }
                engine.prune_expired_backups().await;
            }
        });
    }

    /// Takes the snapshots due in `minute`.
    pub(crate) async fn scheduled_snapshots(&self, minute: &NaiveDateTime) -> Result<()> {
        for row in self.node.instance_list().await? {
            let Ok((econfig, _)) = self.expanded(&row).await else {
                continue;
            };
            let spec = econfig
                .get("snapshots.schedule")
                .map(String::as_str)
                .unwrap_or("");
            let due = match Schedule::parse(spec) {
                Ok(s) => s.matches(minute),
                Err(e) => {
                    tracing::warn!(instance = %row.name, "snapshots.schedule: {e}");
                    false
                }
            };
            let stopped_too = is_true(econfig.get("snapshots.schedule.stopped"));
            if !due || (!stopped_too && self.running(&row.name).is_none()) {
                continue;
            }
            let lock = self.instance_lock(&row.name);
            let _g = lock.lock().await;
            let taken: Vec<String> = self
                .node
                .snapshot_list(&row.name)
                .await?
                .into_iter()
                .map(|s| s.name)
                .collect();
            let pattern = econfig
                .get("snapshots.pattern")
                .map(String::as_str)
                .unwrap_or("");
            let name = pattern_name(pattern, &taken);
            if let Err(e) = kante_api::names::validate_snapshot_name(&name) {
                tracing::warn!(instance = %row.name, "snapshots.pattern gives {name:?}: {e}");
                continue;
            }
            match self.take_snapshot(&row.name, &name, None).await {
                Ok(()) => {
                    tracing::info!(instance = %row.name, snapshot = %name, "scheduled snapshot")
                }
                Err(e) => tracing::warn!(instance = %row.name, "scheduled snapshot: {e}"),
            }
        }
        Ok(())
    }

    /// Removes every snapshot whose `expires_at` has passed.
    pub(crate) async fn prune_expired_snapshots(&self) -> Result<()> {
        let now = kante_api::now();
        let never = kante_api::zero_time();
        for row in self.node.instance_list().await? {
            for snap in self.node.snapshot_list(&row.name).await? {
                let expires = parse_time(&snap.expires_at);
                if expires == never || expires > now {
                    continue;
                }
                let lock = self.instance_lock(&row.name);
                let _g = lock.lock().await;
                match self.remove_snapshot(&row.name, &snap.name).await {
                    Ok(()) => {
                        tracing::info!(instance = %row.name, snapshot = %snap.name, "expired snapshot removed")
                    }
                    Err(e) => {
                        tracing::warn!(instance = %row.name, snapshot = %snap.name, "removing expired snapshot: {e}")
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_names_take_the_lowest_free_number() {
        let taken = vec![
            "snap0".to_string(),
            "snap2".to_string(),
            "daily".to_string(),
        ];
        assert_eq!(pattern_name("", &taken), "snap1");
        assert_eq!(pattern_name("auto%d", &taken), "auto0");
        assert_eq!(pattern_name("daily", &taken), "daily-0");
        assert_eq!(pattern_name("weekly", &taken), "weekly");
    }
}
