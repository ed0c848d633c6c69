//! The ACME account: created once per (directory, contact) and reused by every worker and
//! restart. Its credentials (with the account's private key) are stored encrypted with
//! AES-256-GCM under the configured key in `account_dir/<sha256(directory|contact)>.json.enc`
//! (mode 0600). Concurrent first starts each write a candidate and hard-link it into place:
//! exactly one link succeeds, and the others load the winner's account.

use super::errors;
use super::http::AcmeHttp;
use crate::issuer::IssuerError;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use certfleet_shared::config::AcmeIssuerConfig;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File format marker (version 1: magic, 12-byte nonce, ciphertext with tag).
const MAGIC: &[u8] = b"certfleet-acme-account-v1\n";

/// Reads a secret file, refusing one that group or others may read. Errors never quote it.
pub async fn read_secret_file(path: &Path, what: &str) -> Result<String, IssuerError> {
    let fail = |e: String| IssuerError::Internal(format!("{what} {}: {e}", path.display()));
    let meta = tokio::fs::metadata(path).await.map_err(|e| fail(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!("mode is {mode:o}, must be 0600 (no group or other access)")));
    }
    let text = tokio::fs::read_to_string(path).await.map_err(|e| fail(e.to_string()))?;
    Ok(text.trim().to_owned())
}

/// The AES-256-GCM key that protects the stored account.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// Loads the key from `path` (32 bytes, base64, mode 0600).
    pub(crate) async fn load(path: &Path) -> Result<Self, IssuerError> {
        let what = "account_key_encryption_key_file";
        let text = read_secret_file(path, what).await?;
        let bad = || IssuerError::Internal(format!("{what} {}: must hold 32 bytes, base64", path.display()));
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(|_| bad())?;
        if bytes.len() != 32 {
            return Err(bad());
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad())?;
        Ok(Self { key: LessSafeKey::new(key) })
    }

    fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, IssuerError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| IssuerError::Internal("no randomness for a nonce".into()))?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed)
            .map_err(|_| IssuerError::Internal("encrypting the ACME account failed".into()))?;
        Ok([MAGIC, &nonce, &sealed].concat())
    }

    fn open(&self, aad: &[u8], file: &[u8], path: &Path) -> Result<Vec<u8>, IssuerError> {
        let bad = |why: &str| IssuerError::Internal(format!("ACME account file {}: {why}", path.display()));
        let rest = file.strip_prefix(MAGIC).ok_or_else(|| bad("not a certfleet account file"))?;
        if rest.len() < NONCE_LEN {
            return Err(bad("truncated"));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad("truncated"))?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| bad("cannot decrypt: wrong account_key_encryption_key_file, or the file was altered"))?;
        Ok(plain.to_vec())
    }
}

/// Where the account for `directory_url` + `contact` is stored, relative to `account_dir`.
pub(crate) fn file_name(directory_url: &str, contact: &str) -> String {
    format!("{}.json.enc", hex::encode(Sha256::digest(format!("{directory_url}|{contact}"))))
}

/// Loads the stored account or registers a new one (with EAB when configured).
pub(crate) async fn load_or_create(
    config: &AcmeIssuerConfig,
    sealer: &Sealer,
    http: &AcmeHttp,
    eab: Option<&ExternalAccountKey>,
    timeout: Duration,
) -> Result<Account, IssuerError> {
    let name = file_name(&config.directory_url, &config.contact);
    let path = config.account_dir.join(&name);
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return load(sealer, http, &path, name.as_bytes(), timeout).await;
    }
    let contact = format!("mailto:{}", config.contact.trim_start_matches("mailto:"));
    let new = NewAccount { contact: &[&contact], terms_of_service_agreed: true, only_return_existing: false };
    let create = Account::builder_with_http(Box::new(http.clone())).create(&new, config.directory_url.clone(), eab);
    let (account, credentials) = tokio::time::timeout(timeout, create)
        .await
        .map_err(|_| IssuerError::Unavailable(format!("registering the ACME account timed out after {timeout:?}")))?
        .map_err(|e| errors::map(e, "registering the ACME account"))?;
    let plain = serde_json::to_vec(&credentials).map_err(|e| IssuerError::Internal(e.to_string()))?;
    let sealed = sealer.seal(name.as_bytes(), &plain)?;
    if store(&config.account_dir, &path, &sealed).await? {
        tracing::info!(account = account.id(), file = %path.display(), "registered ACME account");
        Ok(account)
    } else {
        tracing::info!(file = %path.display(), "another worker registered the ACME account first; using it");
        load(sealer, http, &path, name.as_bytes(), timeout).await
    }
}

async fn load(
    sealer: &Sealer,
    http: &AcmeHttp,
    path: &Path,
    aad: &[u8],
    timeout: Duration,
) -> Result<Account, IssuerError> {
    let file = tokio::fs::read(path)
        .await
        .map_err(|e| IssuerError::Internal(format!("ACME account file {}: {e}", path.display())))?;
    let plain = sealer.open(aad, &file, path)?;
    let credentials: AccountCredentials = serde_json::from_slice(&plain)
        .map_err(|_| IssuerError::Internal(format!("ACME account file {}: not valid credentials", path.display())))?;
    let restore = Account::builder_with_http(Box::new(http.clone())).from_credentials(credentials);
    tokio::time::timeout(timeout, restore)
        .await
        .map_err(|_| IssuerError::Unavailable(format!("fetching the ACME directory timed out after {timeout:?}")))?
        .map_err(|e| errors::map(e, "fetching the ACME directory"))
}

/// Writes `sealed` to a private candidate and links it to `path`. `false`: `path` existed.
async fn store(dir: &Path, path: &Path, sealed: &[u8]) -> Result<bool, IssuerError> {
    let fail = |op: &str, p: &Path, e: std::io::Error| IssuerError::Internal(format!("{op} {}: {e}", p.display()));
    tokio::fs::create_dir_all(dir).await.map_err(|e| fail("create", dir, e))?;
    let candidate: PathBuf = dir.join(format!(".account-{}-{:08x}.tmp", std::process::id(), rand::random::<u32>()));
    crate::fsutil::write_durably(&candidate, sealed, 0o600, true)
        .await
        .map_err(|e| fail(e.op, &candidate, e.source))?;
    let linked = tokio::fs::hard_link(&candidate, path).await;
    let _ = tokio::fs::remove_file(&candidate).await;
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(fail("link", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    async fn sealer(dir: &Path, bytes: &[u8], mode: u32) -> Result<Sealer, IssuerError> {
        let path = dir.join(format!("kek-{mode:o}-{}", bytes.len()));
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "{}", base64::engine::general_purpose::STANDARD.encode(bytes)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        Sealer::load(&path).await
    }

    #[tokio::test]
    async fn seal_open_round_trip_and_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = sealer(dir.path(), &[7u8; 32], 0o600).await.unwrap();
        let b = sealer(dir.path(), &[8u8; 32], 0o400).await.unwrap();
        let sealed = a.seal(b"aad", b"{\"secret\":1}").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(a.open(b"aad", &sealed, dir.path()).unwrap(), b"{\"secret\":1}");
        let err = b.open(b"aad", &sealed, dir.path()).unwrap_err().to_string();
        assert!(err.contains("wrong account_key_encryption_key_file"), "{err}");
        assert!(a.open(b"other", &sealed, dir.path()).is_err());
    }

    #[tokio::test]
    async fn key_file_checks_never_quote_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = sealer(dir.path(), &[7u8; 32], 0o644).await.err().unwrap().to_string();
        assert!(err.contains("0600") && err.contains("644"), "{err}");
        let err = sealer(dir.path(), &[7u8; 16], 0o600).await.err().unwrap().to_string();
        assert!(
            err.contains("32 bytes") && !err.contains(&base64::engine::general_purpose::STANDARD.encode([7u8; 16]))
        );
        let err = Sealer::load(&dir.path().join("missing")).await.err().unwrap().to_string();
        assert!(err.contains("account_key_encryption_key_file"), "{err}");
    }

    #[tokio::test]
    async fn second_store_loses_the_race() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acct/x.json.enc");
        assert!(store(&dir.path().join("acct"), &path, b"one").await.unwrap());
        assert!(!store(&dir.path().join("acct"), &path, b"two").await.unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path().join("acct")).unwrap().count(), 1);
    }
}
