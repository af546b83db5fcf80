//! The host's hardware as `GET /1.0/resources` shows it (LXD's field
//! names; the subset `lxc info --resources` prints), and a pool's space
//! (`GET /1.0/storage-pools/{name}/resources`).

use serde::{Deserialize, Serialize};

/// `GET /1.0/resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resources {
    pub cpu: Cpu,
    pub memory: Memory,
    pub gpu: Cards<serde_json::Value>,
    pub network: Cards<NetworkCard>,
    pub storage: Disks,
    pub usb: Devices,
    pub pci: Devices,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cpu {
    pub architecture: String,
    pub sockets: Vec<CpuSocket>,
    /// Threads in all sockets.
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuSocket {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    pub socket: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<CpuCache>,
    pub cores: Vec<CpuCore>,
    /// MHz.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency_minimum: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency_turbo: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuCache {
    pub level: u64,
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes.
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuCore {
    pub core: u64,
    pub die: u64,
    pub threads: Vec<CpuThread>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuThread {
    pub id: i64,
    pub numa_node: u64,
    pub thread: u64,
    pub online: bool,
    pub isolated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Memory {
    pub hugepages_total: u64,
    pub hugepages_used: u64,
    pub hugepages_size: u64,
    pub used: u64,
    pub total: u64,
}

/// A list of cards and their count (GPUs, network cards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cards<T> {
    pub cards: Vec<T>,
    pub total: u64,
}

impl<T> Default for Cards<T> {
    fn default() -> Self {
        Cards {
            cards: Vec::new(),
            total: 0,
        }
    }
}

/// A list of devices and their count (USB, PCI).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Devices {
    pub devices: Vec<serde_json::Value>,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkCard {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPort>,
    pub numa_node: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pci_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkPort {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    pub port: u64,
    pub protocol: String,
    pub auto_negotiation: bool,
    pub link_detected: bool,
    /// Mbit/s.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub link_speed: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link_duplex: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Disks {
    pub disks: Vec<Disk>,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Disk {
    pub id: String,
    /// `MAJOR:MINOR`.
    pub device: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub read_only: bool,
    /// Bytes.
    pub size: u64,
    pub removable: bool,
    pub numa_node: u64,
    pub block_size: u64,
    pub rpm: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
    pub device_id: String,
    pub partitions: Vec<DiskPartition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiskPartition {
    pub id: String,
    pub device: String,
    pub read_only: bool,
    pub size: u64,
    pub partition: u64,
}

/// `GET /1.0/storage-pools/{name}/resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PoolResources {
    pub space: PoolSpace,
    pub inodes: PoolInodes,
}

/// Bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PoolSpace {
    pub used: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PoolInodes {
    pub used: u64,
    pub total: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
