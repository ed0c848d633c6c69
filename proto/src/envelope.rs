//! The versioned envelope every certfleet message travels in.

use crate::{Notification, RotationJob, RotationResult, WorkerHeartbeat};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The current wire version. Receivers reject other versions as malformed.
pub const WIRE_VERSION: u16 = 1;

/// Which payload an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A [`RotationJob`].
    RotationJob,
    /// A [`RotationResult`].
    RotationResult,
    /// A [`Notification`] for one channel.
    Notification,
    /// A [`WorkerHeartbeat`].
    WorkerHeartbeat,
}

impl MessageKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RotationJob => "rotation_job",
            Self::RotationResult => "rotation_result",
            Self::Notification => "notification",
            Self::WorkerHeartbeat => "worker_heartbeat",
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"v": 1, "kind": "...", "body": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// Wire version, [`WIRE_VERSION`] when sent by this build.
    pub v: u16,
    /// Payload kind.
    pub kind: MessageKind,
    /// The payload.
    pub body: T,
}

/// A message that is not a valid certfleet envelope.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or not the expected shape.
    #[error("malformed message: {0}")]
    Malformed(serde_json::Error),
    /// A version this build does not speak.
    #[error("unsupported wire version {found} (this build speaks {WIRE_VERSION})")]
    UnsupportedVersion {
        /// The version found in the message.
        found: u16,
    },
    /// A well-formed envelope of another kind.
    #[error("expected a {expected} message, got {found}")]
    WrongKind {
        /// What the receiver expects.
        expected: MessageKind,
        /// What arrived.
        found: MessageKind,
    },
}

// serde's error is in the message; it is not also a `source()` (a chain would repeat it).
impl From<serde_json::Error> for WireError {
    fn from(e: serde_json::Error) -> Self {
        Self::Malformed(e)
    }
}

/// A payload type with a fixed [`MessageKind`].
pub trait Payload: Serialize + DeserializeOwned {
    /// The kind written into the envelope.
    const KIND: MessageKind;
}

impl Payload for RotationJob {
    const KIND: MessageKind = MessageKind::RotationJob;
}

impl Payload for RotationResult {
    const KIND: MessageKind = MessageKind::RotationResult;
}

impl Payload for Notification {
    const KIND: MessageKind = MessageKind::Notification;
}

impl Payload for WorkerHeartbeat {
    const KIND: MessageKind = MessageKind::WorkerHeartbeat;
}

#[derive(Deserialize)]
struct Header {
    v: u16,
    kind: MessageKind,
}

impl<T: Payload> Envelope<T> {
    /// Serializes `body` in a current-version envelope.
    pub fn encode(body: &T) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a, T> {
            v: u16,
            kind: MessageKind,
            body: &'a T,
        }
        // Serializing plain data structs into a Vec cannot fail.
        serde_json::to_vec(&Out { v: WIRE_VERSION, kind: T::KIND, body }).unwrap_or_default()
    }

    /// Parses an envelope, checking its version and kind before the body.
    pub fn decode(bytes: &[u8]) -> Result<T, WireError> {
        let header: Header = serde_json::from_slice(bytes)?;
        if header.v != WIRE_VERSION {
            return Err(WireError::UnsupportedVersion { found: header.v });
        }
        if header.kind != T::KIND {
            return Err(WireError::WrongKind { expected: T::KIND, found: header.kind });
        }
        let env: Envelope<T> = serde_json::from_slice(bytes)?;
        Ok(env.body)
    }
}
