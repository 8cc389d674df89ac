//! Opening a store from its URL, one code path for every backend:
//! `sqlite://PATH`, `postgres://…`, `s3://BUCKET/PREFIX`, `file:///DIR`,
//! `memory://NAME`.
//!
//! - [`open_source`]: the read side ([`ChainSource`]) that the core's one
//!   verifier, export and replay read;
//! - [`open_chain_store`]: the write side ([`ChainStore`]) of one chain,
//!   for export and replay through a [`ChainWriter`];
//! - [`sink_factory`]: the [`SinkFactory`] a pipeline drains into;
//! - [`checkpoint_publisher`]: an archive URL as an off-box checkpoint
//!   publisher.
//!
//! A scheme whose backend this build leaves out (cargo features `sqlite`,
//! `postgres`, `s3`) is refused with [`OpenError::NotBuilt`], naming the
//! feature.
//!
//! ```
//! use deferred_audit::open::{open_source, sink_factory};
//! use deferred_audit::SinkFactory as _;
//! use deferred_audit::core::chain_writer::ChainSinkOptions;
//! use deferred_audit::core::store::StoreUrl;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url: StoreUrl = "memory://doc-open".parse()?;
//! let factory = sink_factory(&url, ChainSinkOptions::unsigned())?;
//! let mut sink = factory.create().await?;
//! sink.append_batch(&[deferred_audit::AuditEvent::new("t", "a", serde_json::json!(1))?]).await?;
//! let source = open_source(&url).await?;
//! assert_eq!(source.inventory().await?.chains.len(), 1);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use audit_core::chain::ChainId;
use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
use audit_core::sink::{AuditSink, CheckpointPublisher, SinkError, SinkFactory};
use audit_core::store::memory::MemoryStore;
use audit_core::store::{ChainSource, ChainStore, StoreUrl, StoreUrlError};

/// A store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL is not a store URL.
    #[error(transparent)]
    Url(#[from] StoreUrlError),
    /// This build leaves the URL's backend out.
    #[error(
        "{url}: this build has no {scheme} backend; enable the cargo feature `{feature}` of deferred-audit"
    )]
    NotBuilt {
        /// The URL (no password).
        url: String,
        /// Its scheme.
        scheme: &'static str,
        /// The feature that brings the backend.
        feature: &'static str,
    },
    /// The URL's store does not serve this use.
    #[error("{url}: {why}")]
    Unsupported {
        /// The URL (no password).
        url: String,
        /// Why.
        why: String,
    },
    /// The backend refused to open the store: what it said.
    #[error("{0}")]
    Backend(String),
}

impl From<SinkError> for OpenError {
    fn from(error: SinkError) -> Self {
        Self::Backend(error.to_string())
    }
}

#[cfg(feature = "sqlite")]
impl From<audit_sqlite::SqliteError> for OpenError {
    fn from(error: audit_sqlite::SqliteError) -> Self {
        Self::Backend(error.to_string())
    }
}

#[cfg(feature = "postgres")]
impl From<audit_postgres::PostgresError> for OpenError {
    fn from(error: audit_postgres::PostgresError) -> Self {
        Self::Backend(error.to_string())
    }
}

#[cfg(feature = "s3")]
impl From<audit_s3_jsonl::ArchiveError> for OpenError {
    fn from(error: audit_s3_jsonl::ArchiveError) -> Self {
        Self::Backend(error.to_string())
    }
}

#[allow(dead_code)]
fn not_built(url: &StoreUrl, feature: &'static str) -> OpenError {
    OpenError::NotBuilt {
        url: url.to_string(),
        scheme: url.scheme(),
        feature,
    }
}

/// The read side of the store at `url`. A SQLite file or archive folder
/// that does not exist is an error naming it (never created).
pub async fn open_source(url: &StoreUrl) -> Result<Box<dyn ChainSource>, OpenError> {
    match url {
        StoreUrl::Memory(name) => Ok(Box::new(MemoryStore::named(name))),
        #[cfg(feature = "sqlite")]
        StoreUrl::Sqlite(path) => Ok(Box::new(audit_sqlite::SqliteSource::open(path)?)),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(text) => Ok(Box::new(
            audit_postgres::open_source(text, audit_postgres::PostgresOptions::default()).await?,
        )),
        #[cfg(feature = "s3")]
        StoreUrl::S3 { .. } | StoreUrl::File(_) => {
            let (store, prefix) = archive::object_store(url, archive::Access::Read)?;
            Ok(Box::new(audit_s3_jsonl::ArchiveSource::new(store, prefix)))
        }
        #[allow(unreachable_patterns)]
        other => Err(not_built(other, feature_of(other))),
    }
}

/// The write side of `chain` in the store at `url` (created when missing).
pub async fn open_chain_store(
    url: &StoreUrl,
    chain: &ChainId,
) -> Result<Box<dyn ChainStore>, OpenError> {
    let _ = chain;
    match url {
        StoreUrl::Memory(name) => Ok(Box::new(MemoryStore::named(name))),
        #[cfg(feature = "sqlite")]
        StoreUrl::Sqlite(path) => Ok(Box::new(
            audit_sqlite::SqliteStore::open(path, audit_sqlite::SqliteOptions::default()).await?,
        )),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(text) => Ok(Box::new(
            audit_postgres::PostgresStore::connect(
                text,
                audit_postgres::PostgresOptions::default(),
            )
            .await?,
        )),
        #[cfg(feature = "s3")]
        StoreUrl::S3 { .. } | StoreUrl::File(_) => {
            let (store, prefix) = archive::object_store(url, archive::Access::Write)?;
            Ok(Box::new(
                audit_s3_jsonl::ObjectStoreChain::open(store, prefix, chain.clone()).await?,
            ))
        }
        #[allow(unreachable_patterns)]
        other => Err(not_built(other, feature_of(other))),
    }
}

/// A [`ChainWriter`] over [`open_chain_store`]: the sink of `options.chain`
/// with the shared policy, for one-off appends such as a replay.
pub async fn open_writer(
    url: &StoreUrl,
    options: ChainSinkOptions,
) -> Result<ChainWriter<Box<dyn ChainStore>>, OpenError> {
    let store = open_chain_store(url, options.chain()).await?;
    Ok(ChainWriter::new(store, options))
}

/// A [`SinkFactory`] for any backend, cheap to clone and share (e.g. one
/// per pipeline and one for a mirror).
#[derive(Clone)]
pub struct StoreSinkFactory(Arc<dyn SinkFactory>);

impl std::fmt::Debug for StoreSinkFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSinkFactory")
    }
}

#[async_trait::async_trait]
impl SinkFactory for StoreSinkFactory {
    async fn create(&self) -> Result<Box<dyn AuditSink>, SinkError> {
        self.0.create().await
    }
}

/// The [`SinkFactory`] of chain sinks writing `options.chain` into `url`
/// (the supervisor calls it again to rebuild a failed sink).
pub fn sink_factory(
    url: &StoreUrl,
    options: ChainSinkOptions,
) -> Result<StoreSinkFactory, OpenError> {
    open_sink_factory(url, options).map(StoreSinkFactory)
}

fn open_sink_factory(
    url: &StoreUrl,
    options: ChainSinkOptions,
) -> Result<Arc<dyn SinkFactory>, OpenError> {
    match url {
        StoreUrl::Memory(name) => {
            let store = MemoryStore::named(name);
            Ok(Arc::new(move || {
                let sink = ChainWriter::new(store.clone(), options.clone());
                std::future::ready(Ok::<_, SinkError>(sink))
            }))
        }
        #[cfg(feature = "sqlite")]
        StoreUrl::Sqlite(path) => Ok(Arc::new(audit_sqlite::sink_factory(
            path,
            options,
            audit_sqlite::SqliteOptions::default(),
        ))),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(text) => Ok(Arc::new(audit_postgres::sink_factory(
            text.clone(),
            options,
            audit_postgres::PostgresOptions::default(),
        ))),
        #[cfg(feature = "s3")]
        StoreUrl::S3 { .. } | StoreUrl::File(_) => {
            let (store, prefix) = archive::object_store(url, archive::Access::Write)?;
            Ok(Arc::new(audit_s3_jsonl::ArchiveFactory::new(
                store,
                prefix,
                options,
                audit_s3_jsonl::ArchiveOptions::default(),
            )))
        }
        #[allow(unreachable_patterns)]
        other => Err(not_built(other, feature_of(other))),
    }
}

/// The archive at `url` (`s3://` or `file://`) as a publisher of
/// checkpoints kept off-box.
pub fn checkpoint_publisher(url: &StoreUrl) -> Result<Arc<dyn CheckpointPublisher>, OpenError> {
    match url {
        #[cfg(feature = "s3")]
        StoreUrl::S3 { .. } | StoreUrl::File(_) => {
            let (store, prefix) = archive::object_store(url, archive::Access::Write)?;
            Ok(Arc::new(
                audit_s3_jsonl::ObjectStoreCheckpointPublisher::new(store, prefix),
            ))
        }
        #[cfg(not(feature = "s3"))]
        StoreUrl::S3 { .. } | StoreUrl::File(_) => Err(not_built(url, "s3")),
        other => Err(OpenError::Unsupported {
            url: other.to_string(),
            why: "checkpoints are published to an archive: give s3://BUCKET/PREFIX or file:///DIR"
                .into(),
        }),
    }
}

#[allow(dead_code)]
fn feature_of(url: &StoreUrl) -> &'static str {
    match url {
        StoreUrl::Sqlite(_) => "sqlite",
        StoreUrl::Postgres(_) => "postgres",
        _ => "s3",
    }
}

#[cfg(feature = "s3")]
mod archive {
    use std::sync::Arc;

    use audit_core::store::StoreUrl;
    use object_store::ObjectStore;
    use object_store::path::Path as ObjectPath;

    use super::OpenError;

    /// Whether an archive is read (its folder must exist) or written.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Access {
        Read,
        Write,
    }

    /// The object store and prefix of an `s3://` or `file://` URL.
    pub(super) fn object_store(
        url: &StoreUrl,
        access: Access,
    ) -> Result<(Arc<dyn ObjectStore>, ObjectPath), OpenError> {
        let text = match url {
            StoreUrl::File(dir) => {
                if access == Access::Read && !dir.is_dir() {
                    return Err(OpenError::Unsupported {
                        url: url.to_string(),
                        why: format!(
                            "{} is not a folder; give file:///DIR of a folder in the JSONL layout",
                            dir.display()
                        ),
                    });
                }
                let absolute = std::path::absolute(dir).map_err(|error| {
                    OpenError::Backend(format!("resolving {}: {error}", dir.display()))
                })?;
                format!("file://{}", absolute.display())
            }
            other => other.to_string(),
        };
        Ok(audit_s3_jsonl::url::open_store_url(&text)?)
    }
}
