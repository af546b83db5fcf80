//! Service discovery, this member's part: every few seconds, the
//! `service.NAME=PORT[/PROTO]` keys of its running instances (expanded
//! config) become records in the cluster, each with the instance's first
//! global address (IPv4 before IPv6, NICs in name order), published by
//! kante-cluster under this member's heartbeat lease; records of
//! instances that stopped or went away are removed, and everything is
//! put again once etcd is back after an outage (see ARCHITECTURE.md,
//! *Service discovery*). A no-op on a standalone host.

use std::sync::Weak;
use std::time::Duration;

use kante_api::service::{parse_service, Service, PREFIX};

use crate::Engine;

/// How often the records are brought in line with the running instances.
const EVERY: Duration = Duration::from_secs(2);

impl Engine {
    /// Starts the task that publishes this member's services.
    pub(crate) fn start_service_publisher(&self) {
        let me: Weak<Engine> = self.me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(EVERY).await;
                let Some(engine) = me.upgrade() else { return };
                let Some(member) = engine.cluster.member_name() else {
                    continue;
                };
                let wanted = engine.wanted_services(&member).await;
                if let Err(e) = engine.cluster.publish_services(wanted).await {
                    tracing::debug!("publishing services: {e}");
                }
            }
        });
    }

    /// The records this member's running instances call for.
    async fn wanted_services(&self, member: &str) -> Vec<Service> {
        let mut names: Vec<String> = crate::lock(&self.running).keys().cloned().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let Ok(row) = self.instance_row(&name).await else {
                continue;
            };
            let Ok((config, _)) = self.expanded(&row).await else {
                continue;
            };
            let keys: Vec<_> = config
                .iter()
                .filter(|(k, v)| k.starts_with(PREFIX) && !v.is_empty())
                .filter_map(|(k, v)| parse_service(k, v).ok())
                .collect();
            if keys.is_empty() {
                continue;
            }
            let Ok(state) = self.instance_state(&name).await else {
                continue;
            };
            if state.status != "Running" {
                continue;
            }
            let Some(address) = first_global(&state) else {
                continue;
            };
            for k in keys {
                out.push(Service {
                    name: k.name,
                    instance: name.clone(),
                    address: address.clone(),
                    port: k.port,
                    proto: k.proto,
                    member: member.to_string(),
                    version: env!("CARGO_PKG_VERSION").into(),
                });
            }
        }
        out
    }
}

/// The first global address of the instance's NICs (`lo` aside, by name),
/// IPv4 before IPv6.
fn first_global(state: &kante_api::instance::InstanceState) -> Option<String> {
    let network = state.network.as_ref()?;
    for family in ["inet", "inet6"] {
        for (nic, n) in network {
            if nic == "lo" {
                continue;
            }
            if let Some(a) = n
                .addresses
                .iter()
                .find(|a| a.family == family && a.scope == "global")
            {
                return Some(a.address.clone());
            }
        }
    }
    None
}
