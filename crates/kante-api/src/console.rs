//! `POST /1.0/instances/{name}/console`: attaching to an instance's console
//! (LXD's `InstanceConsolePost`). The operation's websockets are `0` (the
//! terminal's bytes) and `control` (`window-resize`, as for exec).

use serde::{Deserialize, Serialize};

use crate::serde_util::{lenient_i64, null_default};

/// The body of a console attach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsolePost {
    /// Columns of the client's terminal (0: leave the console's size).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub width: i64,
    /// Rows of the client's terminal (0: leave the console's size).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub height: i64,
    /// `console` (the default when empty) or `vga` (virtual machines only).
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lxc_and_tolerant_bodies_decode() {
        let p: ConsolePost =
            serde_json::from_str(r#"{"width":120,"height":40,"type":"console"}"#).unwrap();
        assert_eq!((p.width, p.height, p.kind.as_str()), (120, 40, "console"));
        let p: ConsolePost = serde_json::from_str(r#"{"type":null}"#).unwrap();
        assert_eq!(p, ConsolePost::default());
        assert_eq!(
            serde_json::to_value(ConsolePost {
                width: 1,
                height: 2,
                kind: "vga".into()
            })
            .unwrap(),
            serde_json::json!({"width": 1, "height": 2, "type": "vga"})
        );
    }
}
