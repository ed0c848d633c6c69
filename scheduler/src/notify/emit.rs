//! Emitting events: route one event to its channels and publish one confirmed message per
//! channel on `certfleet.notify`. Emitting never fails its caller: a broker refusal is
//! logged, and the rotation path goes on.

use super::router::{Facts, Router};
use certfleet_proto::{AssetId, AssetSummary, EventKind, Notification, NotificationId};
use certfleet_shared::amqp::Publisher;
use certfleet_shared::config::NotifyConfig;
use certfleet_shared::db::entity::asset;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// The one conversion from an inventory row to the asset fields a notification carries.
pub fn summary(a: &asset::Model) -> AssetSummary {
    AssetSummary {
        asset_id: AssetId(a.id),
        system_name: a.system_name.clone(),
        common_name: a.common_name.clone(),
        ip_address: a.ip_address.clone(),
        host_platform: a.host_platform.clone(),
        os_version: a.os_version.clone(),
        data_center: a.data_center.clone(),
        device_model: a.device_model.clone(),
        certificate_authority: a.certificate_authority.clone(),
        certificate_expiration: a.not_after.or(a.certificate_expiration),
    }
}

struct Inner {
    router: Router,
    publisher: Publisher,
    watch: Option<Vec<Duration>>,
}

/// What one [`Events::emit`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Emitted {
    /// Channels the rules routed the event to.
    pub routed: usize,
    /// Copies the broker confirmed.
    pub queued: usize,
}

impl Emitted {
    /// Whether the event was routed somewhere and nothing of it went out (worth another try).
    pub fn lost(&self) -> bool {
        self.routed > 0 && self.queued == 0
    }
}

/// The emitting side, cheap to clone. Without rules it does nothing.
#[derive(Clone, Default)]
pub struct Events {
    inner: Option<Arc<Inner>>,
}

impl Events {
    /// Emits nothing.
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Routes with `config`'s rules and publishes on `publisher`.
    pub fn new(config: &NotifyConfig, pagerduty: HashSet<String>, publisher: Publisher) -> Self {
        if config.rule.is_empty() {
            return Self::off();
        }
        let router = Router::new(config, pagerduty);
        let watch = super::router::expiry_watch(config);
        Self { inner: Some(Arc::new(Inner { router, publisher, watch })) }
    }

    /// Whether some rule takes `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.inner.as_ref().is_some_and(|i| i.router.wants(kind))
    }

    /// The expiry watch's thresholds (as in [`crate::policy::PolicyInputs`]), `None` when
    /// no rule watches expiry: writers that store a later `next_due_at` floor it with these.
    pub fn expiry_watch(&self) -> Option<&[Duration]> {
        self.inner.as_ref().and_then(|i| i.watch.as_deref())
    }

    /// Routes `event` (its `channel` is ignored) and publishes one copy per channel.
    pub async fn emit(&self, event: &Notification) -> Emitted {
        let Some(inner) = &self.inner else { return Emitted::default() };
        let facts = Facts {
            kind: event.event,
            severity: event.severity,
            asset: event.asset.as_ref(),
            threshold: event.threshold_seconds.map(Duration::from_secs),
        };
        let channels = inner.router.route(&facts);
        let routed = channels.len();
        let mut queued = 0;
        for channel in channels {
            let mut n = event.clone();
            n.id = NotificationId::new();
            n.channel = channel;
            match super::publish(&inner.publisher, &n).await {
                Ok(()) => queued += 1,
                Err(e) => warn!(event = %n.event, asset = n.system_name(), channel = %n.channel, error = %e,
                    "could not queue a notification"),
            }
        }
        if queued > 0 {
            debug!(event = %event.event, asset = event.system_name(), queued, "notification queued");
        }
        Emitted { routed, queued }
    }
}
