//! Hiding secrets in URLs before they reach a log line or an error message.

/// Returns `url` with any password replaced by `****`. Text that does not parse as a URL is
/// returned with everything between `://` and `@` hidden, so a secret never leaks either way.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("****"));
            }
            parsed.to_string()
        }
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(start), Some(at)) if at > start => format!("{}****{}", &url[..start + 3], &url[at..]),
            _ => url.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"), "amqp://guest:****@127.0.0.1:5672/%2f");
        assert_eq!(redact_url("postgres://u:p@db/x"), "postgres://u:****@db/x");
        assert_eq!(redact_url("sqlite://certfleet.db?mode=rwc"), "sqlite://certfleet.db?mode=rwc");
        assert!(!redact_url("weird://a:b@c d").contains('b'));
    }
}
