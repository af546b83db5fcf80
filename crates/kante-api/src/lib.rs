//! Types of Kante's REST API, shared by the daemon (`kanted`) and its clients.
//!
//! The shapes follow LXD's API 1.0 so that `lxc`, pylxd and Ansible work
//! unchanged. Decoding is tolerant on purpose: unknown fields are ignored and
//! `null` is accepted wherever a default makes sense, because real clients send
//! both (see `lxd-api-subset.md`, trap 4).

pub mod backup;
pub mod certificate;
pub mod cluster;
pub mod console;
pub mod envelope;
pub mod event;
pub mod exec;
pub mod file;
pub mod image;
pub mod instance;
pub mod names;
pub mod network;
pub mod operation;
pub mod profile;
pub mod project;
pub mod resources;
pub mod serde_util;
pub mod server;
pub mod service;
pub mod status;
pub mod storage;

pub use envelope::{Envelope, ResponseType};
pub use status::StatusCode;

/// Map of config keys to values. All values are strings on the wire.
pub type ConfigMap = std::collections::BTreeMap<String, String>;
/// Map of device name to its (string) properties.
pub type DevicesMap = std::collections::BTreeMap<String, ConfigMap>;

/// RFC 3339 timestamp with nanoseconds, as LXD writes them.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// LXD's "never": `0001-01-01T00:00:00Z`.
pub fn zero_time() -> Timestamp {
    chrono::DateTime::<chrono::Utc>::from_timestamp(-62135596800, 0).expect("valid constant")
}

/// Current time, truncated to what JSON round-trips keep.
pub fn now() -> Timestamp {
    chrono::Utc::now()
}
