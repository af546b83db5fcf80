//! Background operations (`/1.0/operations`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{StatusCode, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationClass {
    Task,
    Websocket,
    Token,
}

/// An operation as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Operation {
    pub id: String,
    pub class: OperationClass,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub status: String,
    pub status_code: u16,
    /// LXD sends `null` for operations without resources (image uploads).
    #[serde(default, deserialize_with = "crate::serde_util::null_default")]
    pub resources: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub may_cancel: bool,
    #[serde(default)]
    pub err: String,
    #[serde(default)]
    pub location: String,
}

impl Operation {
    pub fn status(&self) -> Option<StatusCode> {
        StatusCode::try_from(self.status_code).ok()
    }

    pub fn is_final(&self) -> bool {
        self.status().map(StatusCode::is_final).unwrap_or(false)
    }
}

/// `GET /1.0/operations?recursion=0`: URLs grouped by lowercased status.
pub type OperationList = BTreeMap<String, Vec<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lxd_null_resources() {
        let op: Operation = serde_json::from_str(
            r#"{"id":"x","class":"task","description":"Downloading image","created_at":"2026-11-22T13:15:04.667338226Z",
                "updated_at":"2026-11-22T13:15:04.667338226Z","status":"Success","status_code":200,"resources":null,
                "metadata":{"fingerprint":"ab"},"may_cancel":false,"err":"","location":"none"}"#,
        )
        .unwrap();
        assert!(op.resources.is_empty());
        assert!(op.is_final());
    }
}
