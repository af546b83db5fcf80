//! Projects (`/1.0/projects`): Kante has one, `default`, and says so.

use serde::{Deserialize, Serialize};

use crate::serde_util::{null_default, string_map};
use crate::ConfigMap;

/// A project as `GET /1.0/projects/{name}` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Project {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub used_by: Vec<String>,
}

/// The writable part of a project: the `PUT`/`PATCH` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProjectPut {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
}
