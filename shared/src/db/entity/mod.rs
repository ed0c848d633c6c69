//! sea-orm entities, one file per table.

pub mod asset;
pub mod dead_letter;
pub mod rotation;
