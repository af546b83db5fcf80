//! The device registry: which kind implements a device, by its `type` and,
//! for NICs, its `nictype`. A new kind is one line here and its file.

use super::DeviceError;
use super::{disk, nic, none, proxy, unsupported, Device, DeviceConfig};
use crate::error::Result;

/// Builds the implementation of one device from its name and config.
type Loader = fn(&str, &DeviceConfig) -> Box<dyn Device>;

/// One kind: its `type`, its `nictype` (`None`: the key is absent; a
/// `nic` then takes its network's type), and its loader.
struct Kind {
    kind: &'static str,
    nictype: Option<&'static str>,
    load: Loader,
}

const fn kind(kind: &'static str, nictype: Option<&'static str>, load: Loader) -> Kind {
    Kind {
        kind,
        nictype,
        load,
    }
}

const KINDS: &[Kind] = &[
    kind("disk", None, disk::load),
    kind("nic", None, nic::load),
    kind("nic", Some("bridged"), nic::load),
    kind("nic", Some("macvlan"), nic::load),
    kind("proxy", None, proxy::load),
    kind("none", None, none::load),
    // Known to LXD, refused here until a file implements them.
    kind("unix-char", None, unsupported::load),
    kind("unix-block", None, unsupported::load),
    kind("gpu", None, unsupported::load),
    kind("usb", None, unsupported::load),
    kind("infiniband", None, unsupported::load),
    kind("pci", None, unsupported::load),
    kind("tpm", None, unsupported::load),
];

/// The implementation of device `name`, or why there is none.
pub(crate) fn load(name: &str, config: &DeviceConfig) -> Result<Box<dyn Device>> {
    let kind = config.get("type").map(String::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(DeviceError::NoType(name.into()).into());
    }
    let rows: Vec<&Kind> = KINDS.iter().filter(|k| k.kind == kind).collect();
    if rows.is_empty() {
        return Err(DeviceError::UnknownType {
            device: name.into(),
            kind: kind.into(),
        }
        .into());
    }
    // Only kinds registered by nictype read the key (elsewhere it is just
    // an unknown option of the device).
    let by_nictype = rows.iter().any(|k| k.nictype.is_some());
    let nictype = config
        .get("nictype")
        .map(String::as_str)
        .filter(|_| by_nictype);
    match rows.iter().find(|k| k.nictype == nictype) {
        Some(k) => Ok((k.load)(name, config)),
        None => {
            let supported: Vec<&str> = rows.iter().filter_map(|k| k.nictype).collect();
            Err(DeviceError::UnknownNictype {
                device: name.into(),
                kind: kind.into(),
                nictype: nictype.unwrap_or_default().into(),
                supported: supported.join(", "),
            }
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_type_and_nictype() {
        let mut seen = std::collections::BTreeSet::new();
        for k in KINDS {
            assert!(seen.insert((k.kind, k.nictype)), "{} twice", k.kind);
        }
    }

    #[test]
    fn nictype_is_read_only_where_rows_are_keyed_by_it() {
        let cfg = |pairs: &[(&str, &str)]| -> DeviceConfig {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(load("n", &cfg(&[("type", "nic"), ("nictype", "macvlan")])).is_ok());
        assert!(load("n", &cfg(&[("type", "nic"), ("network", "x")])).is_ok());
        let e = load("n", &cfg(&[("type", "nic"), ("nictype", "")]))
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown nictype \"\""), "{e}");
        // The disk refuses the key itself, as an unknown option.
        let d = load("d", &cfg(&[("type", "disk"), ("nictype", "bridged")])).unwrap();
        assert!(d.validate().is_err());
    }
}
