//! Passwords: the rule (at least 12 characters, not the username), argon2id hashing and
//! verification off the async runtime, and a dummy hash so an unknown user costs the same.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Minimum password length, in characters.
pub const MIN_LEN: usize = 12;

/// The rule, as said in errors.
pub const RULE: &str = "must be at least 12 characters long and must not be the username";

/// Checks the password rule.
pub fn check_rule(username: &str, password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_LEN || password.eq_ignore_ascii_case(username) {
        return Err(RULE);
    }
    Ok(())
}

/// Hashes with argon2id (default parameters), on a blocking thread.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let mut bytes = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Verifies `password` against a PHC string, on a blocking thread. A malformed hash
/// verifies as false.
pub async fn verify(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A random password for `certfleet users create` without stdin: 24 characters.
pub fn generate() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_says_what_it_wants() {
        assert_eq!(check_rule("alice", "short"), Err(RULE));
        assert_eq!(check_rule("alice-at-work", "Alice-At-Work"), Err(RULE));
        assert_eq!(check_rule("alice", "correct horse battery"), Ok(()));
        assert!(check_rule("alice", &generate()).is_ok());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery".into(), h.clone()).await);
        assert!(!verify("wrong horse battery".into(), h).await);
        assert!(!verify("x".into(), "not a hash".into()).await);
    }
}
