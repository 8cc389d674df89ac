//! [`SharedStr`]: an immutable string that clones by reference count and
//! may be a part of an [`AuditEvent`]'s own text, so that sealing a record
//! copies none of its event's bytes.
//!
//! A [`Record`](crate::chain::Record) sealed from an event holds its `E` and
//! column copies this way; a record read back from a store holds strings
//! of its own. Either reads as a `&str` (`SharedStr` derefs to `str`) and
//! compares by content.
//!
//! ```
//! use audit_core::SharedStr;
//! let text = SharedStr::from("governance.refusal");
//! let copy = text.clone(); // a reference count, not a copy of the bytes
//! assert_eq!(copy, "governance.refusal");
//! assert!(text.starts_with("governance."));
//! ```

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use crate::event::AuditEvent;

/// An immutable, cheaply cloned string (see the [module](self) docs).
#[derive(Clone)]
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    Owned(Arc<str>),
    Event(AuditEvent, EventPart),
}

/// Which text of an event a [`SharedStr`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventPart {
    /// The canonical bytes `E`.
    Canonical,
    /// The id.
    Id,
    /// The type, unescaped.
    Type,
    /// The actor, unescaped.
    Actor,
    /// The time.
    Time,
}

impl SharedStr {
    /// The `part` of `event`, sharing the event's allocation.
    pub fn of_event(event: &AuditEvent, part: EventPart) -> Self {
        Self(Repr::Event(event.clone(), part))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Owned(text) => text,
            Repr::Event(event, part) => match part {
                EventPart::Canonical => event.canonical_json(),
                EventPart::Id => event.id(),
                EventPart::Type => event.event_type(),
                EventPart::Actor => event.actor(),
                EventPart::Time => event.time(),
            },
        }
    }
}

impl Default for SharedStr {
    /// The empty string.
    fn default() -> Self {
        Self(Repr::Owned(Arc::from("")))
    }
}

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for SharedStr {
    fn from(text: String) -> Self {
        Self(Repr::Owned(Arc::from(text)))
    }
}

impl From<&str> for SharedStr {
    fn from(text: &str) -> Self {
        Self(Repr::Owned(Arc::from(text)))
    }
}

impl From<Arc<str>> for SharedStr {
    fn from(text: Arc<str>) -> Self {
        Self(Repr::Owned(text))
    }
}

impl From<SharedStr> for String {
    fn from(text: SharedStr) -> Self {
        text.as_str().to_owned()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        self == other.as_str()
    }
}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SharedStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SharedStr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_parts_read_as_the_event_gives_them() {
        let event =
            AuditEvent::new("t\"ype", "act\u{e9}r", serde_json::json!({"k": 1})).expect("event");
        let part = |part| SharedStr::of_event(&event, part);
        assert_eq!(part(EventPart::Canonical), event.canonical_json());
        assert_eq!(part(EventPart::Id), event.id());
        assert_eq!(part(EventPart::Type), "t\"ype");
        assert_eq!(part(EventPart::Actor), "act\u{e9}r");
        assert_eq!(part(EventPart::Time), event.time());
    }

    #[test]
    fn equal_text_is_equal_whatever_holds_it() {
        let event = AuditEvent::new("t", "a", serde_json::json!(1)).expect("event");
        let shared = SharedStr::of_event(&event, EventPart::Actor);
        let owned = SharedStr::from("a");
        assert_eq!(shared, owned);
        let hash = |text: &SharedStr| {
            use std::collections::hash_map::DefaultHasher;
            let mut hasher = DefaultHasher::new();
            text.hash(&mut hasher);
            hasher.finish()
        };
        assert_eq!(hash(&shared), hash(&owned));
        assert_ne!(SharedStr::from("b"), owned);
    }
}
