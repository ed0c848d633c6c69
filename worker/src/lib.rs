//! certfleet worker: consumes rotation jobs for the drivers it is tagged with, runs each
//! job through a [`driver::PlatformDriver`] and an [`issuer::Issuer`], and reports the
//! result, the retry or the dead letter through the one mapping in [`consumer`].

pub mod certinfo;
pub mod consumer;
pub mod driver;
pub mod fsutil;
pub mod heartbeat;
pub mod issuer;
pub mod keygen;
#[cfg(test)]
mod messages_tests;
pub mod outcome;
pub mod rotation;
pub mod runtime;
pub mod validate;

pub use runtime::{WorkerOptions, run};
