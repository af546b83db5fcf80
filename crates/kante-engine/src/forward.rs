//! Cluster "one view": where a request is served. The HTTP layer asks
//! [`Engine::route`] before a request about an instance or an operation
//! reaches its handler (a member's state: served by that member), and [`Engine::place_instance`] before an instance is
//! created; the engine answers from the shared state (the instance name's
//! reservation says which member holds it, the membership which members
//! are online and their certificates) and kante-http proxies the request,
//! bytes and all, to the member named ([`Forward`]). A request so
//! forwarded carries [`FORWARDED_HEADER`] and is served where it arrives
//! (no second hop); only members may send it ([`Engine::check_forwarded`]).
//!
//! The engine also reaches other members itself through [`PeerLink`], a
//! hook kante-http implements (as it implements `Listeners`): the
//! cluster-wide instance list fans out over it, and an operation this
//! member does not know is looked for on the online members.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kante_storage::VolumeKind;
use kante_store::ReservationKind;

use crate::context::lock;
use crate::error::{EngineError, Result};
use crate::front::Target;
use crate::remote::{Access, Caller};
use crate::util::percent;
use crate::Engine;

/// Marks a request one member forwarded to another (its value: the
/// forwarding member's name). Trusted only from members.
pub const FORWARDED_HEADER: &str = "x-kante-forwarded";
/// Why the forwarding member placed a new instance here (ASCII).
pub const PLACEMENT_HEADER: &str = "x-kante-placement";
/// The config key that shows where the scheduler put an instance and why.
pub const PLACEMENT_KEY: &str = "volatile.placement.reason";
/// How long a fan-out waits for a member's answer.
pub const FAN_OUT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a forwarded operation is followed for its end.
const FOLLOW: Duration = Duration::from_secs(3600);
/// Operation ids remembered per member (oldest forgotten first).
const REMEMBERED_OPS: usize = 4096;

/// A member to send a request to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Its member name.
    pub member: String,
    /// Its HTTPS address, `host:port`.
    pub address: String,
    /// Its server certificate (PEM), pinned.
    pub certificate: String,
}

/// Where a request is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here: the handler runs.
    Local,
    /// By another member: the request is proxied there.
    Forward(Forward),
}

/// Where a new instance goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// `None`: created here.
    pub forward: Option<Forward>,
    /// The reason, recorded on the instance ([`PLACEMENT_KEY`]); empty
    /// when standalone.
    pub reason: String,
}

/// A download from another member: the answer's type and length (as its
/// headers say) and its body, streamed.
pub struct Download {
    /// `Content-Type` (`multipart/form-data; boundary=…` for a split image).
    pub content_type: String,
    /// `Content-Length`, when sent.
    pub length: Option<u64>,
    /// The body.
    pub body: crate::front::ByteStream,
}

/// The engine's way to ask other members (kante-http implements it over
/// HTTPS, showing this member's certificate and pinning theirs).
#[async_trait::async_trait]
pub trait PeerLink: Send + Sync {
    /// `GET path_and_query` on `to` as a forwarded request, bounded by
    /// `timeout`: the answer's `metadata`, or why it failed.
    async fn get(
        &self,
        to: &Forward,
        path_and_query: &str,
        timeout: Duration,
    ) -> std::result::Result<serde_json::Value, String> {
        self.send(to, "GET", path_and_query, None, timeout).await
    }

    /// `method path_and_query` on `to` with a JSON `body`, as a forwarded
    /// request, bounded by `timeout`: the answer's `metadata` (an
    /// operation's record for a `202`), or why it failed.
    async fn send(
        &self,
        to: &Forward,
        method: &str,
        path_and_query: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> std::result::Result<serde_json::Value, String>;

    /// `GET path_and_query` on `to` as a forwarded request whose answer
    /// is a file (an image's export): its headers within `timeout`, then
    /// its body as it arrives (the caller bounds its stalls). A status
    /// other than success is an error with the answer's message.
    async fn download(
        &self,
        to: &Forward,
        path_and_query: &str,
        timeout: Duration,
    ) -> std::result::Result<Download, String>;
}

/// What forwarding remembers in this member.
#[derive(Default)]
pub(crate) struct Forwarding {
    /// Operations started on other members through this one: id → member.
    ops: Mutex<(HashMap<String, String>, std::collections::VecDeque<String>)>,
    /// Placement reasons of creations decided and not yet made: name → why.
    pub(crate) placements: Mutex<HashMap<String, String>>,
    link: Mutex<Option<Arc<dyn PeerLink>>>,
}

impl Forwarding {
    /// The placement reason decided for instance `name`, once.
    pub(crate) fn take_placement(&self, name: &str) -> Option<String> {
        lock(&self.placements).remove(name)
    }

    fn remember(&self, id: &str, member: &str) {
        let mut g = lock(&self.ops);
        let (map, order) = &mut *g;
        if map.insert(id.to_string(), member.to_string()).is_none() {
            order.push_back(id.to_string());
            while order.len() > REMEMBERED_OPS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    fn remembered(&self, id: &str) -> Option<String> {
        lock(&self.ops).0.get(id).cloned()
    }

    pub(crate) fn link(&self) -> Option<Arc<dyn PeerLink>> {
        lock(&self.link).clone()
    }
}

pub(crate) fn forward_of(p: &kante_cluster::Peer) -> Forward {
    Forward {
        member: p.name.clone(),
        address: p.address.clone(),
        certificate: p.certificate.clone(),
    }
}

fn offline(member: &str, what: &str) -> EngineError {
    EngineError::Unavailable(format!(
        "Cluster member {member:?} holding {what} is offline"
    ))
}

impl Engine {
    /// Hands the engine its way to reach other members (kante-http).
    pub fn set_peer_link(&self, link: Arc<dyn PeerLink>) {
        *lock(&self.forwarding.link) = Some(link);
    }

    /// This member's name in its cluster (`None` standalone).
    pub fn member_name(&self) -> Option<String> {
        self.cluster.member_name()
    }

    /// The online members other than this one.
    pub(crate) fn online_peers(&self) -> Vec<kante_cluster::Peer> {
        let me = self.cluster.member_name();
        self.cluster
            .peers()
            .into_iter()
            .filter(|p| p.online && Some(&p.name) != me.as_ref())
            .collect()
    }

    /// A request marked [`FORWARDED_HEADER`] is accepted only from a
    /// member (its TLS certificate is a member's server certificate).
    pub fn check_forwarded(&self, access: &Access) -> Result<()> {
        let Caller::Remote {
            fingerprint: Some(fp),
            ..
        } = &access.caller
        else {
            return Err(EngineError::Forbidden(
                "Forwarded requests are accepted from cluster members only".into(),
            ));
        };
        let member = self.cluster.peers().iter().any(|p| {
            kante_tls::parse_certificate(p.certificate.as_bytes())
                .map(|der| kante_tls::fingerprint(&der) == *fp)
                .unwrap_or(false)
        });
        if access.trusted && member {
            Ok(())
        } else {
            Err(EngineError::Forbidden(
                "Forwarded requests are accepted from cluster members only".into(),
            ))
        }
    }

    /// The member holding instance `name` by the shared reservations,
    /// when it is another member than this one.
    async fn holder_elsewhere(&self, name: &str) -> Result<Option<String>> {
        let Some(me) = self.cluster.member_name() else {
            return Ok(None);
        };
        if self.node.instance_get(name).await?.is_some() {
            return Ok(None);
        }
        let held = self
            .shared
            .reservations(ReservationKind::InstanceName)
            .await?;
        Ok(held
            .get(name)
            .filter(|h| **h != me && h.as_str() != "none")
            .cloned())
    }

    /// Where a request about `target` is served (see the module's doc):
    /// an instance by the member holding it, an operation by the member
    /// running it; anything else here. A holder that is offline is a 503
    /// naming it.
    pub async fn route(&self, target: &Target) -> Result<Route> {
        if self.cluster.member_name().is_none() {
            return Ok(Route::Local);
        }
        match target {
            Target::Instance(name) => {
                let Some(holder) = self.holder_elsewhere(name).await? else {
                    return Ok(Route::Local);
                };
                let peer = self.cluster.peers().into_iter().find(|p| p.name == holder);
                match peer {
                    Some(p) if p.online => Ok(Route::Forward(forward_of(&p))),
                    _ => Err(offline(&holder, &format!("instance {name:?}"))),
                }
            }
            Target::Operation(id) => self.route_operation(id).await,
            Target::Volume { pool, name } => self.route_volume(pool, name).await,
            Target::ClusterMember(name) => {
                if self.cluster.member_name().as_deref() == Some(name.as_str()) {
                    return Ok(Route::Local);
                }
                match self.cluster.peers().into_iter().find(|p| p.name == *name) {
                    Some(p) if p.online => Ok(Route::Forward(forward_of(&p))),
                    Some(_) => Err(EngineError::Unavailable(format!(
                        "Cluster member {name:?} is offline"
                    ))),
                    None => Err(EngineError::NotFound(format!(
                        "Cluster member {name:?} not found"
                    ))),
                }
            }
            _ => Ok(Route::Local),
        }
    }

    /// Where a request about custom volume `name` of `pool` is served:
    /// here when this member holds it, else by the one online member
    /// that answers for it; two holders are a 400 asking for a target
    /// (members may each hold a volume of one name, as in LXD's local
    /// pools), none is served here (a 404).
    pub(crate) async fn route_volume(&self, pool: &str, name: &str) -> Result<Route> {
        let here = self
            .pool(pool)
            .map(|p| p.has_volume(VolumeKind::Custom, name))
            .unwrap_or(true);
        let Some(link) = self.forwarding.link().filter(|_| !here) else {
            return Ok(Route::Local);
        };
        let path = format!(
            "/1.0/storage-pools/{}/volumes/custom/{}",
            percent(pool),
            percent(name)
        );
        let asks = self.online_peers().into_iter().map(|p| {
            let (link, path, to) = (link.clone(), path.clone(), forward_of(&p));
            async move {
                let found = link.get(&to, &path, FAN_OUT_TIMEOUT).await.is_ok();
                found.then_some(to)
            }
        });
        let mut holders: Vec<_> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        match holders.len() {
            0 => Ok(Route::Local),
            1 => Ok(Route::Forward(holders.remove(0))),
            _ => {
                let mut names: Vec<String> = holders.into_iter().map(|f| f.member).collect();
                names.sort();
                Err(EngineError::bad(format!(
                    "More than one cluster member ({}) has a volume named {name:?}: name one with --target",
                    names.join(", ")
                )))
            }
        }
    }

    /// An operation: here if this member runs it; else the member a
    /// forwarded answer named; else whichever online member knows it.
    async fn route_operation(&self, id: &str) -> Result<Route> {
        if self.ops.get(id).is_ok() {
            return Ok(Route::Local);
        }
        let peers = self.cluster.peers();
        if let Some(member) = self.forwarding.remembered(id) {
            return match peers.iter().find(|p| p.name == member) {
                Some(p) if p.online => Ok(Route::Forward(forward_of(p))),
                _ => Err(offline(&member, &format!("operation {id}"))),
            };
        }
        let Some(link) = self.forwarding.link() else {
            return Ok(Route::Local);
        };
        let path = format!("/1.0/operations/{id}");
        let asks = self.online_peers().into_iter().map(|p| {
            let (link, path, to) = (link.clone(), path.clone(), forward_of(&p));
            async move {
                let found = link.get(&to, &path, FAN_OUT_TIMEOUT).await.is_ok();
                found.then_some(to)
            }
        });
        let found = futures_util::future::join_all(asks).await;
        match found.into_iter().flatten().next() {
            Some(to) => {
                self.forwarding.remember(id, &to.member);
                Ok(Route::Forward(to))
            }
            None => Ok(Route::Local),
        }
    }

    /// Records that operation `id` runs on `member` (the `Location` of a
    /// forwarded request's 202), and follows it there: when it ends, its
    /// final state is sent on this member's event stream as an
    /// `operation` event, as LXD relays other members' events, so a
    /// client waiting on this member's `/1.0/events` (lxc does) sees it.
    pub fn remember_operation(&self, id: &str, member: &str) {
        self.forwarding.remember(id, member);
        let (Some(link), Some(peer)) = (
            self.forwarding.link(),
            self.cluster.peers().into_iter().find(|p| p.name == member),
        ) else {
            return;
        };
        let to = forward_of(&peer);
        let engine = self.me.clone();
        let path = format!("/1.0/operations/{id}/wait?timeout={}", FOLLOW.as_secs());
        tokio::spawn(async move {
            let got = link.get(&to, &path, FOLLOW + Duration::from_secs(5)).await;
            match (got, engine.upgrade()) {
                (Ok(op), Some(engine)) => engine.events.send("operation", op),
                (Err(e), _) => tracing::debug!(member = %to.member, "following an operation: {e}"),
                _ => {}
            }
        });
    }
}
