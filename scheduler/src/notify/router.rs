//! Routing, as a pure function of the rules: which channels an event goes to. Rules are
//! tried in order; the first match wins unless it says `continue = true`. A rule's
//! expiry thresholds decide which `certificate_expiring` events it takes.
//!
//! `rotation_succeeded` is opt-in: only rules naming it take it, except that a PagerDuty
//! channel also hears of it wherever it could have been paged for the asset, so that its
//! incident is resolved when the asset is ok again.

use certfleet_proto::{AssetSummary, EventKind, Severity};
use certfleet_shared::config::NotifyConfig;
use std::collections::HashSet;
use std::time::Duration;

/// One rule, ready to match.
#[derive(Debug, Clone)]
struct Rule {
    events: Vec<EventKind>,
    data_center: Vec<String>,
    host_platform: Vec<String>,
    certificate_authority: Vec<String>,
    severity: Option<Severity>,
    channels: Vec<String>,
    continue_matching: bool,
    thresholds: Vec<Duration>,
}

/// What routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The event kind.
    pub kind: EventKind,
    /// Its severity.
    pub severity: Severity,
    /// The asset, if the event is about one.
    pub asset: Option<&'a AssetSummary>,
    /// For `certificate_expiring`: the threshold crossed.
    pub threshold: Option<Duration>,
}

/// The routing table.
#[derive(Debug, Clone, Default)]
pub struct Router {
    rules: Vec<Rule>,
    pagerduty: HashSet<String>,
}

fn within(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l == v))
}

/// Kinds whose page a `rotation_succeeded` resolves.
fn pages(kind: EventKind) -> bool {
    matches!(kind, EventKind::RotationDead | EventKind::CertificateExpiring | EventKind::CertificateExpired)
}

impl Rule {
    fn takes_kind(&self, kind: EventKind) -> bool {
        if self.events.is_empty() { kind.on_by_default() } else { self.events.contains(&kind) }
    }

    fn matches_asset(&self, asset: Option<&AssetSummary>) -> bool {
        within(&self.data_center, asset.and_then(|a| a.data_center.as_deref()))
            && within(&self.host_platform, asset.map(|a| a.host_platform.as_str()))
            && within(&self.certificate_authority, asset.map(|a| a.certificate_authority.as_str()))
    }

    fn matches(&self, f: &Facts<'_>) -> bool {
        self.takes_kind(f.kind)
            && self.matches_asset(f.asset)
            && self.severity.is_none_or(|min| f.severity >= min)
            && (f.kind != EventKind::CertificateExpiring || f.threshold.is_some_and(|t| self.thresholds.contains(&t)))
    }
}

impl Router {
    /// The table of `config`'s rules; `pagerduty` names the PagerDuty channels.
    pub fn new(config: &NotifyConfig, pagerduty: HashSet<String>) -> Self {
        let rules = config
            .rule
            .iter()
            .map(|r| Rule {
                events: r.events.clone(),
                data_center: r.data_center.clone(),
                host_platform: r.host_platform.clone(),
                certificate_authority: r.certificate_authority.clone(),
                severity: r.severity,
                channels: r.channels.clone(),
                continue_matching: r.continue_matching,
                thresholds: config.thresholds_of(r),
            })
            .collect();
        Self { rules, pagerduty }
    }

    /// The channels `f` goes to, each once, in rule order.
    pub fn route(&self, f: &Facts<'_>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |ch: &String| {
            if !out.contains(ch) {
                out.push(ch.clone());
            }
        };
        for rule in &self.rules {
            let matched = if rule.matches(f) {
                rule.channels.iter().for_each(&mut add);
                true
            } else if f.kind == EventKind::RotationSucceeded
                && rule.matches_asset(f.asset)
                && rule.channels.iter().any(|c| self.pagerduty.contains(c))
                && EventKind::ALL.iter().any(|k| pages(*k) && rule.takes_kind(*k))
            {
                rule.channels.iter().filter(|c| self.pagerduty.contains(*c)).for_each(&mut add);
                true
            } else {
                false
            };
            if matched && !rule.continue_matching {
                break;
            }
        }
        out
    }

    /// Whether any rule could take events of `kind` (so emitters can skip building them).
    pub fn wants(&self, kind: EventKind) -> bool {
        self.rules.iter().any(|r| {
            r.takes_kind(kind)
                || (kind == EventKind::RotationSucceeded
                    && r.channels.iter().any(|c| self.pagerduty.contains(c))
                    && EventKind::ALL.iter().any(|k| pages(*k) && r.takes_kind(*k)))
        })
    }

    /// Every threshold some rule taking `certificate_expiring` watches, most distant
    /// first: the scan evaluates these, and routing then picks the rules per threshold.
    pub fn expiry_thresholds(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self
            .rules
            .iter()
            .filter(|r| r.takes_kind(EventKind::CertificateExpiring))
            .flat_map(|r| r.thresholds.iter().copied())
            .collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.dedup();
        all
    }

    /// Whether any rule takes `certificate_expired`.
    pub fn watches_expiry(&self) -> bool {
        self.wants(EventKind::CertificateExpiring) || self.wants(EventKind::CertificateExpired)
    }
}

/// The expiry watch of `config`'s rules: the thresholds to evaluate, or `None` when no
/// rule takes `certificate_expiring` or `certificate_expired` (then the scan does not
/// look at expiry at all).
pub fn expiry_watch(config: &NotifyConfig) -> Option<Vec<Duration>> {
    let router = Router::new(config, HashSet::new());
    router.watches_expiry().then(|| router.expiry_thresholds())
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_proto::AssetId;

    fn config(text: &str) -> NotifyConfig {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        certfleet_shared::Config::load_from(Some(file.path()), Vec::new()).unwrap().config.notify
    }

    const CHANNELS: &str = "[notify.channels.slack]\nkind = \"slack\"\nwebhook_url = { env = \"A\" }\n\
        [notify.channels.mail]\nkind = \"email\"\nhost = \"smtp.test\"\nfrom = \"cf@test\"\nto = [\"pki@test\"]\n\
        [notify.channels.pd]\nkind = \"pagerduty\"\nrouting_key = { env = \"B\" }\n";

    fn asset(dc: &str) -> AssetSummary {
        AssetSummary {
            asset_id: AssetId(1),
            system_name: "web-01".into(),
            common_name: "web-01.test".into(),
            ip_address: None,
            host_platform: "linux".into(),
            os_version: None,
            data_center: Some(dc.into()),
            device_model: None,
            certificate_authority: "internal".into(),
            certificate_expiration: None,
        }
    }

    fn facts(kind: EventKind, asset: &AssetSummary, threshold: Option<u64>) -> Facts<'_> {
        Facts {
            kind,
            severity: kind.severity(threshold.map(|d| d * 86_400)),
            asset: Some(asset),
            threshold: threshold.map(|d| Duration::from_secs(d * 86_400)),
        }
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let c = config(&format!(
            "{CHANNELS}[[notify.rule]]\nevents = [\"rotation_dead\"]\ndata_center = [\"fra1\"]\nchannels = [\"pd\"]\ncontinue = true\n\
             [[notify.rule]]\nevents = [\"rotation_dead\", \"certificate_expiring\"]\nchannels = [\"slack\"]\n\
             [[notify.rule]]\nchannels = [\"mail\"]\n"
        ));
        let r = Router::new(&c, HashSet::from(["pd".to_owned()]));
        let (fra, ams) = (asset("fra1"), asset("ams1"));
        assert_eq!(r.route(&facts(EventKind::RotationDead, &fra, None)), vec!["pd", "slack"]);
        assert_eq!(r.route(&facts(EventKind::RotationDead, &ams, None)), vec!["slack"]);
        assert_eq!(r.route(&facts(EventKind::AssetUnroutable, &ams, None)), vec!["mail"]);
        // Opt-in: no rule names rotation_succeeded, but the pager resolves where it paged.
        assert_eq!(r.route(&facts(EventKind::RotationSucceeded, &fra, None)), vec!["pd"]);
        assert!(r.route(&facts(EventKind::RotationSucceeded, &ams, None)).is_empty());
        assert!(r.wants(EventKind::RotationSucceeded));
    }

    #[test]
    fn rules_have_their_own_thresholds_and_severity() {
        let c = config(&format!(
            "{CHANNELS}[[notify.rule]]\nevents = [\"certificate_expiring\"]\nseverity = \"critical\"\nchannels = [\"pd\"]\ncontinue = true\n\
             [[notify.rule]]\nevents = [\"certificate_expiring\"]\nexpiry_thresholds = [\"7d\"]\nchannels = [\"slack\"]\ncontinue = true\n\
             [[notify.rule]]\nevents = [\"certificate_expiring\"]\nchannels = [\"mail\"]\n"
        ));
        let r = Router::new(&c, HashSet::new());
        let a = asset("fra1");
        assert_eq!(r.route(&facts(EventKind::CertificateExpiring, &a, Some(30))), vec!["mail"]);
        assert_eq!(r.route(&facts(EventKind::CertificateExpiring, &a, Some(7))), vec!["slack"]);
        assert_eq!(r.route(&facts(EventKind::CertificateExpiring, &a, Some(2))), vec!["pd", "mail"]);
        let day = |d: u64| Duration::from_secs(d * 86_400);
        assert_eq!(r.expiry_thresholds(), vec![day(30), day(15), day(7), day(2)]);
        assert!(!r.wants(EventKind::RotationSucceeded));
    }
}
