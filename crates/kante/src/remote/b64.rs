//! Standard base64 for trust tokens and certificates sent as base64 DER:
//! kante-tls's, with the padding a pasted token may have lost put back.

pub fn encode(data: &[u8]) -> String {
    kante_tls::encode_base64(data)
}

/// Decodes standard base64; whitespace is ignored and missing padding is
/// tolerated. `None` for anything else.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let mut clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if clean.is_empty() || clean.len() % 4 == 1 {
        return None;
    }
    while !clean.len().is_multiple_of(4) {
        clean.push('=');
    }
    kante_tls::decode_base64(clean.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_lost_padding() {
        for data in [&b"f"[..], b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            assert_eq!(decode(&encode(data)).unwrap(), data);
        }
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(decode("Zm8").unwrap(), b"fo");
        assert_eq!(decode(" Zm9v\nYmFy ").unwrap(), b"foobar");
        assert!(decode("Z").is_none());
        assert!(decode("").is_none());
        assert!(decode("!!!!").is_none());
    }
}
