//! The event bus behind `/1.0/events`: operation, lifecycle and logging events.

use std::sync::{Arc, RwLock};

use kante_api::event::Event;
use kante_store::{PROJECT, STANDALONE_MEMBER};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// This member's name (LXD's `location` of what it holds and does),
/// one handle shared by the engine and its event bus: a runtime `cluster
/// enable` or `join` sets it, and every later event, operation and
/// record shows the new name at once.
#[derive(Clone)]
pub struct Location(Arc<RwLock<Arc<str>>>);

impl Location {
    pub fn new(name: &str) -> Self {
        Location(Arc::new(RwLock::new(name.into())))
    }

    /// The name now.
    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|e| e.into_inner()).to_string()
    }

    /// From now on this member is `name`.
    pub fn set(&self, name: &str) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = name.into();
    }
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    /// The member the events happen on (their `location`).
    location: Location,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A bus of a standalone host.
    pub fn new() -> Self {
        Events::at(STANDALONE_MEMBER)
    }

    /// A bus of member `location`.
    pub fn at(location: &str) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Events {
            tx,
            location: Location::new(location),
        }
    }

    /// The member these events happen on.
    pub fn location(&self) -> String {
        self.location.get()
    }

    /// The handle of this member's name (the engine's, which a cluster
    /// switch sets).
    pub fn location_handle(&self) -> Location {
        self.location.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn send(&self, kind: &str, metadata: Value) {
        let _ = self.tx.send(Event {
            kind: kind.into(),
            timestamp: kante_api::now(),
            metadata,
            location: self.location.get(),
            project: PROJECT.into(),
        });
    }

    /// A lifecycle event such as `instance-started` for `/1.0/instances/c1`.
    pub fn lifecycle(&self, action: &str, source: &str, context: Value) {
        self.send(
            "lifecycle",
            json!({"action": action, "source": source, "context": context, "requestor": null}),
        );
    }
}
