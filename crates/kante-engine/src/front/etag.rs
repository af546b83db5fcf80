//! ETags: the hash LXD sends with a single object (the sha256 of the JSON
//! of its editable part, as LXD's `EtagHash` of its PUT fields), and the
//! GET that shows the object an update changes, for the `If-Match` check
//! of [`crate::Engine::handle_matching`]: a value that is not the object's
//! current hash is 412 Precondition Failed and nothing changes. lxc's
//! `config edit`, `profile edit` and `… set` loops send it.

use serde::Serialize;
use serde_json::json;

use super::{Reply, Request};

/// The hash of `v`'s JSON (with a newline, as Go's encoder writes it).
fn hash(v: &impl Serialize) -> Option<String> {
    let mut bytes = serde_json::to_vec(v).ok()?;
    bytes.push(b'\n');
    Some(kante_tls::fingerprint(&bytes))
}

/// The ETag of a reply that shows one editable object (unquoted).
pub fn etag_of(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Server(s) => hash(&s.config),
        Reply::Instance(i) => hash(&json!([
            i.architecture,
            i.config,
            i.devices,
            i.ephemeral,
            i.profiles,
            i.description
        ])),
        Reply::InstanceFull(f) => {
            let i = &f.instance;
            hash(&json!([
                i.architecture,
                i.config,
                i.devices,
                i.ephemeral,
                i.profiles,
                i.description
            ]))
        }
        Reply::Snapshot(s) => hash(&json!([s.expires_at])),
        Reply::Profile(p) => hash(&json!([p.config, p.description, p.devices])),
        Reply::Network(n) => hash(&json!([n.name, n.managed, n.kind, n.description, n.config])),
        Reply::Pool(p) => hash(&json!([p.name, p.driver, p.description, p.config])),
        Reply::Volume(v) => hash(&json!([v.name, v.kind, v.description, v.config])),
        Reply::Image(i) => hash(&json!([i.public, i.auto_update, i.properties])),
        Reply::Alias(a) => hash(&json!([a.name, a.description, a.target])),
        Reply::Certificate(c) => hash(&json!([
            c.kind,
            c.certificate,
            c.name,
            c.restricted,
            c.projects
        ])),
        Reply::Project(p) => hash(&json!([p.config, p.description])),
        _ => None,
    }
}

/// The GET that shows the object an update changes (`None`: the
/// request changes nothing that has an ETag).
pub(super) fn current_of(req: &Request) -> Option<Request> {
    use Request::*;
    Some(match req {
        ServerUpdate { .. } => ServerGet,
        InstanceUpdate { instance, .. } | InstancePatch { instance, .. } => InstanceGet {
            instance: instance.clone(),
            full: false,
        },
        SnapshotUpdate {
            instance, snapshot, ..
        } => SnapshotGet {
            instance: instance.clone(),
            snapshot: snapshot.clone(),
        },
        ProfileUpdate { name, .. } => ProfileGet { name: name.clone() },
        NetworkUpdate { name, target, .. } => NetworkGet {
            name: name.clone(),
            target: target.clone(),
        },
        PoolUpdate { pool, .. } => PoolGet { pool: pool.clone() },
        VolumeUpdate {
            pool, kind, volume, ..
        } => VolumeGet {
            pool: pool.clone(),
            kind: kind.clone(),
            volume: volume.clone(),
        },
        ImageUpdate { fingerprint, .. } => ImageGet {
            fingerprint: fingerprint.clone(),
            secret: None,
        },
        AliasUpdate { name, .. } => AliasGet { name: name.clone() },
        CertificateUpdate { fingerprint, .. } => CertificateGet {
            fingerprint: fingerprint.clone(),
        },
        ProjectUpdate { name, .. } => ProjectGet { name: name.clone() },
        _ => return None,
    })
}
