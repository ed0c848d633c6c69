//! Worker-side settings of the platform drivers: what must not travel in asset settings
//! (credentials) or is the same for every asset a worker serves.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[drivers.*]`: per-driver worker settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriversConfig {
    /// `[drivers.panos]`: the PAN-OS XML API driver.
    pub panos: PanosDriverConfig,
}

/// `[drivers.panos]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PanosDriverConfig {
    /// TOML file (mode 0600 or stricter, checked at each use) mapping a credential name to
    /// `{ username = "...", password = "..." }` or `{ api_key = "..." }`. Assets name the
    /// credential in their settings (`credential = "fw-admins"`); the secret itself never
    /// leaves this file. Without it, `panos` jobs fail as invalid settings.
    pub credentials_file: Option<PathBuf>,
}
