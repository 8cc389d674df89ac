//! The audit event (FORMAT.md section 1): building, validation and canonical bytes.
//!
//! An [`AuditEvent`] is immutable once built. Building validates every rule of
//! the format and computes the canonical bytes `E` and `event_hash = H(E)`
//! exactly once, on the producer's side, so the drainer only seals.
//! Cloning is cheap (one reference count).
//!
//! `E` is written in one pass into one buffer: the members in their
//! canonical order, the payload canonicalised in place (from a
//! `serde_json::Value`, or from any `Serialize` with
//! [`AuditEvent::from_serialize`], with no `Value` in between), then hashed.
//! The id is a UUIDv7 from `uuid`'s thread-local random source and the time is
//! formatted without chrono's format machinery: building a 300-byte event costs
//! a few microseconds.
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

use serde::Serialize;
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

/// One allocation holds every text of the event: `E`, then the raw type and
/// actor (their escaped forms in `E` may differ). The id and time are ASCII
/// without escapes, so they are read straight out of `E`.
struct EventInner {
    text: Box<str>,
    hash: Digest,
    /// Where `E` ends in `text`; the raw type follows, then the actor.
    canonical_end: u32,
    actor_start: u32,
    id_start: u32,
    time_start: u32,
}

/// Length of a lowercase hyphenated UUID.
const ID_LEN: usize = 36;
/// Length of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const TIME_LEN: usize = 27;

impl EventInner {
    fn slice(&self, start: u32, len: usize) -> &str {
        let start = start as usize;
        self.text.get(start..start + len).unwrap_or_default()
    }

    fn canonical(&self) -> &str {
        self.text
            .get(..self.canonical_end as usize)
            .unwrap_or_default()
    }
}

impl AuditEvent {
    /// Builds an event with a fresh UUIDv7 id, the current time and the
    /// default limits.
    pub fn new(
        event_type: impl AsRef<str>,
        actor: impl AsRef<str>,
        payload: Value,
    ) -> Result<Self, EventError> {
        let mut id = uuid::Uuid::encode_buffer();
        let time = now_utc();
        let members = Members::validated(
            fresh_id(&mut id),
            event_type.as_ref(),
            actor.as_ref(),
            &time,
        )?;
        assemble(members, EventLimits::default(), PAYLOAD_CAPACITY, |out| {
            canonical::canonicalize_into(&payload, PAYLOAD_PATH, out)
        })
    }

    /// Builds an event like [`new`](Self::new) from any `Serialize` payload,
    /// written canonically straight into `E` without a `serde_json::Value`
    /// in between (see [`canonical::canonicalize_serialize`] for the keys
    /// and numbers it accepts).
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Refusal<'a> { rule: &'a str, path: &'a str }
    /// let event = audit_core::AuditEvent::from_serialize(
    ///     "governance.refusal",
    ///     "agent:alice",
    ///     &Refusal { rule: "R001", path: "secrets/api" },
    /// )?;
    /// assert!(event.canonical_json().contains(r#""payload":{"path":"secrets/api","rule":"R001"}"#));
    /// # Ok::<(), audit_core::EventError>(())
    /// ```
    pub fn from_serialize<T: Serialize + ?Sized>(
        event_type: impl AsRef<str>,
        actor: impl AsRef<str>,
        payload: &T,
    ) -> Result<Self, EventError> {
        let mut id = uuid::Uuid::encode_buffer();
        let time = now_utc();
        let members = Members::validated(
            fresh_id(&mut id),
            event_type.as_ref(),
            actor.as_ref(),
            &time,
        )?;
        assemble(members, EventLimits::default(), PAYLOAD_CAPACITY, |out| {
            canonical::canonicalize_serialize_into(payload, PAYLOAD_PATH, out)
        })
    }

    /// Starts a builder with any `Serialize` payload, which is canonicalised
    /// (and its numbers checked) here; set the id, time or limits and
    /// [`build`](AuditEventBuilder::build) as with [`builder`](Self::builder).
    pub fn builder_from_serialize<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        actor: impl Into<String>,
        payload: &T,
    ) -> Result<AuditEventBuilder, EventError> {
        let mut text = String::with_capacity(PAYLOAD_CAPACITY);
        canonical::canonicalize_serialize_into(payload, PAYLOAD_PATH, &mut text)?;
        Ok(AuditEventBuilder {
            id: None,
            time: None,
            event_type: event_type.into(),
            actor: actor.into(),
            payload: Payload::Canonical(text),
            limits: EventLimits::default(),
        })
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
            payload: Payload::Value(payload),
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
            payload: Payload::Value(payload),
            limits,
        }
        .build_with_capacity(canonical.len())?;
        if event.canonical_json() != canonical {
            return Err(EventError::NotCanonical);
        }
        Ok(event)
    }

    /// The event id (lowercase hyphenated UUID): the idempotency key.
    pub fn id(&self) -> &str {
        self.inner.slice(self.inner.id_start, ID_LEN)
    }

    /// The event type, e.g. `governance.refusal`.
    pub fn event_type(&self) -> &str {
        let inner = &*self.inner;
        inner
            .text
            .get(inner.canonical_end as usize..inner.actor_start as usize)
            .unwrap_or_default()
    }

    /// The agent or principal that acted.
    pub fn actor(&self) -> &str {
        let inner = &*self.inner;
        inner
            .text
            .get(inner.actor_start as usize..)
            .unwrap_or_default()
    }

    /// The event time, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn time(&self) -> &str {
        self.inner.slice(self.inner.time_start, TIME_LEN)
    }

    /// The canonical bytes `E`.
    pub fn canonical_json(&self) -> &str {
        self.inner.canonical()
    }

    /// `event_hash = H(E)`.
    pub fn event_hash(&self) -> Digest {
        self.inner.hash
    }

    /// The payload, parsed from `E`.
    pub fn payload(&self) -> Value {
        serde_json::from_str::<Value>(self.inner.canonical())
            .ok()
            .and_then(|mut value| value.get_mut("payload").map(Value::take))
            .unwrap_or(Value::Null)
    }
}

impl PartialEq for AuditEvent {
    fn eq(&self, other: &Self) -> bool {
        self.inner.canonical() == other.inner.canonical()
    }
}

impl Eq for AuditEvent {}

impl fmt::Debug for AuditEvent {
    /// Shows the id, type and actor only: payloads may be sensitive.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditEvent")
            .field("id", &self.id())
            .field("type", &self.event_type())
            .field("actor", &self.actor())
            .field("time", &self.time())
            .field("bytes", &self.canonical_json().len())
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
    payload: Payload,
    limits: EventLimits,
}

/// The payload a builder holds: a value, or canonical text made from a
/// `Serialize` payload by [`AuditEvent::builder_from_serialize`].
#[derive(Debug, Clone)]
enum Payload {
    Value(Value),
    Canonical(String),
}

/// The JSONPath of the payload in errors.
const PAYLOAD_PATH: &str = "$.payload";

/// Room reserved for a payload whose size is not known in advance.
const PAYLOAD_CAPACITY: usize = 384;

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
        self.build_with_capacity(0)
    }

    /// [`build`](Self::build), with room for `capacity` bytes of `E` reserved.
    fn build_with_capacity(self, capacity: usize) -> Result<AuditEvent, EventError> {
        let given_id = self.id.map(validate_id).transpose()?;
        let mut id_buffer = uuid::Uuid::encode_buffer();
        let id = match &given_id {
            Some(id) => id.as_str(),
            None => fresh_id(&mut id_buffer),
        };
        let time = match self.time {
            Some(time) => validate_time(time)?,
            None => now_utc(),
        };
        let members = Members::validated(id, &self.event_type, &self.actor, &time)?;
        match self.payload {
            Payload::Value(payload) => {
                let capacity = capacity.max(PAYLOAD_CAPACITY);
                assemble(members, self.limits, capacity, |out| {
                    canonical::canonicalize_into(&payload, PAYLOAD_PATH, out)
                })
            }
            Payload::Canonical(text) => {
                assemble(members, self.limits, capacity.max(text.len()), |out| {
                    out.push_str(&text);
                    Ok(())
                })
            }
        }
    }
}

/// The validated string members of an event.
struct Members<'a> {
    id: &'a str,
    event_type: &'a str,
    actor: &'a str,
    time: &'a str,
}

impl<'a> Members<'a> {
    /// The members, once the type and actor pass their rules (the id and
    /// time are fresh or already validated).
    fn validated(
        id: &'a str,
        event_type: &'a str,
        actor: &'a str,
        time: &'a str,
    ) -> Result<Self, EventError> {
        validate_type(event_type)?;
        validate_actor(actor)?;
        Ok(Self {
            id,
            event_type,
            actor,
            time,
        })
    }
}

/// Writes `E` in one pass (members in UTF-16 order: actor, id, payload,
/// time, type, with the payload written by `payload`), checks its size and
/// hashes it.
fn assemble(
    members: Members<'_>,
    limits: EventLimits,
    payload_capacity: usize,
    payload: impl FnOnce(&mut String) -> Result<(), EventError>,
) -> Result<AuditEvent, EventError> {
    let Members {
        id,
        event_type,
        actor,
        time,
    } = members;
    let fixed = 64 + id.len() + 2 * (event_type.len() + actor.len()) + time.len();
    let mut text = String::with_capacity(fixed + payload_capacity);
    text.push_str("{\"actor\":");
    canonical::write_string(actor, &mut text);
    text.push_str(",\"id\":\"");
    let id_start = text.len();
    text.push_str(id);
    text.push('"');
    text.push_str(",\"payload\":");
    payload(&mut text)?;
    text.push_str(",\"time\":\"");
    let time_start = text.len();
    text.push_str(time);
    text.push('"');
    text.push_str(",\"type\":");
    canonical::write_string(event_type, &mut text);
    text.push('}');
    check_size(text.len(), limits)?;
    let hash = Digest(Sha256::digest(text.as_bytes()).into());
    let canonical_end = text.len();
    text.push_str(event_type);
    let actor_start = text.len();
    text.push_str(actor);
    let offset = |at: usize| {
        u32::try_from(at).map_err(|_| EventError::TooLarge {
            size: at,
            limit: limits.max_event_bytes,
        })
    };
    Ok(AuditEvent {
        inner: Arc::new(EventInner {
            hash,
            canonical_end: offset(canonical_end)?,
            actor_start: offset(actor_start)?,
            id_start: offset(id_start)?,
            time_start: offset(time_start)?,
            text: text.into_boxed_str(),
        }),
    })
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
    let mut buffer = uuid::Uuid::encode_buffer();
    match uuid::Uuid::try_parse(&id) {
        Ok(parsed) if parsed.hyphenated().encode_lower(&mut buffer) == id.as_str() => Ok(id),
        _ => Err(EventError::InvalidId { value: id }),
    }
}

/// A fresh UUIDv7, lowercase hyphenated, written into `buffer` (no
/// allocation).
fn fresh_id(buffer: &mut [u8]) -> &str {
    uuid::Uuid::now_v7().hyphenated().encode_lower(buffer)
}

/// The time format of FORMAT.md: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// The current UTC time in the event time format.
pub fn now_utc() -> String {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    match since_epoch {
        Ok(elapsed) => format_unix_micros(elapsed.as_secs(), elapsed.subsec_micros())
            .unwrap_or_else(|| chrono::Utc::now().format(TIME_FORMAT).to_string()),
        // A clock before 1970: let chrono write it.
        Err(_) => chrono::Utc::now().format(TIME_FORMAT).to_string(),
    }
}

/// Formats `seconds` after the Unix epoch plus `micros` in the event time
/// format, without chrono's format machinery (this runs for every event
/// built); `None` past the year 9999.
fn format_unix_micros(seconds: u64, micros: u32) -> Option<String> {
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days)?;
    let fields: [(u64, usize); 7] = [
        (year, 4),
        (month, 2),
        (day, 2),
        (of_day / 3600, 2),
        (of_day / 60 % 60, 2),
        (of_day % 60, 2),
        (u64::from(micros), 6),
    ];
    const SEPARATORS: [char; 7] = ['-', '-', 'T', ':', ':', '.', 'Z'];
    let mut text = String::with_capacity(27);
    for ((value, width), separator) in fields.into_iter().zip(SEPARATORS) {
        let mut divisor = 10u64.pow(u32::try_from(width).ok()? - 1);
        while divisor > 0 {
            // A single digit, below 10.
            text.push(char::from(b'0' + (value / divisor % 10) as u8));
            divisor /= 10;
        }
        text.push(separator);
    }
    Some(text)
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01 (H. Hinnant's `civil_from_days`), for years up to 9999.
fn civil_from_days(days: u64) -> Option<(u64, u64, u64)> {
    let shifted = days.checked_add(719_468)?;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year <= 9999).then_some((year, month, day))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn time_formatting_matches_chrono(seconds in 0u64..253_402_300_800, micros in 0u32..1_000_000) {
            let instant = chrono::DateTime::from_timestamp(
                i64::try_from(seconds).unwrap(),
                micros * 1000,
            )
            .unwrap();
            let expected = instant.format(TIME_FORMAT).to_string();
            prop_assert_eq!(format_unix_micros(seconds, micros), Some(expected.clone()));
            prop_assert!(validate_time(expected).is_ok());
        }
    }

    #[test]
    fn time_formatting_covers_leap_days_and_the_last_year() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000000Z"),
            (253_402_300_799, "9999-12-31T23:59:59.000000Z"),
        ];
        for (seconds, text) in cases {
            assert_eq!(format_unix_micros(seconds, 0).as_deref(), Some(text));
        }
        assert_eq!(format_unix_micros(253_402_300_800, 0), None);
        assert_eq!(now_utc().len(), 27);
    }

    #[test]
    fn fresh_ids_are_lowercase_hyphenated_uuid_v7() {
        let id = fresh_id(&mut uuid::Uuid::encode_buffer()).to_owned();
        assert_eq!(validate_id(id.clone()), Ok(id.clone()));
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    }
}
