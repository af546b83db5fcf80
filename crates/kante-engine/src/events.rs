//! The event bus behind `/1.0/events`: operation, lifecycle and logging events.

use kante_api::event::Event;
use serde_json::{json, Value};
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Events { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn send(&self, kind: &str, metadata: Value) {
        let _ = self.tx.send(Event {
            kind: kind.into(),
            timestamp: kante_api::now(),
            metadata,
            location: "none".into(),
            project: "default".into(),
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
