//! Kante's cluster state: [`EtcdState`], the [`kante_store::SharedState`]
//! of a cluster, over etcd's v3 API with a local cache on each member.
//!
//! * **Layout** (`keys.rs`): one key per record under `/kante/<cluster>/`,
//!   each the JSON of kante-store's row type (by column name).
//! * **Reads** answer from the cache (`cache.rs`): the whole prefix,
//!   loaded at connect and kept current by a watch (`watcher.rs`) that
//!   resumes from its last revision after a break, or reloads everything
//!   when that revision was compacted. A member cut off from etcd keeps
//!   answering reads from its last view.
//! * **Writes** are etcd transactions (`ops.rs`, `shared.rs`): creates and
//!   reservations compare the key's create revision with 0, updates and
//!   renames the mod revision they read, so of concurrent writers exactly
//!   one wins. Each call is bounded by the configured timeout and fails as
//!   [`kante_store::StoreError::Unavailable`] ("the cluster's store is
//!   unreachable: …"); a write that succeeded is in this member's cache
//!   before it returns.
//! * **Cluster mode** (`manager/`): kanted's [`Manager`] enables, joins
//!   and leaves a cluster, supervises this host's etcd member
//!   (`etcd_proc.rs`, TLS from the cluster CA of `ca.rs`), and keeps its
//!   membership under a lease (`membership.rs`), publishes its instances'
//!   services (`manager/services.rs`) and answers for them over DNS
//!   (`dns.rs`).

pub mod ca;
mod cache;
mod config;
pub mod dns;
pub mod etcd_proc;
mod keys;
mod manager;
pub mod membership;
mod ops;
mod shared;
mod snapshot;
mod state;
mod watcher;

pub use config::{EtcdConfig, EtcdTls, DEFAULT_TIMEOUT};
pub use keys::MemberRecord;
pub use manager::join::decode_token;
pub use manager::members::Peer;
pub use manager::{
    check_name, reachable_host, ClusterError, Identity, Manager, MemberConfig, ETCD_CLIENT_PORT,
    ETCD_PEER_PORT, MAX_VOTERS, TOKEN_TTL,
};
pub use state::EtcdState;
