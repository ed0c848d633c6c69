//! sea-orm entities, one file per table.

pub mod asset;
pub mod dead_letter;
pub mod leader_lease;
pub mod rotation;
pub mod scheduler_state;
