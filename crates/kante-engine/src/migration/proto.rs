//! LXD's migration control messages (proto2, `lxd/migration/migrate.proto`
//! of LXD 5.0), written by hand with `prost`'s derive: the field numbers
//! are LXD's. Only the fields Kante reads or writes are declared; a decoder
//! skips the others, as LXD's skips ours.
//!
//! Kante's extension is field 1000 of `MigrationHeader` (`kante_types`): in
//! the sender's offer the volume stream types it can send (`btrfs`, `tar`,
//! best first), in the sink's answer the one type chosen. LXD neither sends
//! nor echoes it, which is how either end tells a Kante peer from LXD.
//! `Snapshot` carries the description the same way (field 1000), and its
//! tree's identity for differences (1001); a sink refreshing its copy as
//! `btrfs` differences names the base snapshot in field 1001 of its answer.

/// `MigrationFSType`: how LXD moves the filesystem.
pub const FS_RSYNC: i32 = 0;
/// `CRIUType.NONE`: no live state.
pub const CRIU_NONE: i32 = 2;

/// One range of an id map (`IDMapType`): LXD sends its disk's map, the
/// offset its tree is shifted by.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdMapType {
    #[prost(bool, required, tag = "1")]
    pub isuid: bool,
    #[prost(bool, required, tag = "2")]
    pub isgid: bool,
    #[prost(int32, required, tag = "3")]
    pub hostid: i32,
    #[prost(int32, required, tag = "4")]
    pub nsid: i32,
    #[prost(int32, required, tag = "5")]
    pub maprange: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Config {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub config: Vec<Config>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub local_config: Vec<Config>,
    #[prost(string, repeated, tag = "3")]
    pub profiles: Vec<String>,
    #[prost(bool, required, tag = "4")]
    pub ephemeral: bool,
    #[prost(message, repeated, tag = "5")]
    pub local_devices: Vec<Device>,
    #[prost(int32, required, tag = "6")]
    pub architecture: i32,
    #[prost(bool, required, tag = "7")]
    pub stateful: bool,
    /// Unix seconds.
    #[prost(int64, optional, tag = "8")]
    pub creation_date: Option<i64>,
    #[prost(int64, optional, tag = "9")]
    pub last_used_date: Option<i64>,
    #[prost(int64, optional, tag = "10")]
    pub expiry_date: Option<i64>,
    /// Kante: the snapshot's description (LXD has no field for it).
    #[prost(string, optional, tag = "1000")]
    pub description: Option<String>,
    /// Kante: how the sender's pool names this tree as the parent of a
    /// difference (`btrfs`: its UUID and transaction), so a refreshing
    /// target can tell whether its copy can be the base.
    #[prost(string, optional, tag = "1001")]
    pub kante_tree: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RsyncFeatures {
    #[prost(bool, optional, tag = "1")]
    pub xattrs: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub delete: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub compress: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub bidirectional: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrationHeader {
    /// `MigrationFSType`.
    #[prost(int32, required, tag = "1")]
    pub fs: i32,
    /// `CRIUType`.
    #[prost(int32, optional, tag = "2")]
    pub criu: Option<i32>,
    #[prost(message, repeated, tag = "3")]
    pub idmap: Vec<IdMapType>,
    #[prost(string, repeated, tag = "4")]
    pub snapshot_names: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub snapshots: Vec<Snapshot>,
    #[prost(bool, optional, tag = "7")]
    pub predump: Option<bool>,
    #[prost(message, optional, tag = "8")]
    pub rsync_features: Option<RsyncFeatures>,
    #[prost(bool, optional, tag = "9")]
    pub refresh: Option<bool>,
    #[prost(int64, optional, tag = "11")]
    pub volume_size: Option<i64>,
    #[prost(uint32, optional, tag = "13")]
    pub index_header_version: Option<u32>,
    /// Kante: the volume stream types offered (sender) or chosen (sink).
    #[prost(string, repeated, tag = "1000")]
    pub kante_types: Vec<String>,
    /// Kante, in a refreshing sink's answer choosing `btrfs`: the snapshot
    /// both sides have that the differences start from.
    #[prost(string, optional, tag = "1001")]
    pub kante_base: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrationControl {
    #[prost(bool, required, tag = "1")]
    pub success: bool,
    #[prost(string, optional, tag = "2")]
    pub message: Option<String>,
}

impl RsyncFeatures {
    /// What Kante's rsync transfer does: xattrs, `--delete`, the
    /// bidirectional negotiation; no compression (a loopback or LAN link is
    /// faster without it).
    pub fn kante() -> Self {
        RsyncFeatures {
            xattrs: Some(true),
            delete: Some(true),
            compress: Some(false),
            bidirectional: Some(true),
        }
    }

    /// The names of the features set (LXD's `GetRsyncFeaturesSlice`).
    pub fn names(&self) -> Vec<&'static str> {
        [
            ("xattrs", self.xattrs),
            ("delete", self.delete),
            ("compress", self.compress),
            ("bidirectional", self.bidirectional),
        ]
        .into_iter()
        .filter(|(_, on)| *on == Some(true))
        .map(|(n, _)| n)
        .collect()
    }

    /// Both sides' features: an offer without `bidirectional` comes from an
    /// LXD older than 3.8, which always means xattrs, delete and compress.
    pub fn common(offer: Option<&RsyncFeatures>) -> RsyncFeatures {
        let ours = RsyncFeatures::kante();
        let theirs = match offer {
            Some(f) if f.bidirectional == Some(true) => f.clone(),
            _ => RsyncFeatures {
                xattrs: Some(true),
                delete: Some(true),
                compress: Some(true),
                bidirectional: Some(false),
            },
        };
        let both = |a: Option<bool>, b: Option<bool>| Some(a == Some(true) && b == Some(true));
        RsyncFeatures {
            xattrs: both(ours.xattrs, theirs.xattrs),
            delete: both(ours.delete, theirs.delete),
            compress: both(ours.compress, theirs.compress),
            bidirectional: both(ours.bidirectional, theirs.bidirectional),
        }
    }
}

impl MigrationControl {
    pub fn ok() -> Self {
        MigrationControl {
            success: true,
            message: None,
        }
    }

    pub fn failed(message: &str) -> Self {
        MigrationControl {
            success: false,
            message: Some(message.to_string()),
        }
    }
}

/// LXD's numbering of architectures (`shared/osarch`), as snapshots carry it.
pub fn arch_id(name: &str) -> i32 {
    match name {
        "i686" => 1,
        "x86_64" => 2,
        "armv7l" => 3,
        "aarch64" => 4,
        "ppc" => 5,
        "ppc64" => 6,
        "ppc64le" => 7,
        "s390x" => 8,
        "mips" => 9,
        "mips64" => 10,
        "riscv32" => 11,
        "riscv64" => 12,
        _ => 0,
    }
}

/// The name of an LXD architecture number (the host's for an unknown one).
pub fn arch_name(id: i32) -> String {
    let name = match id {
        1 => "i686",
        2 => "x86_64",
        3 => "armv7l",
        4 => "aarch64",
        5 => "ppc",
        6 => "ppc64",
        7 => "ppc64le",
        8 => "s390x",
        9 => "mips",
        10 => "mips64",
        11 => "riscv32",
        12 => "riscv64",
        _ => std::env::consts::ARCH,
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn encode<M: Message>(m: &M) -> Vec<u8> {
        m.encode_to_vec()
    }

    #[test]
    fn header_round_trips_and_keeps_lxd_field_numbers() {
        let h = MigrationHeader {
            fs: FS_RSYNC,
            criu: Some(CRIU_NONE),
            snapshot_names: vec!["s0".into()],
            snapshots: vec![Snapshot {
                name: "s0".into(),
                local_config: vec![Config {
                    key: "a".into(),
                    value: "b".into(),
                }],
                architecture: 2,
                creation_date: Some(1),
                ..Default::default()
            }],
            kante_types: vec!["tar".into()],
            ..Default::default()
        };
        let bytes = encode(&h);
        // fs = 0 as field 1 (varint): tag byte 0x08 first.
        assert_eq!(&bytes[..2], &[0x08, 0x00]);
        assert_eq!(MigrationHeader::decode(bytes.as_slice()).unwrap(), h);
        let c = MigrationControl::failed("no");
        let b = encode(&c);
        assert_eq!(b[..2], [0x08, 0x00]);
        assert_eq!(MigrationControl::decode(b.as_slice()).unwrap(), c);
    }

    #[test]
    fn an_lxd_header_has_no_kante_types() {
        // LXD's offer: fs=RSYNC, criu=NONE, snapshotNames=["s0"], an
        // unknown field (btrfsFeatures, 12) that is skipped.
        let bytes = [
            0x08, 0x00, 0x10, 0x02, 0x22, 0x02, b's', b'0', 0x62, 0x02, 0x08, 0x01,
        ];
        let h = MigrationHeader::decode(&bytes[..]).unwrap();
        assert!(h.kante_types.is_empty());
        assert_eq!(h.snapshot_names, vec!["s0".to_string()]);
    }
}
