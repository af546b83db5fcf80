//! The guest API's answers, built from one instance's view alone: LXD's
//! devlxd routes (`/`, `/1.0`, `/1.0/config`, `/1.0/config/{key}`,
//! `/1.0/meta-data`, `/1.0/devices`) as plain values, with no I/O, so the
//! behaviour tests check them without a socket.

use kante_api::{ConfigMap, DevicesMap};
use serde_json::json;

/// What the guest API knows of the calling instance: its expanded config
/// and devices, its cloud-init instance-id and where it runs.
#[derive(Debug, Clone)]
pub struct GuestView {
    pub name: String,
    /// `volatile.cloud-init.instance-id`, else the name.
    pub instance_id: String,
    /// The member name in a cluster, the host name standalone (as LXD).
    pub location: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
}

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

const JSON: &str = "application/json";
const RAW: &str = "application/octet-stream";
const TEXT: &str = "text/plain; charset=utf-8";

impl Reply {
    fn json(v: serde_json::Value) -> Reply {
        Reply {
            status: 200,
            content_type: JSON,
            body: v.to_string().into_bytes(),
        }
    }

    fn raw(text: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            content_type: RAW,
            body: text.into().into_bytes(),
        }
    }

    /// An error as LXD's guest API sends it: plain text.
    pub fn error(status: u16, text: &str) -> Reply {
        Reply {
            status,
            content_type: TEXT,
            body: format!("{text}\n").into_bytes(),
        }
    }

    /// The caller is not a process of this socket's instance.
    pub fn forbidden() -> Reply {
        Reply::error(403, "not authorized")
    }

    pub fn not_found() -> Reply {
        Reply::error(404, "not found")
    }

    /// The body as text.
    #[cfg(test)]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The config keys a guest may read: its own `user.*` and `cloud-init.*`.
pub fn guest_readable(key: &str) -> bool {
    key.starts_with("user.") || key.starts_with("cloud-init.")
}

/// Answers `method path` (the query string already removed) for `view`.
pub fn answer(view: &GuestView, method: &str, path: &str) -> Reply {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    if method != "GET" {
        return match route_exists(path) {
            true => Reply::error(405, "method not allowed"),
            false => Reply::not_found(),
        };
    }
    match path {
        "/" => Reply::json(json!(["/1.0"])),
        "/1.0" => Reply::json(json!({
            "api_version": "1.0",
            "instance_type": "container",
            "location": view.location,
            "state": "Started",
        })),
        "/1.0/config" => {
            // ConfigMap is ordered: the listing is sorted, so cloud-init.*
            // comes before user.* (cloud-init reads them in this order too).
            let keys: Vec<String> = view
                .config
                .keys()
                .filter(|k| guest_readable(k))
                .map(|k| format!("/1.0/config/{k}"))
                .collect();
            Reply::json(json!(keys))
        }
        "/1.0/meta-data" => Reply::raw(meta_data(view)),
        "/1.0/devices" => Reply::json(json!(view.devices)),
        p => match p.strip_prefix("/1.0/config/") {
            Some(key) if !guest_readable(key) => Reply::forbidden(),
            Some(key) => match view.config.get(key) {
                Some(v) => Reply::raw(v.clone()),
                None => Reply::not_found(),
            },
            None => Reply::not_found(),
        },
    }
}

fn route_exists(path: &str) -> bool {
    matches!(
        path,
        "/" | "/1.0" | "/1.0/config" | "/1.0/meta-data" | "/1.0/devices"
    ) || path.starts_with("/1.0/config/")
}

/// cloud-init's meta-data: the instance-id (a new one makes cloud-init run
/// again), the host name, then the instance's own `user.meta-data`.
pub fn meta_data(view: &GuestView) -> String {
    let mut out = format!(
        "#cloud-config\ninstance-id: {}\nlocal-hostname: {}\n",
        view.instance_id, view.name
    );
    if let Some(extra) = view.config.get("user.meta-data") {
        out.push_str(extra);
        if !extra.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
