//! The streamed bulk import: rows are validated and written as they arrive, in chunks,
//! inside one transaction, so that memory holds one chunk (plus the names seen, to refuse
//! duplicates) instead of the whole file, and parsing overlaps the database's work. After
//! the first bad row nothing more is written, but every row is still checked, so that the
//! operator gets every error at once; then the transaction is rolled back. All or none.

use super::DbError;
use super::assets::{AssetInput, ImportError, ImportSummary, Known, RowError, active_model, field_err};
use super::entity::asset::{self, AssetState};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{DatabaseConnection, DatabaseTransaction, EntityTrait, TransactionTrait};
use std::collections::HashSet;

/// Rows per multi-row insert: 1,500 rows of 18 columns stay under SQLite's 32,766 bind
/// parameters (PostgreSQL allows 65,535).
pub const ROWS_PER_INSERT: usize = 1500;

/// Columns an import may overwrite on an existing asset; rotation state is kept.
const IMPORTED_COLUMNS: &[asset::Column] = &[
    asset::Column::CommonName,
    asset::Column::SubjectAlternativeName,
    asset::Column::CertificateAuthority,
    asset::Column::CertificateExpiration,
    asset::Column::DataCenter,
    asset::Column::DeviceModel,
    asset::Column::HostPlatform,
    asset::Column::IpAddress,
    asset::Column::Port,
    asset::Column::Origin,
    asset::Column::OsVersion,
    asset::Column::CertificateValidation,
    asset::Column::KeyAlgorithm,
    asset::Column::Settings,
    asset::Column::NextDueAt,
    asset::Column::UpdatedAt,
];

/// One import in progress. Feed it with [`Importer::push`], end it with
/// [`Importer::finish`]; dropping it unfinished rolls everything back.
pub struct Importer<'k> {
    txn: DatabaseTransaction,
    known: Known<'k>,
    now: DateTime<Utc>,
    seen: HashSet<String>,
    chunk: Vec<AssetInput>,
    errors: Vec<RowError>,
    rows: usize,
}

impl<'k> Importer<'k> {
    /// Opens the transaction.
    pub async fn begin(db: &DatabaseConnection, known: impl Into<Known<'k>>) -> Result<Self, ImportError> {
        Ok(Self {
            txn: db.begin().await.map_err(DbError::from)?,
            known: known.into(),
            now: Utc::now(),
            seen: HashSet::new(),
            chunk: Vec::with_capacity(ROWS_PER_INSERT),
            errors: Vec::new(),
            rows: 0,
        })
    }

    /// Takes the next row of the file: parsed, or the reason it could not be. Errs only
    /// when the database fails.
    pub async fn push(&mut self, row: Result<AssetInput, RowError>) -> Result<(), ImportError> {
        self.rows += 1;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                self.errors.push(e);
                return Ok(());
            }
        };
        let named = |error| RowError { row: self.rows, name: Some(row.system_name.clone()), error };
        if let Err(e) = row.validate(self.known) {
            self.errors.push(named(e));
            return Ok(());
        }
        if !self.seen.insert(row.system_name.trim().to_owned()) {
            self.errors.push(named(field_err("system_name", "appears more than once in the file")));
            return Ok(());
        }
        if self.errors.is_empty() {
            self.chunk.push(row);
            if self.chunk.len() == ROWS_PER_INSERT {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Writes the chunk (nothing is written once a row was bad).
    async fn flush(&mut self) -> Result<(), ImportError> {
        if self.chunk.is_empty() || !self.errors.is_empty() {
            self.chunk.clear();
            return Ok(());
        }
        upsert(&self.txn, &self.chunk, self.now).await?;
        self.chunk.clear();
        Ok(())
    }

    /// Commits every row, or rolls back and names every bad one.
    pub async fn finish(mut self) -> Result<ImportSummary, ImportError> {
        self.flush().await?;
        if !self.errors.is_empty() {
            self.txn.rollback().await.map_err(DbError::from)?;
            return Err(ImportError::Rows(self.errors));
        }
        self.txn.commit().await.map_err(DbError::from)?;
        Ok(ImportSummary { written: self.seen.len() })
    }
}

/// Inserts or updates `rows` by `system_name`. An existing unroutable asset becomes due
/// again, in the same statement as its update (the conflict's `assets.*` are the existing
/// row's values).
async fn upsert(txn: &DatabaseTransaction, rows: &[AssetInput], now: DateTime<Utc>) -> Result<(), DbError> {
    let unroutable = format!("assets.state = '{}'", AssetState::Unroutable.as_str());
    let state = Expr::cust(format!("CASE WHEN {unroutable} THEN '{}' ELSE assets.state END", AssetState::Due.as_str()));
    let last_error = Expr::cust(format!("CASE WHEN {unroutable} THEN NULL ELSE assets.last_error END"));
    asset::Entity::insert_many(rows.iter().map(|r| active_model(r, now)))
        .on_conflict(
            OnConflict::column(asset::Column::SystemName)
                .update_columns(IMPORTED_COLUMNS.iter().copied())
                .value(asset::Column::State, state)
                .value(asset::Column::LastError, last_error)
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}
