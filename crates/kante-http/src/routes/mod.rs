//! Route handlers, one module per API area. Each handler only parses the
//! HTTP request into a front-door `Request` and renders the engine's
//! `Reply` (see `crate::response`).

pub mod backups;
pub mod certificates;
pub mod cluster;
pub mod events;
pub mod files;
pub mod host;
pub mod images;
pub mod instances;
pub mod networks;
pub mod operations;
pub mod profiles;
pub mod server;
pub mod storage;
pub mod volumes;

use std::collections::HashMap;

use axum::extract::Query;

/// Query parameters, parsed leniently (`?recursion=`, `?project=` may be empty).
pub type Params = Query<HashMap<String, String>>;

pub fn recursion(q: &HashMap<String, String>) -> u8 {
    q.get("recursion").and_then(|v| v.parse().ok()).unwrap_or(0)
}
