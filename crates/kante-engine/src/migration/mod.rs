//! Instance migration between servers, the servers' side of LXD's
//! choreography (`lxc copy|move k1:c1 k2:[c2]`, modes pull, push, relay).
//!
//! The client orchestrates: it asks the source for a migration
//! (`POST /1.0/instances/{name}` with `migration: true`, `send.rs`) and
//! the target for an instance made from one (`POST /1.0/instances` with
//! `source.type: "migration"`, `sink.rs`), and hands each side the other's
//! operation, websocket secrets and certificate. Each side either listens
//! (its operation, of class `websocket`, shows the `control` and `fs`
//! secrets and waits for the peer) or dials (`wss://` to the peer's
//! operation, certificate pinned): pull = source listens, target dials;
//! push = target listens, source dials; relay = both listen and lxc joins
//! the sockets (`link.rs`).
//!
//! On `control` travel LXD's protobuf messages (`proto.rs`): the source's
//! `MigrationHeader` offer (snapshots with their records, and in Kante's
//! field 1000 the volume stream types it can send), the target's answer
//! (the type chosen), and at the end `MigrationControl` (the target's
//! verdict; either side's failure aborts the other). A peer without field
//! 1000 is LXD: the trees then travel as LXD's rsync transfer (`lxd.rs`,
//! `rsync.rs`). Between Kante peers, on `fs` travels the volume stream of
//! `kante-storage/src/stream/` (KANTEVS1: btrfs between btrfs pools, tar
//! otherwise), as binary frames. The source is read stopped, or frozen
//! (no live migration), and stays locked from the operation's start to
//! the verdict (a delete sent at once waits for the copy); the target receives at
//! staging paths and records the instance only once the stream is
//! complete and checked. Custom volumes travel the same way (`volume.rs`).

mod link;
mod lxd;
pub(crate) mod proto;
mod pump;
mod records;
mod refresh;
mod rsync;
mod send;
mod sink;
mod volume;
