//! The 7-field response envelope every LXD response carries.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::status::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    Sync,
    Async,
    Error,
}

/// A response as it travels on the wire. All seven keys are always present
/// (Ansible reads `error_code` even on success). `M` is the metadata's type:
/// a `Value` in general, a borrowed or typed value where one side knows it,
/// which spares large lists a detour through a `Value` tree.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(bound = "M: schemars::JsonSchema + Default + serde::Serialize")]
pub struct Envelope<M = Value> {
    #[serde(rename = "type")]
    pub kind: ResponseType,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub error_code: u16,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub metadata: M,
}

impl<M> Envelope<M> {
    /// A synchronous success carrying `metadata`.
    pub fn sync(metadata: M) -> Self {
        Envelope {
            kind: ResponseType::Sync,
            status: StatusCode::Success.name().into(),
            status_code: StatusCode::Success as u16,
            operation: String::new(),
            error_code: 0,
            error: String::new(),
            metadata,
        }
    }
}

impl Envelope {
    /// An empty success: LXD sends `{}` as metadata.
    pub fn empty() -> Self {
        Self::sync(Value::Object(Default::default()))
    }

    /// Success of a create answered with 201 and a `Location` header: metadata is null.
    pub fn created() -> Self {
        Self::sync(Value::Null)
    }

    /// A background operation was created; `metadata` is the operation object.
    pub fn async_op(operation_url: String, operation: Value) -> Self {
        Envelope {
            kind: ResponseType::Async,
            status: StatusCode::OperationCreated.name().into(),
            status_code: StatusCode::OperationCreated as u16,
            operation: operation_url,
            error_code: 0,
            error: String::new(),
            metadata: operation,
        }
    }

    /// An error; the HTTP status equals `code`.
    pub fn error(code: u16, message: impl Into<String>) -> Self {
        Envelope {
            kind: ResponseType::Error,
            status: String::new(),
            status_code: 0,
            operation: String::new(),
            error_code: code,
            error: message.into(),
            metadata: Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_envelope_has_seven_keys() {
        for env in [
            Envelope::empty(),
            Envelope::created(),
            Envelope::error(404, "Instance not found"),
            Envelope::async_op("/1.0/operations/x".into(), Value::Null),
        ] {
            let v = serde_json::to_value(&env).unwrap();
            let obj = v.as_object().unwrap();
            for key in [
                "type",
                "status",
                "status_code",
                "operation",
                "error_code",
                "error",
                "metadata",
            ] {
                assert!(obj.contains_key(key), "missing {key} in {v}");
            }
            assert_eq!(obj.len(), 7);
        }
    }

    #[test]
    fn typed_metadata_serialises_like_a_value() {
        let list = vec!["a".to_string(), "b".to_string()];
        let typed = serde_json::to_string(&Envelope::sync(&list)).unwrap();
        let plain = serde_json::to_string(&Envelope::sync(serde_json::json!(list))).unwrap();
        assert_eq!(typed, plain);
        let back: Envelope<Vec<String>> = serde_json::from_str(&typed).unwrap();
        assert_eq!(back.metadata, list);
    }

    #[test]
    fn error_shape_matches_lxd() {
        let v = serde_json::to_value(Envelope::error(404, "Instance not found")).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["status"], "");
        assert_eq!(v["status_code"], 0);
        assert_eq!(v["error_code"], 404);
        assert!(v["metadata"].is_null());
    }
}
