//! Background operations (`/1.0/operations`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{StatusCode, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationClass {
    Task,
    Websocket,
    Token,
}

/// An operation as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub class: OperationClass,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub status: String,
    pub status_code: u16,
    pub resources: BTreeMap<String, Vec<String>>,
    pub metadata: Value,
    pub may_cancel: bool,
    pub err: String,
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
