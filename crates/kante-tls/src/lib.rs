//! Kante's TLS pieces, shared by the daemon's HTTPS listener and the
//! client: self-signed key pairs as LXD makes them (ECDSA P-384, long
//! validity, the key file `0600`), certificate fingerprints (sha256 of the
//! DER, lower-case hex, as LXD shows them), parsing of certificates as
//! clients send them (PEM, DER, or base64 DER), and rustls configurations:
//! a server that asks every client for a certificate but requires none
//! (trust is decided later, by fingerprint), and a client that trusts
//! exactly one pinned server certificate. Also the stored form of trust
//! passwords (`password`: salted PBKDF2-HMAC-SHA256, never the password).

mod config;
mod keypair;
mod password;

pub use config::{
    ca_client_config, client_config, server_config, system_ca_file, ServerPin, TLS_VERSIONS,
};
pub use keypair::{
    common_name, decode_base64, encode_base64, load_or_create, parse_certificate, CertError,
    KeyPair, Role,
};
pub use password::{hash_password, pbkdf2_sha256, verify_password};
pub use rustls;

use sha2::{Digest, Sha256};

/// A certificate's fingerprint as LXD shows it: sha256 of the DER, hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}
