//! LXD status codes (used by instances and operations alike).

use serde::{Deserialize, Serialize};

/// The numeric codes of LXD's `status_code` fields; the names are the canonical strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(into = "u16", try_from = "u16")]
pub enum StatusCode {
    OperationCreated = 100,
    Started = 101,
    Stopped = 102,
    Running = 103,
    Cancelling = 104,
    Pending = 105,
    Starting = 106,
    Stopping = 107,
    Aborting = 108,
    Freezing = 109,
    Frozen = 110,
    Thawed = 111,
    Error = 112,
    Ready = 113,
    Success = 200,
    Failure = 400,
    Cancelled = 401,
}

impl StatusCode {
    /// The canonical name LXD puts in `status` fields.
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::OperationCreated => "Operation created",
            StatusCode::Started => "Started",
            StatusCode::Stopped => "Stopped",
            StatusCode::Running => "Running",
            StatusCode::Cancelling => "Cancelling",
            StatusCode::Pending => "Pending",
            StatusCode::Starting => "Starting",
            StatusCode::Stopping => "Stopping",
            StatusCode::Aborting => "Aborting",
            StatusCode::Freezing => "Freezing",
            StatusCode::Frozen => "Frozen",
            StatusCode::Thawed => "Thawed",
            StatusCode::Error => "Error",
            StatusCode::Ready => "Ready",
            StatusCode::Success => "Success",
            StatusCode::Failure => "Failure",
            StatusCode::Cancelled => "Cancelled",
        }
    }

    /// Codes of 200 and above are final for operations.
    pub fn is_final(self) -> bool {
        (self as u16) >= 200
    }
}

impl From<StatusCode> for u16 {
    fn from(s: StatusCode) -> u16 {
        s as u16
    }
}

/// A number that is no LXD status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown status code {0}")]
pub struct UnknownStatus(pub u16);

impl TryFrom<u16> for StatusCode {
    type Error = UnknownStatus;
    fn try_from(v: u16) -> Result<Self, UnknownStatus> {
        use StatusCode::*;
        Ok(match v {
            100 => OperationCreated,
            101 => Started,
            102 => Stopped,
            103 => Running,
            104 => Cancelling,
            105 => Pending,
            106 => Starting,
            107 => Stopping,
            108 => Aborting,
            109 => Freezing,
            110 => Frozen,
            111 => Thawed,
            112 => Error,
            113 => Ready,
            200 => Success,
            400 => Failure,
            401 => Cancelled,
            other => return Err(UnknownStatus(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_u16() {
        for code in [100u16, 102, 103, 110, 112, 200, 400, 401] {
            let s = StatusCode::try_from(code).unwrap();
            assert_eq!(u16::from(s), code);
        }
        assert_eq!(StatusCode::try_from(999), Err(UnknownStatus(999)));
        assert!(StatusCode::Success.is_final());
        assert!(!StatusCode::Running.is_final());
    }
}
