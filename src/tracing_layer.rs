//! Audit events from `tracing` (feature `tracing`, on by default).
//!
//! A service that already reports what it does through `tracing` adds one
//! [`AuditLayer`] to its subscriber; every event of the audit target
//! (`audit` unless [`AuditLayer::target`] says otherwise) becomes an
//! [`AuditEvent`] submitted to the pipeline's [`AuditQueue`]:
//!
//! - its type is the field `event_type`, or the event's message when that
//!   field is absent;
//! - its actor is the field `actor`, which is required: an event without
//!   one (or with an empty one) is *refused*: counted, logged at error
//!   level with its fields (target `deferred_audit::tracing_layer`) and
//!   handed to the [`on_refused`](AuditLayer::on_refused) callback if one
//!   is set, never silently dropped. (`tracing` delivers an event emitted
//!   from inside a layer only under a global default subscriber; under a
//!   scoped one, `with_default`/`set_default`, the log line is lost, and
//!   the counter and the callback are what remain.)
//! - every other field goes into the JSON payload under its name: integers,
//!   floats, bools and strings as such, integers beyond ±2^53 (which a JSON
//!   number cannot hold exactly) and non-finite floats as strings, and
//!   anything recorded with `?` or `%` as its `Debug` or `Display` text.
//!
//! The event is queued with [`AuditQueue::submit`], which never blocks and
//! never panics, so the layer is safe on any hot path and under any lock.
//! Events of other targets are left alone (the layer never disables them
//! for the other layers). A target matches when it equals the configured
//! one or starts with it followed by `::` (`audit::billing` for `audit`).
//!
//! Counters of what the layer did are read through [`AuditLayerCounters`],
//! taken with [`AuditLayer::counters`] before the layer moves into the
//! subscriber.
//!
//! ```
//! use deferred_audit::tracing_layer::AuditLayer;
//! use deferred_audit::AuditPipeline;
//! use deferred_audit::core::chain_writer::ChainSinkOptions;
//! use deferred_audit::core::store::memory::MemoryStore;
//! use deferred_audit::core::chain_writer::ChainWriter;
//! use tracing_subscriber::layer::SubscriberExt as _;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new("doc-layer");
//! let factory = {
//!     let store = store.clone();
//!     move || std::future::ready(Ok::<_, deferred_audit::SinkError>(ChainWriter::new(store.clone(), ChainSinkOptions::unsigned())))
//! };
//! let pipeline = AuditPipeline::builder(factory).spawn();
//! let layer = AuditLayer::new(pipeline.queue());
//! let counters = layer.counters();
//! let subscriber = tracing_subscriber::registry().with(layer);
//!
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!(target: "audit", actor = "agent:alice", event_type = "governance.refusal", rule = "R001");
//!     tracing::info!(target: "audit", actor = "admin:root", role = "ops", "role.granted");
//!     tracing::info!(target: "audit", rule = "R002", "no actor: refused");
//!     tracing::info!("not an audit event");
//! });
//! assert_eq!((counters.submitted(), counters.refused()), (2, 1));
//!
//! let report = pipeline.shutdown(std::time::Duration::from_secs(5)).await;
//! assert_eq!(report.metrics.appended, 2);
//! # }
//! ```

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use audit_core::EventError;
use audit_core::canonical::MAX_SAFE_INTEGER;
use serde_json::{Map, Number, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::{AuditEvent, AuditQueue};

/// The target [`AuditLayer`] listens to unless told otherwise.
pub const DEFAULT_TARGET: &str = "audit";

/// The field that names the event's type.
pub const TYPE_FIELD: &str = "event_type";

/// The field that names the event's actor.
pub const ACTOR_FIELD: &str = "actor";

/// The field under which `tracing` records an event's message.
const MESSAGE_FIELD: &str = "message";

/// The callback of [`AuditLayer::on_refused`].
type RefusedHook = Arc<dyn Fn(&RefusedEvent) + Send + Sync>;

/// A `tracing-subscriber` layer that turns the events of one target into
/// audit events and submits them to an [`AuditQueue`]; see the
/// [module documentation](self).
#[derive(Clone)]
pub struct AuditLayer {
    queue: AuditQueue,
    target: Cow<'static, str>,
    counters: AuditLayerCounters,
    on_refused: Option<RefusedHook>,
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer")
            .field("queue", &self.queue)
            .field("target", &self.target)
            .field("counters", &self.counters)
            .field("on_refused", &self.on_refused.is_some())
            .finish()
    }
}

impl AuditLayer {
    /// A layer submitting the events of target `audit` to `queue`.
    pub fn new(queue: AuditQueue) -> Self {
        Self {
            queue,
            target: Cow::Borrowed(DEFAULT_TARGET),
            counters: AuditLayerCounters::default(),
            on_refused: None,
        }
    }

    /// Listens to `target` (and its `target::…` children) instead of `audit`.
    pub fn target(mut self, target: impl Into<Cow<'static, str>>) -> Self {
        self.target = target.into();
        self
    }

    /// Calls `hook` with every refused event (after it is counted and
    /// logged), for a service that keeps refusals somewhere of its own.
    /// The hook runs on the thread that emitted the event: keep it short
    /// and non-blocking.
    pub fn on_refused(mut self, hook: impl Fn(&RefusedEvent) + Send + Sync + 'static) -> Self {
        self.on_refused = Some(Arc::new(hook));
        self
    }

    /// The layer's counters, shared with every clone of the layer.
    pub fn counters(&self) -> AuditLayerCounters {
        self.counters.clone()
    }

    /// The target listened to.
    pub fn listened_target(&self) -> &str {
        &self.target
    }

    fn matches(&self, target: &str) -> bool {
        match target.strip_prefix(self.target.as_ref()) {
            Some(rest) => rest.is_empty() || rest.starts_with("::"),
            None => false,
        }
    }

    /// Builds and submits the audit event for one `tracing` event.
    fn audit(&self, target: &str, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Fields {
            event_type,
            actor,
            message,
            mut payload,
        } = fields;
        let event_type = match (event_type, message) {
            (Some(event_type), message) => {
                if let Some(message) = message {
                    payload.insert(MESSAGE_FIELD.to_owned(), Value::String(message));
                }
                event_type
            }
            (None, Some(message)) => message,
            (None, None) => String::new(),
        };
        let refusal = match actor {
            _ if event_type.is_empty() => Some(RefusalReason::MissingType),
            None => Some(RefusalReason::MissingActor),
            Some(ref actor) if actor.is_empty() => Some(RefusalReason::MissingActor),
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            return self.refuse(RefusedEvent {
                reason,
                target: target.to_owned(),
                event_type,
                payload,
            });
        }
        let actor = actor.unwrap_or_default();
        // From the map by reference: the payload is kept for a refusal
        // without a copy per event.
        match AuditEvent::from_serialize(event_type.as_str(), actor, &payload) {
            Ok(audit_event) => {
                if self.queue.submit(audit_event) {
                    self.counters
                        .inner
                        .submitted
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    // The queue counted the event lost and logged it in full.
                    self.counters
                        .inner
                        .not_queued
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(error) => self.refuse(RefusedEvent {
                reason: RefusalReason::Invalid(error),
                target: target.to_owned(),
                event_type,
                payload,
            }),
        }
    }

    fn refuse(&self, refused: RefusedEvent) {
        self.counters.inner.refused.fetch_add(1, Ordering::Relaxed);
        let fields = serde_json::to_string(&refused.payload).unwrap_or_default();
        tracing::error!(
            target: "deferred_audit::tracing_layer",
            reason = %refused.reason,
            source_target = %refused.target,
            event_type = %refused.event_type,
            fields = %fields,
            "audit event refused by the tracing layer: it was not submitted"
        );
        if let Some(hook) = &self.on_refused {
            hook(&refused);
        }
    }
}

thread_local! {
    /// Set while this thread is inside [`AuditLayer::on_event`], so that the
    /// layer's own log lines (or a hook's) never feed back into it.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Clears [`INSIDE`] when dropped, even if a hook panics.
struct Reentry;

impl Reentry {
    fn enter() -> Option<Self> {
        INSIDE
            .try_with(|inside| (!inside.replace(true)).then_some(Reentry))
            .ok()
            .flatten()
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(false));
    }
}

impl<S: Subscriber> Layer<S> for AuditLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let target = event.metadata().target();
        if !self.matches(target) {
            return;
        }
        let Some(_guard) = Reentry::enter() else {
            return;
        };
        self.audit(target, event);
    }
}

/// What the layer did, counted since it was built; cheap to clone, shared
/// by every clone of the layer.
#[derive(Debug, Clone, Default)]
pub struct AuditLayerCounters {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    submitted: AtomicU64,
    refused: AtomicU64,
    not_queued: AtomicU64,
}

impl AuditLayerCounters {
    /// Events queued for the pipeline.
    pub fn submitted(&self) -> u64 {
        self.inner.submitted.load(Ordering::Relaxed)
    }

    /// Events of the target refused by the layer (no actor, no type, or
    /// not a valid audit event); each was logged at error level.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Valid events the queue could not take (full, or the pipeline shut
    /// down): the pipeline's metrics count them lost and its log holds
    /// each in full.
    pub fn not_queued(&self) -> u64 {
        self.inner.not_queued.load(Ordering::Relaxed)
    }
}

/// Why the layer refused an event.
#[derive(Debug)]
#[non_exhaustive]
pub enum RefusalReason {
    /// No `actor` field, or an empty one.
    MissingActor,
    /// Neither an `event_type` field nor a message.
    MissingType,
    /// The fields do not make a valid audit event (a type or actor too
    /// long, a payload too large, …).
    Invalid(EventError),
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingActor => write!(f, "no `{ACTOR_FIELD}` field"),
            Self::MissingType => write!(f, "no `{TYPE_FIELD}` field and no message"),
            Self::Invalid(error) => write!(f, "not a valid audit event: {error}"),
        }
    }
}

/// An event of the audit target the layer refused, as given to
/// [`AuditLayer::on_refused`].
#[derive(Debug)]
pub struct RefusedEvent {
    reason: RefusalReason,
    target: String,
    event_type: String,
    payload: Map<String, Value>,
}

impl RefusedEvent {
    /// Why it was refused.
    pub fn reason(&self) -> &RefusalReason {
        &self.reason
    }

    /// The `tracing` target of the event.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The type it would have had (empty when there was none).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// Its other fields, as the payload would have held them.
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }
}

/// The fields of one event, sorted into type, actor, message and payload.
#[derive(Default)]
struct Fields {
    event_type: Option<String>,
    actor: Option<String>,
    message: Option<String>,
    payload: Map<String, Value>,
}

impl Fields {
    /// Files `value` under the field's name; the type, actor and message
    /// fields take their text form.
    fn put(&mut self, field: &Field, value: Value) {
        let slot = match field.name() {
            TYPE_FIELD => &mut self.event_type,
            ACTOR_FIELD => &mut self.actor,
            MESSAGE_FIELD => &mut self.message,
            name => {
                self.payload.insert(name.to_owned(), value);
                return;
            }
        };
        *slot = Some(match value {
            Value::String(text) => text,
            other => other.to_string(),
        });
    }
}

/// A JSON number for an integer of magnitude at most 2^53, else its text.
fn integer(value: impl Into<i128>) -> Value {
    let value: i128 = value.into();
    if value.unsigned_abs() > u128::from(MAX_SAFE_INTEGER) {
        return Value::String(value.to_string());
    }
    i64::try_from(value)
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(value.to_string()))
}

/// A JSON number for a float the canonical form can hold, else its text.
fn float(value: f64) -> Value {
    let integral_beyond_safe =
        value.fract() == 0.0 && value.abs() > MAX_SAFE_INTEGER as f64 && value.abs() < 1e21;
    match Number::from_f64(value) {
        Some(number) if !integral_beyond_safe => Value::Number(number),
        _ => Value::String(value.to_string()),
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, float(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, integer(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, integer(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, integer(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = i128::try_from(value)
            .map(integer)
            .unwrap_or_else(|_| Value::String(value.to_string()));
        self.put(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_two_to_the_53_are_strings() {
        assert_eq!(
            integer(9_007_199_254_740_992u64),
            Value::from(9_007_199_254_740_992i64)
        );
        assert_eq!(
            integer(9_007_199_254_740_993u64),
            Value::String("9007199254740993".into())
        );
        assert_eq!(
            integer(-9_007_199_254_740_993i64),
            Value::String("-9007199254740993".into())
        );
        assert_eq!(integer(u64::MAX), Value::String(u64::MAX.to_string()));
    }

    #[test]
    fn floats_the_canonical_form_refuses_are_strings() {
        assert_eq!(float(0.5), serde_json::json!(0.5));
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float(f64::INFINITY), Value::String("inf".into()));
        assert_eq!(float(1e20), Value::String("100000000000000000000".into()));
        assert_eq!(float(1e21), serde_json::json!(1e21));
    }
}
