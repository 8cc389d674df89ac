//! The sink the demo drains into, built from a store URL: one
//! [`SinkFactory`] per backend (the supervisor calls it again to rebuild a
//! failed sink), and the primary-plus-mirror [`Tee`] of `demo --mirror`.

use std::sync::Arc;

use audit_core::chain_writer::ChainSinkOptions;
use audit_core::sink::{AuditSink, SinkError, SinkFactory};
use audit_core::tee::{MirrorFailures, Tee};

use crate::error::CliError;
use crate::store_url::StoreUrl;

/// A shareable factory.
pub type SharedFactory = Arc<dyn SinkFactory>;

/// The factory of chain sinks writing `options.chain` into `url`.
pub fn chain_factory(url: &StoreUrl, options: ChainSinkOptions) -> Result<SharedFactory, CliError> {
    Ok(Arc::new(deferred_audit::sink_factory(url, options)?))
}

/// A factory handing the pipeline `factory`'s sinks.
pub fn pipeline_factory(factory: SharedFactory) -> impl SinkFactory {
    move || {
        let factory = factory.clone();
        async move { factory.create().await }
    }
}

/// A factory of tees: `primary`'s sinks, mirrored into `mirror`'s; every
/// tee counts its mirror's failures into `failures`.
pub fn mirrored_factory(
    primary: SharedFactory,
    mirror: SharedFactory,
    failures: MirrorFailures,
) -> impl SinkFactory {
    move || {
        let (primary, mirror, failures) = (primary.clone(), mirror.clone(), failures.clone());
        async move {
            let primary_sink = primary.create().await?;
            let mirror_sink: Box<dyn AuditSink> = mirror.create().await?;
            Ok::<_, SinkError>(
                Tee::new(primary_sink, vec![mirror_sink]).with_failure_counter(failures),
            )
        }
    }
}
