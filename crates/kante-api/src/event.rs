//! Messages of the `/1.0/events` websocket.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Timestamp;

/// One event; `kind` is `operation`, `lifecycle` or `logging`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: Timestamp,
    pub metadata: Value,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub project: String,
}

/// Metadata of a `lifecycle` event.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LifecycleEvent {
    pub action: String,
    pub source: String,
    #[serde(default)]
    pub context: Value,
}
