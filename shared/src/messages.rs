//! Rules for text that people read (error messages, CLI and API output): no Rust debug
//! formatting (`Some(..)`, `None`, `Ok(..)`, `Err(..)`, `Struct { field: .. }`), no dangling
//! separators, and no cause printed twice along an error chain. Every crate's tests run its
//! error types through [`check_error`], so a regression fails a test.

use std::error::Error;

/// Checks one piece of user-facing text; says what is wrong with it.
pub fn check_text(text: &str) -> Result<(), String> {
    for token in ["Some(", "Ok(", "Err(", "Box(", "Arc("] {
        if text.contains(token) {
            return Err(format!("{token}..) (Rust debug formatting) in: {text}"));
        }
    }
    if has_word(text, "None") {
        return Err(format!("`None` (Rust debug formatting) in: {text}"));
    }
    if looks_like_debug_struct(text) {
        return Err(format!("a debug-formatted struct in: {text}"));
    }
    let trimmed = text.trim_end();
    if trimmed.ends_with(':') || text.contains(": )") || text.contains(":  ") {
        return Err(format!("a dangling separator in: {text:?}"));
    }
    Ok(())
}

/// Checks an error and every error in its `source()` chain with [`check_text`], and that
/// no error's message already contains its source's message (which a chain printed as
/// `outer: inner` would then show twice).
pub fn check_error(e: &(dyn Error + 'static)) -> Result<(), String> {
    let mut current: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        check_text(&text)?;
        if let Some(source) = err.source() {
            let inner = source.to_string();
            if !inner.trim().is_empty() && text.contains(&inner) {
                return Err(format!("the message repeats its source ({inner}): {text}"));
            }
        }
        current = err.source();
    }
    Ok(())
}

/// `word` standing alone (not part of a longer identifier) and not the English "None of".
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = &text[i + word.len()..];
        let alone = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
        alone(before) && alone(after.chars().next()) && !after.starts_with(" of")
    })
}

/// `Name { field: ...` as `{:?}` prints a struct.
fn looks_like_debug_struct(text: &str) -> bool {
    text.match_indices(" { ").any(|(i, _)| {
        let name_ok = text[..i].chars().next_back().is_some_and(char::is_alphanumeric);
        let rest = &text[i + 3..];
        let field: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        name_ok && !field.is_empty() && rest[field.len()..].starts_with(": ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::AmqpError;
    use crate::config::ConfigError;
    use crate::db::DbError;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn the_rules_catch_debug_formatting_and_dangling_separators() {
        assert!(check_text("reload command failed (exit Some(1)): ").is_err());
        assert!(check_text("status None").is_err());
        assert!(check_text("got Err(Timeout)").is_err());
        assert!(check_text("bad CertificateInfo { serial: \"01\" }").is_err());
        assert!(check_text("reload command \"false\" exited with status 1: ").is_err());
        assert!(check_text("reload command \"false\" exited with status 1 (no output)").is_ok());
        assert!(check_text("None of the routes match; NoneSuch is fine").is_ok());
        assert!(check_text("settings must be a JSON object like {\"a\": 1}").is_ok());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_repeated_source_is_caught() {
        let e = Repeats(std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"));
        assert!(check_error(&e).unwrap_err().contains("repeats its source"));
    }

    fn lapin_error() -> lapin::Error {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        lapin::Error::from(lapin::ErrorKind::IOError(Arc::new(io)))
    }

    /// One of every shared (and wire) error, with realistic causes.
    #[test]
    fn every_shared_error_reads_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "scan_interval = \"soonish\"\n").unwrap();
        let figment = crate::Config::load_from(Some(&bad), Vec::new()).unwrap_err();
        let missing = crate::Config::load_from(Some(&dir.path().join("nope.toml")), Vec::new()).unwrap_err();
        let db_err = || sea_orm::DbErr::Custom("no such table: assets".into());
        let json_err = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let url = "postgres://u:***@db:5432/x".to_owned();
        let errors: Vec<Box<dyn Error>> = vec![
            Box::new(figment),
            Box::new(missing),
            Box::new(ConfigError::Value { key: "lease", reason: "must be longer than zero".into() }),
            Box::new(DbError::Connect { url: url.clone(), cause: db_err() }),
            Box::new(DbError::Unreachable { url: url.clone(), reason: "Connection refused (os error 111)".into() }),
            Box::new(DbError::ConnectTimeout { url: url.clone(), timeout: Duration::from_secs(10) }),
            Box::new(DbError::Migrate { url, cause: db_err() }),
            Box::new(DbError::from(db_err())),
            Box::new(DbError::Invalid("bad".into())),
            Box::new(DbError::NotFound("asset \"x\"".into())),
            Box::new(AmqpError::Connect { url: "amqp://h".into(), cause: lapin_error() }),
            Box::new(AmqpError::Op { op: "basic.publish", cause: lapin_error() }),
            Box::new(AmqpError::Timeout { op: "queue.declare", timeout: Duration::from_secs(5) }),
            Box::new(certfleet_proto::WireError::from(json_err)),
            Box::new(certfleet_proto::WireError::WrongKind {
                expected: certfleet_proto::MessageKind::RotationJob,
                found: certfleet_proto::MessageKind::RotationResult,
            }),
            Box::new("telnet".parse::<certfleet_proto::Driver>().unwrap_err()),
        ];
        for e in &errors {
            check_error(e.as_ref()).unwrap();
        }
        let text = errors[0].to_string();
        assert!(text.contains("scan_interval"), "{text}");
    }
}
