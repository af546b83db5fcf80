//! Trust tokens as LXD makes them: base64 of JSON `{client_name,
//! fingerprint, addresses, secret, expires_at}`; `config trust add` prints
//! one, `remote add NAME TOKEN` spends it.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::b64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub client_name: String,
    pub fingerprint: String,
    pub addresses: Vec<String>,
    pub secret: String,
    /// RFC 3339, or absent/zero when the token does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl Token {
    /// What the user pasted: anything that is not one is refused with a
    /// message saying so.
    pub fn decode(text: &str) -> Result<Token> {
        let Some(bytes) = b64::decode(text.trim()) else {
            bail!("Not a trust token: it is not base64");
        };
        let token: Token = match serde_json::from_slice(&bytes) {
            Ok(t) => t,
            Err(e) => bail!("Not a valid trust token (truncated or not one?): {e}"),
        };
        if token.secret.is_empty() || token.fingerprint.is_empty() || token.addresses.is_empty() {
            bail!("Not a valid trust token: it lacks a secret, a fingerprint or addresses");
        }
        Ok(token)
    }

    pub fn encode(&self) -> String {
        b64::encode(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }

    /// The token of a token operation's metadata (`secret`, `fingerprint`,
    /// `addresses`, `expiresAt`).
    pub fn from_operation(name: &str, meta: &Value) -> Result<Token> {
        let s = |k: &str| {
            meta.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let addresses = meta
            .get("addresses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let token = Token {
            client_name: name.to_string(),
            fingerprint: s("fingerprint"),
            addresses,
            secret: s("secret"),
            expires_at: meta
                .get("expiresAt")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        if token.secret.is_empty() {
            bail!("The server's token operation carries no secret");
        }
        if token.addresses.is_empty() {
            bail!("The server is not listening on the network (set core.https_address first)");
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Token {
        Token {
            client_name: "c2".into(),
            fingerprint: "ab".repeat(32),
            addresses: vec!["192.0.2.1:8443".into(), "[2001:db8::1]:8443".into()],
            secret: "s3cr3t".into(),
            expires_at: Some("2026-12-06T00:00:00Z".into()),
        }
    }

    #[test]
    fn a_token_round_trips_and_decodes_lxds_shape() {
        let t = sample();
        assert_eq!(Token::decode(&t.encode()).unwrap(), t);
        // LXD's own JSON, keys in its order, as lxc would paste it.
        let lxd = r#"{"client_name":"x","fingerprint":"ff","addresses":["10.0.0.1:8443"],"secret":"abc","expires_at":"0001-01-01T00:00:00Z"}"#;
        let got = Token::decode(&b64::encode(lxd.as_bytes())).unwrap();
        assert_eq!(got.addresses, vec!["10.0.0.1:8443".to_string()]);
        assert_eq!(got.secret, "abc");
    }

    #[test]
    fn truncated_or_wrong_tokens_are_refused() {
        let full = sample().encode();
        let cut = &full[..full.len() / 2];
        let e = Token::decode(cut).unwrap_err().to_string();
        assert!(e.contains("truncated") || e.contains("base64"), "{e}");
        let wrong = b64::encode(br#"{"hello":"world"}"#);
        assert!(Token::decode(&wrong).is_err());
        let no_secret = b64::encode(
            br#"{"client_name":"x","fingerprint":"ff","addresses":["a:1"],"secret":""}"#,
        );
        assert!(Token::decode(&no_secret)
            .unwrap_err()
            .to_string()
            .contains("secret"));
        assert!(Token::decode("127.0.0.1:8443").is_err());
        assert!(Token::decode("host.example").is_err());
        assert!(Token::decode("myhost").is_err());
    }

    #[test]
    fn tokens_come_from_the_operation() {
        let meta = serde_json::json!({
            "secret": "s", "fingerprint": "f", "addresses": ["1.2.3.4:8443"],
            "request": {"name": "c2"}, "expiresAt": "2026-12-06T00:00:00Z"
        });
        let t = Token::from_operation("c2", &meta).unwrap();
        assert_eq!((t.secret.as_str(), t.client_name.as_str()), ("s", "c2"));
        let e = Token::from_operation("c2", &serde_json::json!({"secret": "s"})).unwrap_err();
        assert!(e.to_string().contains("core.https_address"));
    }
}
