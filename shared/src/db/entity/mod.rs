//! sea-orm entities, one file per table.

pub mod api_key;
pub mod asset;
pub mod audit;
pub mod dead_letter;
pub mod dead_letter_headers;
pub mod leader_lease;
pub mod revoked_token;
pub mod role;
pub mod rotation;
pub mod scheduler_state;
pub mod user;
pub mod worker;
