//! The inventory's numbers for the Prometheus fleet gauges: assets per state, issuer and
//! data center; certificates expiring within a window; dead letters waiting per class;
//! and, for a fleet small enough, each asset's expiry. Each is one aggregate query
//! (the expiry windows read the `certificate_expiration` index range only), so a refresh
//! costs a few queries whatever the fleet's size, and never loads whole rows.

use super::DbError;
use super::entity::asset;
use super::entity::dead_letter::{self, DeadLetterStatus};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

/// Assets counted under one (state, issuer, data center).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    /// The state's spelling (`ok`, `due`, ...).
    pub state: String,
    /// The issuer's name.
    pub certificate_authority: String,
    /// The data center (empty when unset).
    pub data_center: String,
    /// How many.
    pub count: u64,
}

/// Certificates under one (issuer, data center) expiring by a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCount {
    /// The issuer's name.
    pub certificate_authority: String,
    /// The data center (empty when unset).
    pub data_center: String,
    /// How many.
    pub count: u64,
}

/// One asset's certificate expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetExpiry {
    /// The asset's unique name.
    pub system_name: String,
    /// The issuer's name.
    pub certificate_authority: String,
    /// The data center (empty when unset).
    pub data_center: String,
    /// The certificate's notAfter.
    pub expires_at: DateTime<Utc>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Assets per state, issuer and data center.
pub async fn assets_by_state(db: &impl ConnectionTrait) -> Result<Vec<StateCount>, DbError> {
    use asset::Column as A;
    let rows: Vec<(String, String, Option<String>, i64)> = asset::Entity::find()
        .select_only()
        .column(A::State)
        .column(A::CertificateAuthority)
        .column(A::DataCenter)
        .column_as(A::Id.count(), "n")
        .group_by(A::State)
        .group_by(A::CertificateAuthority)
        .group_by(A::DataCenter)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(state, ca, dc, n)| StateCount {
            state,
            certificate_authority: ca,
            data_center: dc.unwrap_or_default(),
            count: count(n),
        })
        .collect())
}

/// Certificates expiring at or before `until` (expired ones included), per issuer and
/// data center.
pub async fn expiring_by(db: &impl ConnectionTrait, until: DateTime<Utc>) -> Result<Vec<GroupCount>, DbError> {
    use asset::Column as A;
    let rows: Vec<(String, Option<String>, i64)> = asset::Entity::find()
        .select_only()
        .column(A::CertificateAuthority)
        .column(A::DataCenter)
        .column_as(A::Id.count(), "n")
        .filter(A::CertificateExpiration.lte(until))
        .group_by(A::CertificateAuthority)
        .group_by(A::DataCenter)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(ca, dc, n)| GroupCount {
            certificate_authority: ca,
            data_center: dc.unwrap_or_default(),
            count: count(n),
        })
        .collect())
}

/// Assets with a known certificate expiry.
pub async fn with_expiry(db: &impl ConnectionTrait) -> Result<u64, DbError> {
    let n: Option<i64> = asset::Entity::find()
        .select_only()
        .column_as(asset::Column::Id.count(), "n")
        .filter(asset::Column::CertificateExpiration.is_not_null())
        .into_tuple()
        .one(db)
        .await?;
    Ok(n.map_or(0, count))
}

/// Name, issuer, data centre and expiry: the columns [`per_asset`] reads.
type ExpiryRow = (String, String, Option<String>, Option<DateTime<Utc>>);

/// The expiry of every asset that has one (only the four columns the series need).
pub async fn per_asset(db: &impl ConnectionTrait) -> Result<Vec<AssetExpiry>, DbError> {
    use asset::Column as A;
    let rows: Vec<ExpiryRow> = asset::Entity::find()
        .select_only()
        .column(A::SystemName)
        .column(A::CertificateAuthority)
        .column(A::DataCenter)
        .column(A::CertificateExpiration)
        .filter(A::CertificateExpiration.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, ca, dc, at)| {
            Some(AssetExpiry {
                system_name: name,
                certificate_authority: ca,
                data_center: dc.unwrap_or_default(),
                expires_at: at?,
            })
        })
        .collect())
}

/// Dead letters waiting for an operator, per error class.
pub async fn pending_dead_letters(db: &impl ConnectionTrait) -> Result<Vec<(String, u64)>, DbError> {
    use dead_letter::Column as D;
    let rows: Vec<(String, i64)> = dead_letter::Entity::find()
        .select_only()
        .column(D::ErrorClass)
        .column_as(D::Id.count(), "n")
        .filter(D::Status.eq(DeadLetterStatus::Pending))
        .group_by(D::ErrorClass)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(class, n)| (class, count(n))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::entity::asset::AssetState;
    use sea_orm::{ActiveModelTrait, Set};

    async fn add(db: &sea_orm::DatabaseConnection, name: &str, state: AssetState, dc: Option<&str>, days: Option<i64>) {
        let now = Utc::now();
        asset::ActiveModel {
            system_name: Set(name.into()),
            common_name: Set(format!("{name}.test")),
            subject_alternative_name: Set(serde_json::json!([])),
            certificate_authority: Set("internal".into()),
            certificate_expiration: Set(days.map(|d| now + chrono::Duration::days(d))),
            data_center: Set(dc.map(str::to_owned)),
            host_platform: Set("local".into()),
            certificate_validation: Set(false),
            key_algorithm: Set("ecdsa-p256".into()),
            settings: Set(serde_json::json!({})),
            state: Set(state),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn aggregates_group_by_state_issuer_and_data_center() {
        let db = crate::db::connect("sqlite::memory:", std::time::Duration::from_secs(5)).await.unwrap();
        add(&db, "a", AssetState::Ok, Some("dc1"), Some(40)).await;
        add(&db, "b", AssetState::Ok, Some("dc1"), Some(10)).await;
        add(&db, "c", AssetState::Due, Some("dc2"), Some(1)).await;
        add(&db, "d", AssetState::Due, None, Some(-1)).await;
        add(&db, "e", AssetState::Dead, None, None).await;

        let mut states = assets_by_state(&db).await.unwrap();
        states.sort_by(|a, b| (&a.state, &a.data_center).cmp(&(&b.state, &b.data_center)));
        let got: Vec<(&str, &str, u64)> =
            states.iter().map(|s| (s.state.as_str(), s.data_center.as_str(), s.count)).collect();
        assert_eq!(got, [("dead", "", 1), ("due", "", 1), ("due", "dc2", 1), ("ok", "dc1", 2)]);

        let within = |days| expiring_by(&db, Utc::now() + chrono::Duration::days(days));
        let mut two = within(2).await.unwrap();
        two.sort_by(|a, b| a.data_center.cmp(&b.data_center));
        let two: Vec<(&str, u64)> = two.iter().map(|g| (g.data_center.as_str(), g.count)).collect();
        assert_eq!(two, [("", 1), ("dc2", 1)], "the expired one counts as expiring");
        let thirty: u64 = within(30).await.unwrap().iter().map(|g| g.count).sum();
        assert_eq!(thirty, 3);

        assert_eq!(with_expiry(&db).await.unwrap(), 4);
        let mut each: Vec<String> = per_asset(&db).await.unwrap().into_iter().map(|a| a.system_name).collect();
        each.sort();
        assert_eq!(each, ["a", "b", "c", "d"]);
        assert!(pending_dead_letters(&db).await.unwrap().is_empty());
    }
}
