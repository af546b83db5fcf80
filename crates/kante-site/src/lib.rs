//! Declarative sites for the `kante` CLI: LXD's preseed applied to one
//! host (`init --preseed`, [`preseed`]) and site files of many hosts
//! (`kante apply`): read and checked ([`file`]), planned against the
//! hosts' state as a diff ([`plan`]), then converged ([`apply`]); and
//! hosts written back as a site file ([`export`]). The
//! library talks to hosts only through `kante_client::Client`s the caller
//! makes (it knows no remotes), so it can be driven by tests alike.

pub mod apply;
pub mod export;
pub mod file;
pub mod plan;
pub mod preseed;
pub mod template;

pub use file::Site;
