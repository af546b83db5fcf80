//! The guest API's `/1.0/events`: a websocket telling the guest of changes
//! to its own instance, as LXD's devlxd does: `config` events for its
//! `user.*` and `cloud-init.*` keys (`key`, `old_value`, `value`) and
//! `device` events (`action` added/removed/updated, `name`, `config`),
//! filtered by `?type=config,device`. A change is found by comparing the
//! instance's view before and after each event of the engine's bus that
//! may have changed it (the instance's own lifecycle events, any
//! profile's), so no verb needs to know about the guest API.

use std::sync::Weak;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::api::{guest_readable, GuestView};
use crate::Engine;

/// Which event types a stream carries (`?type=`; both when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Types {
    pub config: bool,
    pub device: bool,
}

impl Types {
    /// From a query string; `None` if it names a type that does not exist.
    pub fn parse(query: Option<&str>) -> Option<Types> {
        let Some(list) = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("type="))
            .filter(|l| !l.is_empty())
        else {
            return Some(Types {
                config: true,
                device: true,
            });
        };
        let mut t = Types {
            config: false,
            device: false,
        };
        for name in list.split(',') {
            match name {
                "config" => t.config = true,
                "device" => t.device = true,
                _ => return None,
            }
        }
        Some(t)
    }
}

/// The events a guest gets for a change of its view from `old` to `new`.
pub fn changes(old: &GuestView, new: &GuestView, types: Types) -> Vec<Value> {
    let mut out = Vec::new();
    if types.config {
        let keys: std::collections::BTreeSet<&String> = old
            .config
            .keys()
            .chain(new.config.keys())
            .filter(|k| guest_readable(k))
            .collect();
        for key in keys {
            let (before, after) = (old.config.get(key), new.config.get(key));
            if before != after {
                out.push(event(
                    "config",
                    json!({
                        "key": key,
                        "old_value": before.map_or("", String::as_str),
                        "value": after.map_or("", String::as_str),
                    }),
                ));
            }
        }
    }
    if types.device {
        let names: std::collections::BTreeSet<&String> =
            old.devices.keys().chain(new.devices.keys()).collect();
        for name in names {
            let (action, config) = match (old.devices.get(name), new.devices.get(name)) {
                (None, Some(c)) => ("added", c),
                (Some(c), None) => ("removed", c),
                (Some(a), Some(b)) if a != b => ("updated", b),
                _ => continue,
            };
            out.push(event(
                "device",
                json!({"action": action, "name": name, "config": config}),
            ));
        }
    }
    out
}

fn event(kind: &str, metadata: Value) -> Value {
    json!({
        "type": kind,
        "timestamp": kante_api::now(),
        "metadata": metadata,
    })
}

/// True if a bus event may have changed instance `name`'s view.
fn may_change(e: &kante_api::event::Event, name: &str) -> bool {
    if e.kind != "lifecycle" {
        return false;
    }
    let source = e.metadata["source"].as_str().unwrap_or_default();
    source == format!("/1.0/instances/{name}") || source.starts_with("/1.0/profiles/")
}

/// One guest's event stream, until it goes away, the instance stops
/// (`stopped` ends) or the engine closes.
pub(super) async fn stream(
    upgraded: Upgraded,
    engine: Weak<Engine>,
    name: String,
    types: Types,
    mut stopped: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
) {
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let (mut bus, mut view) = {
        let Some(e) = engine.upgrade() else { return };
        let bus = e.events.subscribe();
        match e.devlxd_view(&name).await {
            Ok(v) => (bus, v),
            Err(_) => return,
        }
    };
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            got = bus.recv() => {
                match got {
                    // Missed events may have been changes: compare anyway.
                    Ok(e) if !may_change(&e, &name) => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
                let Some(e) = engine.upgrade() else { break };
                let Ok(now) = e.devlxd_view(&name).await else { break };
                drop(e);
                for ev in changes(&view, &now, types) {
                    if ws.send(Message::text(ev.to_string())).await.is_err() {
                        return;
                    }
                }
                view = now;
            }
        }
    }
    let _ = ws.close(None).await;
}
