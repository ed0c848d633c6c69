//! What a notification says, for people: the title, Ottr's fields plus class, reason and
//! attempts, and the links (the asset's dashboard page, the filtered DLQ). Every channel
//! builds its message from these, so they say the same thing.

use certfleet_proto::{EventKind, Notification};

/// Links into the dashboard.
#[derive(Debug, Clone)]
pub struct Links {
    base: String,
}

impl Links {
    /// Links under `base` (`api.base_url()`).
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_owned() }
    }

    /// The dashboard's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `{base}/assets/{system_name}`.
    pub fn asset(&self, system_name: &str) -> String {
        format!("{}/assets/{}", self.base, encode(system_name))
    }

    /// The DLQ filtered to what a digest summarizes.
    pub fn dlq(&self, n: &Notification) -> String {
        let mut url = format!("{}/dlq?status=pending&event={}", self.base, n.event);
        if let Some(d) = &n.digest {
            url.push_str(&format!(
                "&since={}",
                encode(&d.window_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            ));
        }
        url
    }

    /// The link a message leads to: the asset's page, or the DLQ for a digest.
    pub fn primary(&self, n: &Notification) -> String {
        match &n.asset {
            Some(a) if n.digest.is_none() => self.asset(&a.system_name),
            _ => self.dlq(n),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A duration in days (or hours under a day) for people.
pub fn human_seconds(secs: u64) -> String {
    if secs >= 86_400 && secs.is_multiple_of(86_400) {
        let d = secs / 86_400;
        format!("{d} day{}", if d == 1 { "" } else { "s" })
    } else {
        let h = secs.div_ceil(3600);
        format!("{h} hour{}", if h == 1 { "" } else { "s" })
    }
}

/// A one-line title.
pub fn title(n: &Notification) -> String {
    let name = n.system_name();
    if let Some(d) = &n.digest {
        return format!("{} {} events in the last window ({})", d.count, n.event, what(n.event));
    }
    match n.event {
        EventKind::RotationDead => format!("Rotation of {name} failed for good"),
        EventKind::RotationRolledBack => format!("Rotation of {name} was rolled back"),
        EventKind::AssetUnroutable => format!("{name} has no route to a driver"),
        EventKind::CertificateExpiring => match n.threshold_seconds {
            Some(t) => format!("Certificate of {name} expires within {}", human_seconds(t)),
            None => format!("Certificate of {name} expires soon"),
        },
        EventKind::CertificateExpired => format!("Certificate of {name} has expired"),
        EventKind::RotationSucceeded => format!("Certificate of {name} was rotated"),
    }
}

fn what(kind: EventKind) -> &'static str {
    match kind {
        EventKind::RotationDead => "dead-lettered rotations",
        EventKind::RotationRolledBack => "rolled-back rotations",
        EventKind::AssetUnroutable => "assets without a route",
        EventKind::CertificateExpiring => "certificates crossing an expiry threshold",
        EventKind::CertificateExpired => "expired certificates",
        EventKind::RotationSucceeded => "successful rotations",
    }
}

/// The labelled fields of the message, in display order; absent values are left out.
pub fn fields(n: &Notification) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    if let Some(d) = &n.digest {
        f.push(("Events", d.count.to_string()));
        f.push(("Since", d.window_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        if !d.assets.is_empty() {
            f.push(("First assets", d.assets.join(", ")));
        }
        if !d.top_reasons.is_empty() {
            let reasons: Vec<String> = d.top_reasons.iter().map(|r| format!("{} × {}", r.count, r.reason)).collect();
            f.push(("Top reasons", reasons.join("; ")));
        }
        return f;
    }
    if let Some(a) = &n.asset {
        f.push(("Hostname", a.system_name.clone()));
        f.push(("Common name", a.common_name.clone()));
        if let Some(ip) = &a.ip_address {
            f.push(("IPv4", ip.clone()));
        }
        if let Some(exp) = a.certificate_expiration {
            f.push(("Certificate expiration", exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
        f.push(("Platform", a.host_platform.clone()));
        if let Some(os) = &a.os_version {
            f.push(("OS version", os.clone()));
        }
        f.push(("CA", a.certificate_authority.clone()));
        if let Some(dc) = &a.data_center {
            f.push(("Data center", dc.clone()));
        }
    }
    if let Some(class) = n.error_class {
        f.push(("Error class", class.to_string()));
    }
    if let Some(attempts) = n.attempts {
        f.push(("Attempts", attempts.to_string()));
    }
    if let Some(reason) = &n.reason {
        f.push(("Reason", reason.clone()));
    }
    f
}

/// The plain-text body: title, fields, link.
pub fn text(n: &Notification, links: &Links) -> String {
    let mut out = format!("{}\n\n", title(n));
    for (k, v) in fields(n) {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push_str(&format!("\n{}\n", links.primary(n)));
    out
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The HTML body: the same content as [`text`].
pub fn html(n: &Notification, links: &Links) -> String {
    let mut rows = String::new();
    for (k, v) in fields(n) {
        rows.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>\n", html_escape(k), html_escape(&v)));
    }
    let link = html_escape(&links.primary(n));
    format!(
        "<!DOCTYPE html><html><body><h2>{}</h2>\n<table>\n{rows}</table>\n<p><a href=\"{link}\">{link}</a></p></body></html>\n",
        html_escape(&title(n))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_names() {
        let l = Links::new("https://cf.example/");
        assert_eq!(l.asset("web 01/a"), "https://cf.example/assets/web%2001%2Fa");
        assert_eq!(human_seconds(30 * 86_400), "30 days");
        assert_eq!(human_seconds(5400), "2 hours");
        assert_eq!(html_escape("<b>&"), "&lt;b&gt;&amp;");
    }
}
