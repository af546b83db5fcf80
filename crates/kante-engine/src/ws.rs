//! A websocket as the engine sees it: two channels of messages. The HTTP
//! layer pumps a real websocket into and out of them, so the engine never
//! depends on a web framework.

use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMsg {
    Binary(Vec<u8>),
    Text(String),
}

/// One connected websocket. Dropping `outgoing` closes the socket; the end
/// of `incoming` means the client went away.
pub struct WsConn {
    pub incoming: mpsc::Receiver<WsMsg>,
    pub outgoing: mpsc::Sender<WsMsg>,
}

impl WsConn {
    /// A connected pair for tests: (engine side, client side).
    pub fn pair() -> (WsConn, WsConn) {
        let (a_tx, a_rx) = mpsc::channel(64);
        let (b_tx, b_rx) = mpsc::channel(64);
        (
            WsConn {
                incoming: a_rx,
                outgoing: b_tx,
            },
            WsConn {
                incoming: b_rx,
                outgoing: a_tx,
            },
        )
    }
}
