//! Messages on exec's control websocket (kante-engine's `parse_control`):
//! a signal is always a real signal number, never 0 or a negative one.
#![no_main]

use kante_engine::fuzzing::{parse_control, Control};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for interactive in [false, true] {
        match parse_control(text, interactive) {
            Control::Signal(n) => assert!((1..=64).contains(&n), "signal {n}"),
            Control::Resize { .. } => assert!(interactive),
            Control::Ignore => {}
        }
    }
    // The message type itself, as clients and daemon share it.
    if let Ok(msg) = serde_json::from_str::<kante_api::exec::ExecControl>(text) {
        let again = serde_json::to_string(&msg).expect("serialises");
        let back: kante_api::exec::ExecControl = serde_json::from_str(&again).expect("reads back");
        assert_eq!(back.command, msg.command);
        assert_eq!(back.signal, msg.signal);
    }
});
