//! Profiles: named config and device sets that instances inherit, in order.

use serde::{Deserialize, Serialize};

use crate::serde_util::{devices_map, null_default, string_map};
use crate::{ConfigMap, DevicesMap};

/// A profile as `GET /1.0/profiles/{name}` returns it (fields in lxc's YAML order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Profile {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "devices_map")]
    pub devices: DevicesMap,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub used_by: Vec<String>,
}

/// The writable part of a profile: the `PUT`/`PATCH` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProfilePut {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "devices_map")]
    pub devices: DevicesMap,
}

impl From<&Profile> for ProfilePut {
    fn from(p: &Profile) -> Self {
        ProfilePut {
            config: p.config.clone(),
            description: p.description.clone(),
            devices: p.devices.clone(),
        }
    }
}

/// `POST /1.0/profiles`: a name and the writable part, flat on the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProfilesPost {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(flatten)]
    pub put: ProfilePut,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_is_flat_and_nulls_are_tolerated() {
        let post = ProfilesPost {
            name: "p1".into(),
            put: ProfilePut {
                description: "d".into(),
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&post).unwrap();
        assert_eq!(v["name"], "p1");
        assert_eq!(v["description"], "d");
        assert!(v["config"].is_object());
        let back: ProfilesPost = serde_json::from_value(v).unwrap();
        assert_eq!(back, post);

        let p: Profile = serde_json::from_value(serde_json::json!({
            "name": "x", "config": null, "devices": null, "used_by": null, "description": null
        }))
        .unwrap();
        assert!(p.used_by.is_empty() && p.devices.is_empty());

        // What lxc sends on create: numbers as config values, a null name.
        let post: ProfilesPost = serde_json::from_value(serde_json::json!({
            "name": null, "config": {"limits.cpu": 2}, "devices": {"eth0": {"type": "nic"}}
        }))
        .unwrap();
        assert_eq!(post.name, "");
        assert_eq!(post.put.config["limits.cpu"], "2");
        assert_eq!(post.put.devices["eth0"]["type"], "nic");
    }
}
