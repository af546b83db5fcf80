//! The event bus behind `/1.0/events`: operation, lifecycle and logging events.

use std::sync::Arc;

use kante_api::event::Event;
use kante_store::{PROJECT, STANDALONE_MEMBER};
use serde_json::{json, Value};
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    /// The member the events happen on (their `location`).
    location: Arc<str>,
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
            location: location.into(),
        }
    }

    /// The member these events happen on.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn send(&self, kind: &str, metadata: Value) {
        let _ = self.tx.send(Event {
            kind: kind.into(),
            timestamp: kante_api::now(),
            metadata,
            location: self.location.to_string(),
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
