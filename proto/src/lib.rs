//! certfleet wire types: the messages exchanged between scheduler and workers over AMQP.
//!
//! Everything here is plain data with serde: no I/O, no runtime, no database. The wire
//! format is pinned by the golden-JSON test in `tests/golden.rs`; changing a field name is
//! a wire break and needs a new [`WIRE_VERSION`].
#![warn(missing_docs)]

mod driver;
mod envelope;
mod heartbeat;
mod ids;
mod job;
mod notify;
mod result;

pub use driver::{Driver, KeyAlgorithm, UnknownVariant};
pub use envelope::{Envelope, MessageKind, Payload, WIRE_VERSION, WireError};
pub use heartbeat::WorkerHeartbeat;
pub use ids::{AssetId, JobId};
pub use job::RotationJob;
pub use notify::{AssetSummary, Digest, EventKind, Notification, NotificationId, ReasonCount, Severity};
pub use result::{CertificateInfo, DeadKind, ErrorClass, RenewalWindow, RotationOutcome, RotationResult};
