//! The audit event (FORMAT.md section 1): building, validation and canonical bytes.
//!
//! An [`AuditEvent`] is immutable once built. Building validates every rule of
//! the format and computes the canonical bytes `E` and `event_hash = H(E)`
//! exactly once, on the producer's side, so the drainer only seals.
//! Cloning is cheap (one reference count).
//!
//! ```
//! use audit_core::AuditEvent;
//! use serde_json::json;
//!
//! let event = AuditEvent::new(
//!     "governance.refusal",
//!     "agent:alice",
//!     json!({"rule": "R001", "path": "secrets/api"}),
//! )?;
//! assert_eq!(event.event_type(), "governance.refusal");
//! let again = AuditEvent::from_canonical(event.canonical_json())?;
//! assert_eq!(again, event);
//!
//! // Refusals are typed and say what is wrong.
//! let too_big = AuditEvent::new("t", "a", json!({"n": 9007199254740993u64}));
//! assert!(too_big.unwrap_err().to_string().contains("$.payload.n"));
//! # Ok::<(), audit_core::EventError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::canonical;
use crate::digest::Digest;
use crate::error::EventError;

/// Maximum byte length of `type`.
pub const MAX_TYPE_BYTES: usize = 256;
/// Maximum byte length of `actor`.
pub const MAX_ACTOR_BYTES: usize = 1024;
/// Default limit of the canonical event size: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Limits applied when an event is built or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Largest accepted canonical size `E` in bytes.
    pub max_event_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// One validated audit event with its canonical bytes and hash.
#[derive(Clone)]
pub struct AuditEvent {
    inner: Arc<EventInner>,
}

struct EventInner {
    id: String,
    event_type: String,
    actor: String,
    time: String,
    canonical: String,
    hash: Digest,
}

impl AuditEvent {
    /// Builds an event with a fresh UUIDv7 id, the current time and the
    /// default limits.
    pub fn new(
        event_type: impl Into<String>,
        actor: impl Into<String>,
        payload: Value,
    ) -> Result<Self, EventError> {
        Self::builder(event_type, actor, payload).build()
    }

    /// Starts a builder, to set the id, time or limits explicitly.
    pub fn builder(
        event_type: impl Into<String>,
        actor: impl Into<String>,
        payload: Value,
    ) -> AuditEventBuilder {
        AuditEventBuilder {
            id: None,
            time: None,
            event_type: event_type.into(),
            actor: actor.into(),
            payload,
            limits: EventLimits::default(),
        }
    }

    /// Parses stored canonical bytes `E` with the default limits, validating
    /// every rule and that the bytes are canonical.
    pub fn from_canonical(canonical: &str) -> Result<Self, EventError> {
        Self::from_canonical_with(canonical, EventLimits::default())
    }

    /// Parses stored canonical bytes `E` with the given limits.
    pub fn from_canonical_with(canonical: &str, limits: EventLimits) -> Result<Self, EventError> {
        check_size(canonical.len(), limits)?;
        let value: Value =
            serde_json::from_str(canonical).map_err(|error| EventError::NotJson {
                detail: error.to_string(),
            })?;
        let Value::Object(mut members) = value else {
            return Err(EventError::WrongShape {
                detail: "not an object".into(),
            });
        };
        if members.len() != 5 {
            let names: Vec<&str> = members.keys().map(String::as_str).collect();
            return Err(EventError::WrongShape {
                detail: format!("found members {names:?}"),
            });
        }
        let id = take_string(&mut members, "id")?;
        let event_type = take_string(&mut members, "type")?;
        let actor = take_string(&mut members, "actor")?;
        let time = take_string(&mut members, "time")?;
        let payload = members
            .remove("payload")
            .ok_or_else(|| EventError::WrongShape {
                detail: "member `payload` is missing".into(),
            })?;
        let event = AuditEventBuilder {
            id: Some(id),
            time: Some(time),
            event_type,
            actor,
            payload,
            limits,
        }
        .build()?;
        if event.canonical_json() != canonical {
            return Err(EventError::NotCanonical);
        }
        Ok(event)
    }

    /// The event id (lowercase hyphenated UUID): the idempotency key.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The event type, e.g. `governance.refusal`.
    pub fn event_type(&self) -> &str {
        &self.inner.event_type
    }

    /// The agent or principal that acted.
    pub fn actor(&self) -> &str {
        &self.inner.actor
    }

    /// The event time, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn time(&self) -> &str {
        &self.inner.time
    }

    /// The canonical bytes `E`.
    pub fn canonical_json(&self) -> &str {
        &self.inner.canonical
    }

    /// `event_hash = H(E)`.
    pub fn event_hash(&self) -> Digest {
        self.inner.hash
    }

    /// The payload, parsed from `E`.
    pub fn payload(&self) -> Value {
        serde_json::from_str::<Value>(&self.inner.canonical)
            .ok()
            .and_then(|mut value| value.get_mut("payload").map(Value::take))
            .unwrap_or(Value::Null)
    }
}

impl PartialEq for AuditEvent {
    fn eq(&self, other: &Self) -> bool {
        self.inner.canonical == other.inner.canonical
    }
}

impl Eq for AuditEvent {}

impl fmt::Debug for AuditEvent {
    /// Shows the id, type and actor only: payloads may be sensitive.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditEvent")
            .field("id", &self.inner.id)
            .field("type", &self.inner.event_type)
            .field("actor", &self.inner.actor)
            .field("time", &self.inner.time)
            .field("bytes", &self.inner.canonical.len())
            .finish()
    }
}

/// Builder of an [`AuditEvent`], from [`AuditEvent::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct AuditEventBuilder {
    id: Option<String>,
    time: Option<String>,
    event_type: String,
    actor: String,
    payload: Value,
    limits: EventLimits,
}

impl AuditEventBuilder {
    /// Uses this id instead of a fresh UUIDv7 (e.g. when re-submitting).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Uses this time (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) instead of now.
    pub fn time(mut self, time: impl Into<String>) -> Self {
        self.time = Some(time.into());
        self
    }

    /// Applies these limits instead of the defaults.
    pub fn limits(mut self, limits: EventLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Validates every rule and computes the canonical bytes and hash.
    pub fn build(self) -> Result<AuditEvent, EventError> {
        let id = match self.id {
            Some(id) => validate_id(id)?,
            None => uuid::Uuid::now_v7().hyphenated().to_string(),
        };
        let time = match self.time {
            Some(time) => validate_time(time)?,
            None => now_utc(),
        };
        validate_type(&self.event_type)?;
        validate_actor(&self.actor)?;
        canonical::check_numbers(&self.payload, "$.payload")?;
        let mut members = Map::new();
        members.insert("id".into(), Value::String(id));
        members.insert("type".into(), Value::String(self.event_type));
        members.insert("actor".into(), Value::String(self.actor));
        members.insert("time".into(), Value::String(time));
        members.insert("payload".into(), self.payload);
        let canonical = canonical::serialize_checked(&members)?;
        check_size(canonical.len(), self.limits)?;
        let hash = Digest(Sha256::digest(canonical.as_bytes()).into());
        Ok(AuditEvent {
            inner: Arc::new(EventInner {
                id: string_member(&mut members, "id"),
                event_type: string_member(&mut members, "type"),
                actor: string_member(&mut members, "actor"),
                time: string_member(&mut members, "time"),
                canonical,
                hash,
            }),
        })
    }
}

fn string_member(members: &mut Map<String, Value>, name: &str) -> String {
    match members.remove(name) {
        Some(Value::String(value)) => value,
        _ => String::new(),
    }
}

fn take_string(members: &mut Map<String, Value>, name: &str) -> Result<String, EventError> {
    match members.remove(name) {
        Some(Value::String(value)) => Ok(value),
        Some(other) => Err(EventError::WrongShape {
            detail: format!("member `{name}` must be a string, got {other}"),
        }),
        None => Err(EventError::WrongShape {
            detail: format!("member `{name}` is missing"),
        }),
    }
}

fn check_size(size: usize, limits: EventLimits) -> Result<(), EventError> {
    if size > limits.max_event_bytes {
        return Err(EventError::TooLarge {
            size,
            limit: limits.max_event_bytes,
        });
    }
    Ok(())
}

fn validate_type(event_type: &str) -> Result<(), EventError> {
    if event_type.is_empty() || event_type.len() > MAX_TYPE_BYTES {
        return Err(EventError::TypeLength {
            len: event_type.len(),
            max: MAX_TYPE_BYTES,
        });
    }
    Ok(())
}

fn validate_actor(actor: &str) -> Result<(), EventError> {
    if actor.len() > MAX_ACTOR_BYTES {
        return Err(EventError::ActorLength {
            len: actor.len(),
            max: MAX_ACTOR_BYTES,
        });
    }
    Ok(())
}

/// Checks that `id` is a lowercase hyphenated UUID.
pub fn validate_id(id: String) -> Result<String, EventError> {
    match uuid::Uuid::try_parse(&id) {
        Ok(parsed) if parsed.hyphenated().to_string() == id => Ok(id),
        _ => Err(EventError::InvalidId { value: id }),
    }
}

/// The time format of FORMAT.md: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// The current UTC time in the event time format.
pub fn now_utc() -> String {
    chrono::Utc::now().format(TIME_FORMAT).to_string()
}

/// Checks that `time` is exactly `YYYY-MM-DDTHH:MM:SS.ffffffZ` and a real instant.
pub fn validate_time(time: String) -> Result<String, EventError> {
    let shape_ok = time.len() == 27
        && time.bytes().enumerate().all(|(index, byte)| match index {
            4 | 7 => byte == b'-',
            10 => byte == b'T',
            13 | 16 => byte == b':',
            19 => byte == b'.',
            26 => byte == b'Z',
            _ => byte.is_ascii_digit(),
        });
    let instant_ok = shape_ok && chrono::NaiveDateTime::parse_from_str(&time, TIME_FORMAT).is_ok();
    if instant_ok {
        Ok(time)
    } else {
        Err(EventError::InvalidTime { value: time })
    }
}
