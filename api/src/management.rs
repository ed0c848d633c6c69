//! RabbitMQ's management API, read for what AMQP itself cannot tell: unacknowledged
//! counts and the in and out message rates of each queue (`GET /api/queues/{vhost}`).
//! Optional (`api.broker_management_url`); the credentials are those of `amqp_url`, and
//! neither appears in an error.

use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// One queue's numbers from the management API.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRates {
    /// Messages delivered and not yet acknowledged.
    pub unacked: u64,
    /// Messages published per second (recent average).
    pub in_rate: f64,
    /// Messages delivered per second (recent average).
    pub out_rate: f64,
}

#[derive(Deserialize)]
struct Rate {
    #[serde(default)]
    rate: f64,
}

#[derive(Deserialize, Default)]
struct Stats {
    publish_details: Option<Rate>,
    deliver_get_details: Option<Rate>,
}

#[derive(Deserialize)]
struct Queue {
    name: String,
    #[serde(default)]
    messages_unacknowledged: u64,
    #[serde(default)]
    message_stats: Option<Stats>,
}

/// The vhost and credentials of an AMQP URL (`amqp://user:pass@host:port/vhost`).
fn parts(amqp_url: &str) -> Result<(String, String, String), String> {
    let u = url::Url::parse(amqp_url).map_err(|_| "amqp_url is not a URL".to_owned())?;
    let decode = percent_decode;
    let vhost = match u.path().trim_start_matches('/') {
        "" => "/".to_owned(),
        v => decode(v),
    };
    let user = if u.username().is_empty() { "guest".to_owned() } else { decode(u.username()) };
    let pass = decode(u.password().unwrap_or("guest"));
    Ok((vhost, user, pass))
}

/// Reads every queue of `amqp_url`'s vhost, by name.
pub async fn queues(base: &str, amqp_url: &str, timeout: Duration) -> Result<HashMap<String, QueueRates>, String> {
    let (vhost, user, pass) = parts(amqp_url)?;
    let vhost = crate::dashboard::layout::seg(&vhost);
    let url =
        format!("{}/api/queues/{vhost}?columns=name,messages_unacknowledged,message_stats", base.trim_end_matches('/'));
    let client = CLIENT.get_or_try_init(|| client(timeout)).await?;
    let res = client
        .get(&url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .map_err(|e| format!("the broker's management API is not reachable: {}", without_url(&e)))?;
    if !res.status().is_success() {
        return Err(format!("the broker's management API answered {}", res.status()));
    }
    let list: Vec<Queue> =
        res.json().await.map_err(|_| "the broker's management API answered something unexpected".to_owned())?;
    Ok(list
        .into_iter()
        .map(|q| {
            let stats = q.message_stats.unwrap_or_default();
            let rate = |r: Option<Rate>| r.map_or(0.0, |r| r.rate);
            let rates = QueueRates {
                unacked: q.messages_unacknowledged,
                in_rate: rate(stats.publish_details),
                out_rate: rate(stats.deliver_get_details),
            };
            (q.name, rates)
        })
        .collect())
}

/// One client for every read (HTTPS trusts the system's roots).
static CLIENT: tokio::sync::OnceCell<reqwest::Client> = tokio::sync::OnceCell::const_new();

async fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    let roots = tokio::task::spawn_blocking(|| {
        let mut store = rustls::RootCertStore::empty();
        store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        store
    })
    .await
    .map_err(|_| "loading the trust roots failed".to_owned())?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|_| "the HTTP client could not be built".to_owned())
}

/// Decodes `%XX` escapes (URL user, password and path).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A reqwest error's text without its URL.
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection refused".to_owned()
    } else {
        "request failed".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::parts;

    #[test]
    fn vhost_and_credentials_come_from_the_amqp_url() {
        let (v, u, p) = parts("amqp://guest:s%40cret@127.0.0.1:5672/certfleet-demo").unwrap();
        assert_eq!((v.as_str(), u.as_str(), p.as_str()), ("certfleet-demo", "guest", "s@cret"));
        assert_eq!(parts("amqp://127.0.0.1:5672").unwrap().0, "/");
        assert_eq!(parts("amqp://u:p@h/%2F").unwrap().0, "/");
    }
}
