//! `certfleet login` / `logout` and where a remote command's token comes from:
//! `CERTFLEET_TOKEN` first (a session token or an API key), else the session saved by
//! `login` in `$XDG_CONFIG_HOME/certfleet/sessions.json` (mode 0600, checked).

use super::{Api, Server};
use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

/// The environment variable that carries a token or API key.
pub const TOKEN_ENV: &str = "CERTFLEET_TOKEN";

/// One saved login.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    username: String,
    token: String,
    expires_at: DateTime<Utc>,
}

/// Every saved login, by server URL.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    sessions: BTreeMap<String, Saved>,
}

/// `$XDG_CONFIG_HOME/certfleet/sessions.json`, or `~/.config/certfleet/sessions.json`.
fn store_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME").filter(|v| !v.is_empty()).context("neither XDG_CONFIG_HOME nor HOME is set")?,
        )
        .join(".config"),
    };
    Ok(base.join("certfleet").join("sessions.json"))
}

fn load() -> anyhow::Result<(PathBuf, Store)> {
    let path = store_path()?;
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((path, Store::default())),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!("{} holds tokens but is readable by others (mode {mode:04o}); run `chmod 600` on it", path.display());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let store = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged; delete it and log in again", path.display()))?;
    Ok((path, store))
}

/// Writes the store atomically: a 0600 temp file beside it, then a rename.
fn save(path: &std::path::Path, store: &Store) -> anyhow::Result<()> {
    let dir = path.parent().context("the sessions file has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = serde_json::to_writer_pretty(&mut file, store)
        .map_err(anyhow::Error::from)
        .and_then(|()| file.sync_all().map_err(anyhow::Error::from));
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::from)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// The token for `server`: `CERTFLEET_TOKEN`, else the saved login.
pub fn token_for(server: &Server) -> anyhow::Result<String> {
    if let Some(token) = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_owned());
    }
    let key = server.key();
    let (_, store) = load()?;
    let Some(saved) = store.sessions.get(&key) else {
        bail!("not logged in to {key}: run `certfleet --server {key} login`, or set {TOKEN_ENV} to a token or API key");
    };
    if saved.expires_at <= Utc::now() {
        bail!(
            "your session with {key} as {} expired at {}; run `certfleet --server {key} login` again",
            saved.username,
            saved.expires_at.format("%Y-%m-%d %H:%M:%SZ")
        );
    }
    Ok(saved.token.clone())
}

/// The password: prompted without echo on a terminal, else the first line of stdin.
fn read_password(server: &str, username: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {username} at {server}: ")).context("reading the password")?
    } else {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the password from stdin")?;
        text.lines().next().unwrap_or_default().to_owned()
    };
    if password.is_empty() {
        bail!("no password given (type it at the prompt or pipe it on stdin)");
    }
    Ok(password)
}

/// `certfleet --server URL login [USERNAME]`: logs in and saves the session token.
pub async fn login(server: Server, username: Option<String>) -> anyhow::Result<()> {
    let username = match username {
        Some(u) => u,
        None => std::env::var("USER").context("give the USERNAME to log in as")?,
    };
    let key = server.key();
    let password = read_password(&key, &username)?;
    let api = Api::new(server, None)?;
    let answer: certfleet_api::routes::session::TokenAnswer = api
        .post(&["user", "v1", "authenticate"], &serde_json::json!({"username": username, "password": password}))
        .await?;
    let (path, mut store) = load()?;
    let expires_at = answer.expires_at;
    store.sessions.insert(key.clone(), Saved { username: username.clone(), token: answer.token, expires_at });
    save(&path, &store)?;
    println!("logged in to {key} as {username} until {}", expires_at.format("%Y-%m-%d %H:%M:%SZ"));
    Ok(())
}

/// `certfleet --server URL logout`: ends the saved session on the server (the token stops
/// working at once), then forgets it here, whatever the server answered.
pub async fn logout(server: Server) -> anyhow::Result<()> {
    let key = server.key();
    let (path, mut store) = load()?;
    let Some(saved) = store.sessions.remove(&key) else {
        println!("not logged in to {key}");
        return Ok(());
    };
    let ended = if saved.expires_at > Utc::now() {
        super::Api::new(server, Some(saved.token.clone()))?.delete(&["user", "v1", "authenticate"]).await
    } else {
        Ok(())
    };
    save(&path, &store)?;
    match ended {
        Ok(()) => println!("logged out of {key}"),
        Err(e) => println!(
            "forgot the session for {key}, but the server did not end it ({e:#}); the token works until {}",
            saved.expires_at.format("%Y-%m-%d %H:%M:%SZ")
        ),
    }
    Ok(())
}
