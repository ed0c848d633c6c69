//! API key secrets: `cfk_<key id>_<secret>`, 256 random bits, shown once; only the
//! SHA-256 of the secret is stored and compared in constant time.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The bearer prefix that marks an API key (anything else is a session token).
pub const PREFIX: &str = "cfk_";

/// A freshly made key: its public id, the bearer to show once, and the stored hash.
pub struct Minted {
    /// Public id.
    pub key_id: String,
    /// The full bearer secret.
    pub bearer: String,
    /// SHA-256 of the secret part, hex.
    pub secret_sha256: String,
}

/// Makes a new key.
pub fn mint() -> Minted {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut id);
    rand::Rng::fill(&mut rand::rng(), &mut secret);
    let key_id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    Minted { bearer: format!("{PREFIX}{key_id}_{secret}"), secret_sha256: digest(&secret), key_id }
}

/// SHA-256 of a secret, hex.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits a bearer into (key id, secret).
pub fn parse(bearer: &str) -> Option<(&str, &str)> {
    bearer.strip_prefix(PREFIX)?.split_once('_')
}

/// Constant-time equality of two hex digests.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_parse_and_match_only_their_hash() {
        let k = mint();
        let (id, secret) = parse(&k.bearer).unwrap();
        assert_eq!(id, k.key_id);
        assert!(same(&digest(secret), &k.secret_sha256));
        assert!(!same(&digest("other"), &k.secret_sha256));
        assert!(parse("eyJhbGciOi.x.y").is_none());
    }
}
