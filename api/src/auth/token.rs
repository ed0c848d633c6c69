//! Session tokens: HS256 JWTs with `sub`, `role`, `iat`, `exp` and `jti`, signed with the
//! key from `token_signing_key_file` (mode 0600, checked) or a random key per start.

use certfleet_shared::db::entity::role::Role;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The claims of a session token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Username.
    pub sub: String,
    /// Role at issue time.
    pub role: Role,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Token id.
    pub jti: String,
}

/// Why the signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("token_signing_key_file {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl Signer {
    /// From key bytes (at least 32).
    pub fn from_secret(secret: &[u8], ttl: Duration) -> Self {
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), ttl }
    }

    /// From the configured file (mode 0600, at least 32 bytes), or a random key.
    pub fn load(path: Option<&Path>, ttl: Duration) -> Result<Self, KeyError> {
        let Some(path) = path else {
            let mut key = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut key);
            return Ok(Self::from_secret(&key, ttl));
        };
        let bytes = certfleet_shared::config::api::read_secret_file(path)
            .map_err(|reason| KeyError::Read { path: path.display().to_string(), reason })?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < 32 {
            return Err(KeyError::Read {
                path: path.display().to_string(),
                reason: "holds fewer than 32 bytes".into(),
            });
        }
        Ok(Self::from_secret(trimmed, ttl))
    }

    /// Issues a token for `user`; returns it and its expiry.
    pub fn issue(&self, user: &str, role: Role, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), String> {
        let exp = now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::minutes(30));
        let claims = Claims {
            sub: user.to_owned(),
            role,
            iat: now.timestamp(),
            exp: exp.timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| e.to_string())?;
        Ok((token, exp))
    }

    /// Checks signature and expiry (no leeway).
    pub fn check(&self, token: &str) -> Result<Claims, String> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub", "iat"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired; log in again".to_owned(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "the token's signature is not valid".to_owned(),
            _ => "the token is malformed".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_expire_and_need_the_key() {
        let s = Signer::from_secret(&[7u8; 32], Duration::from_secs(60));
        let (t, _) = s.issue("alice", Role::Admin, Utc::now()).unwrap();
        let c = s.check(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("alice", Role::Admin));
        assert!(!c.jti.is_empty());
        let (old, _) = s.issue("alice", Role::Admin, Utc::now() - chrono::Duration::hours(1)).unwrap();
        assert!(s.check(&old).unwrap_err().contains("expired"));
        let other = Signer::from_secret(&[8u8; 32], Duration::from_secs(60));
        assert!(other.check(&t).unwrap_err().contains("signature"));
    }
}
