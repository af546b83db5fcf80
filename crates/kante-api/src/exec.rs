//! `POST /1.0/instances/{name}/exec` and its control channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::serde_util::{lenient_bool, lenient_i64, null_default, string_map};

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExecPost {
    #[serde(default, deserialize_with = "null_default")]
    pub command: Vec<String>,
    #[serde(default, deserialize_with = "string_map")]
    pub environment: BTreeMap<String, String>,
    #[serde(
        rename = "wait-for-websocket",
        default,
        deserialize_with = "lenient_bool"
    )]
    pub wait_for_websocket: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub interactive: bool,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub width: i64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub height: i64,
    #[serde(rename = "record-output", default, deserialize_with = "lenient_bool")]
    pub record_output: bool,
    /// Container uid; pylxd sends null.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub user: i64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub group: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub cwd: String,
}

/// A message on the exec control websocket. Width and height travel as strings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExecControl {
    #[serde(default, deserialize_with = "null_default")]
    pub command: String,
    #[serde(default)]
    pub args: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub signal: i64,
}

impl ExecControl {
    pub fn resize(width: u16, height: u16) -> Self {
        let mut args = BTreeMap::new();
        args.insert("width".to_string(), width.to_string());
        args.insert("height".to_string(), height.to_string());
        ExecControl {
            command: "window-resize".into(),
            args: Some(args),
            signal: 0,
        }
    }

    pub fn signal(sig: i32) -> Self {
        ExecControl {
            command: "signal".into(),
            args: None,
            signal: sig as i64,
        }
    }
}

/// Metadata of an exec operation: the websocket secrets per fd.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExecFds {
    pub fds: BTreeMap<String, String>,
}

/// Reads `metadata.return` of a finished exec operation.
pub fn exec_return(metadata: &Value) -> Option<i64> {
    metadata.get("return").and_then(Value::as_i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pylxd_nulls_are_accepted() {
        let e: ExecPost = serde_json::from_str(
            r#"{"command":["true"],"environment":{},"wait-for-websocket":true,"interactive":false,
                "user":null,"group":null,"cwd":null}"#,
        )
        .unwrap();
        assert_eq!(e.user, 0);
        assert_eq!(e.cwd, "");
        assert!(e.wait_for_websocket);
    }

    #[test]
    fn control_messages_match_lxc() {
        let c: ExecControl = serde_json::from_str(
            r#"{"command":"window-resize","args":{"height":"40","width":"120"},"signal":0}"#,
        )
        .unwrap();
        assert_eq!(c.args.unwrap()["width"], "120");
        let c: ExecControl =
            serde_json::from_str(r#"{"command":"signal","args":null,"signal":15}"#).unwrap();
        assert_eq!(c.signal, 15);
    }
}
