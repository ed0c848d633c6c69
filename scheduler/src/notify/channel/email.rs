//! E-mail over SMTP with lettre: STARTTLS (required, not opportunistic) or implicit TLS,
//! optional authentication, a plain-text body plus HTML, one message to the whole
//! recipient list. 4xx SMTP answers and connection faults are retried; 5xx are rejected.

use super::{ChannelError, Notifier, Sent, setting};
use crate::notify::render::{self, Links};
use certfleet_proto::Notification;
use certfleet_shared::ConfigError;
use certfleet_shared::config::notify::{EmailConfig, SmtpTls};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};
use std::time::Duration;

/// An SMTP channel.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    host: String,
    timeout: Duration,
}

impl Email {
    pub(super) fn new(
        key: &str,
        c: &EmailConfig,
        env: &dyn Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let mailbox = |field: &str, s: &str| {
            s.parse::<Mailbox>().map_err(|e| setting(format!("{key}.{field}"), format!("\"{s}\": {e}")))
        };
        let from = mailbox("from", &c.from)?;
        let to = c.to.iter().map(|t| mailbox("to", t)).collect::<Result<Vec<_>, _>>()?;
        let tls = match c.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(c.host.clone());
                if let Some(path) = &c.ca_file {
                    let ca_key = format!("{key}.ca_file");
                    let pem =
                        std::fs::read(path).map_err(|e| setting(ca_key.clone(), format!("{}: {e}", path.display())))?;
                    let cert =
                        Certificate::from_pem(&pem).map_err(|e| setting(ca_key, format!("{}: {e}", path.display())))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params.build_rustls().map_err(|e| setting(key.to_owned(), e.to_string()))?;
                if mode == SmtpTls::Implicit { Tls::Wrapper(params) } else { Tls::Required(params) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.as_str())
            .port(c.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&c.username, &c.password) {
            let secret = SecretString::from(password.read_with(&format!("{key}.password"), env)?);
            builder = builder.credentials(Credentials::new(user.clone(), secret.expose_secret().to_owned()));
        }
        Ok(Self { transport: builder.build(), from, to, host: c.host.clone(), timeout })
    }
}

/// The subject line.
pub fn subject(n: &Notification) -> String {
    format!("[certfleet] {}", render::title(n))
}

#[async_trait::async_trait]
impl Notifier for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, n: &Notification, links: &Links) -> Result<Sent, ChannelError> {
        let mut msg = Message::builder().from(self.from.clone()).subject(subject(n));
        for to in &self.to {
            msg = msg.to(to.clone());
        }
        let msg = msg
            .multipart(MultiPart::alternative_plain_html(render::text(n, links), render::html(n, links)))
            .map_err(|e| ChannelError::Rejected(format!("building the message: {e}")))?;
        let sent = tokio::time::timeout(self.timeout * 2, self.transport.send(msg)).await;
        match sent {
            Ok(Ok(resp)) => Ok(Sent { detail: format!("SMTP {}", resp.code()) }),
            Ok(Err(e)) if e.is_permanent() => Err(ChannelError::Rejected(format!("SMTP server {}: {e}", self.host))),
            Ok(Err(e)) => Err(ChannelError::Retry { after: None, cause: format!("SMTP server {}: {e}", self.host) }),
            Err(_) => Err(ChannelError::Retry { after: None, cause: format!("SMTP server {}: timed out", self.host) }),
        }
    }
}
