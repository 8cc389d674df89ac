//! Fault-injecting object stores, wrapping a real one.
//!
//! - [`IgnoresCreateOnly`] turns every create-only put into an overwrite,
//!   like an S3-compatible server that ignores `If-None-Match: *`;
//! - [`FailingPuts`] refuses puts whose path contains a marker with
//!   `PermissionDenied`, like a bucket policy that denies a prefix: always
//!   ([`FailingPuts::new`]), or only as many as armed through a
//!   [`PutDenials`] handle ([`FailingPuts::armed`]), to make one chosen
//!   append fail;
//! - [`KeepsCopies`] copies every object it put successfully into a second
//!   store, like the durable bucket behind a test server that forgets
//!   everything when it is killed (moto keeps objects in memory).
//!
//! Everything else is passed through to the wrapped store.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Implements `ObjectStore` for `$store`: puts go to its inherent
/// `put_with`, everything else to `self.inner`.
macro_rules! wrapping_store {
    ($store:ty) => {
        #[async_trait]
        impl ObjectStore for $store {
            async fn put_opts(
                &self,
                location: &Path,
                payload: PutPayload,
                opts: PutOptions,
            ) -> object_store::Result<PutResult> {
                self.put_with(location, payload, opts).await
            }

            async fn put_multipart_opts(
                &self,
                location: &Path,
                opts: PutMultipartOptions,
            ) -> object_store::Result<Box<dyn MultipartUpload>> {
                self.inner.put_multipart_opts(location, opts).await
            }

            async fn get_opts(
                &self,
                location: &Path,
                options: GetOptions,
            ) -> object_store::Result<GetResult> {
                self.inner.get_opts(location, options).await
            }

            fn delete_stream(
                &self,
                locations: BoxStream<'static, object_store::Result<Path>>,
            ) -> BoxStream<'static, object_store::Result<Path>> {
                self.inner.delete_stream(locations)
            }

            fn list(
                &self,
                prefix: Option<&Path>,
            ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
                self.inner.list(prefix)
            }

            fn list_with_offset(
                &self,
                prefix: Option<&Path>,
                offset: &Path,
            ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
                self.inner.list_with_offset(prefix, offset)
            }

            async fn list_with_delimiter(
                &self,
                prefix: Option<&Path>,
            ) -> object_store::Result<ListResult> {
                self.inner.list_with_delimiter(prefix).await
            }

            async fn copy_opts(
                &self,
                from: &Path,
                to: &Path,
                options: CopyOptions,
            ) -> object_store::Result<()> {
                self.inner.copy_opts(from, to, options).await
            }
        }
    };
}

/// A store that ignores create-only semantics: `PutMode::Create` becomes
/// an overwrite.
#[derive(Debug)]
pub struct IgnoresCreateOnly {
    inner: Arc<dyn ObjectStore>,
}

impl IgnoresCreateOnly {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl fmt::Display for IgnoresCreateOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IgnoresCreateOnly({})", self.inner)
    }
}

wrapping_store!(IgnoresCreateOnly);

impl IgnoresCreateOnly {
    async fn put_with(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let opts = PutOptions {
            mode: object_store::PutMode::Overwrite,
            ..opts
        };
        self.inner.put_opts(location, payload, opts).await
    }
}

/// How many puts a [`FailingPuts`] still refuses; a cheap, shared handle.
#[derive(Debug, Clone, Default)]
pub struct PutDenials(Arc<AtomicU64>);

impl PutDenials {
    /// Refuses the next `count` puts to a matching path (replacing what was
    /// armed before).
    pub fn deny_next(&self, count: u64) {
        self.0.store(count, Ordering::SeqCst);
    }

    /// Refuses every later put to a matching path, until re-armed.
    pub fn deny_all(&self) {
        self.deny_next(u64::MAX);
    }

    /// Lets every put through again.
    pub fn allow(&self) {
        self.deny_next(0);
    }

    /// Puts still to be refused (`u64::MAX`: all of them).
    pub fn remaining(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Whether this put is refused (and counts it).
    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => None,
                u64::MAX => Some(u64::MAX),
                left => Some(left - 1),
            })
            .is_ok()
    }
}

/// A store that refuses puts to paths containing `marker`.
#[derive(Debug)]
pub struct FailingPuts {
    inner: Arc<dyn ObjectStore>,
    marker: String,
    denials: PutDenials,
}

impl FailingPuts {
    /// Wraps `inner`, refusing every put whose path contains `marker`.
    pub fn new(inner: Arc<dyn ObjectStore>, marker: impl Into<String>) -> Self {
        let (store, denials) = Self::armed(inner, marker);
        denials.deny_all();
        store
    }

    /// Wraps `inner`, refusing puts whose path contains `marker` only as
    /// many times as armed through the returned handle (none at first).
    pub fn armed(inner: Arc<dyn ObjectStore>, marker: impl Into<String>) -> (Self, PutDenials) {
        let denials = PutDenials::default();
        let store = Self {
            inner,
            marker: marker.into(),
            denials: denials.clone(),
        };
        (store, denials)
    }
}

impl fmt::Display for FailingPuts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingPuts({}, {:?})", self.inner, self.marker)
    }
}

wrapping_store!(FailingPuts);

impl FailingPuts {
    async fn put_with(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if location.as_ref().contains(&self.marker) && self.denials.take() {
            return Err(object_store::Error::PermissionDenied {
                path: location.to_string(),
                source: format!("puts under {:?} are denied", self.marker).into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }
}

/// A store that copies every object it put successfully into a second
/// store, `kept`: what the client was told is stored stays there even when
/// the wrapped server loses it (killed and restarted). Multipart uploads
/// are not copied.
///
/// A copy is created only; when `kept` already holds other bytes under
/// that path, the wrapped store acknowledged two different objects under
/// one name (across a restart): the copy is not replaced and the event is
/// counted in [`KeepsCopies::conflicting_copies`].
#[derive(Debug)]
pub struct KeepsCopies {
    inner: Arc<dyn ObjectStore>,
    kept: Arc<dyn ObjectStore>,
    conflicts: Arc<AtomicU64>,
}

impl KeepsCopies {
    /// Wraps `inner`, copying its successful puts into `kept`.
    pub fn new(inner: Arc<dyn ObjectStore>, kept: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            kept,
            conflicts: Arc::default(),
        }
    }

    /// Acknowledged puts whose path `kept` already held with other bytes.
    pub fn conflicting_copies(&self) -> u64 {
        self.conflicts.load(Ordering::SeqCst)
    }

    /// Keeps `payload` under `location` in `kept`; errors of `kept` are
    /// returned (a test store that fails is a broken test).
    async fn keep(&self, location: &Path, payload: PutPayload) -> object_store::Result<()> {
        let bytes = payload.clone();
        match self
            .kept
            .put_opts(location, payload, object_store::PutMode::Create.into())
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self.kept.get(location).await?.bytes().await?;
                let new: Vec<u8> = bytes
                    .iter()
                    .flat_map(|chunk| chunk.iter().copied())
                    .collect();
                if existing.as_ref() != new.as_slice() {
                    self.conflicts.fetch_add(1, Ordering::SeqCst);
                    tracing::error!(%location, "two different objects acknowledged under one name");
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

impl fmt::Display for KeepsCopies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeepsCopies({} -> {})", self.inner, self.kept)
    }
}

wrapping_store!(KeepsCopies);

impl KeepsCopies {
    async fn put_with(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload.clone(), opts).await?;
        self.keep(location, payload).await?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn armed_denials_refuse_only_as_many_puts_as_armed() {
        let (store, denials) = FailingPuts::armed(Arc::new(InMemory::new()), "/records/");
        let path = Path::from("p/records/a");
        assert!(store.put(&path, "x".into()).await.is_ok());
        denials.deny_next(2);
        assert!(store.put(&Path::from("p/other"), "x".into()).await.is_ok());
        assert!(store.put(&path, "x".into()).await.is_err());
        assert!(store.put(&path, "x".into()).await.is_err());
        assert!(store.put(&path, "x".into()).await.is_ok());
        assert_eq!(denials.remaining(), 0);
        denials.deny_all();
        for _ in 0..3 {
            assert!(store.put(&path, "x".into()).await.is_err());
        }
        denials.allow();
        assert!(store.put(&path, "x".into()).await.is_ok());
    }

    #[tokio::test]
    async fn kept_copies_survive_the_wrapped_store_and_conflicts_are_counted() {
        let kept: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("a/b");
        let first = KeepsCopies::new(Arc::new(InMemory::new()), kept.clone());
        first.put(&path, "one".into()).await.unwrap();
        // The "restarted server": empty, same kept store.
        let second = KeepsCopies::new(Arc::new(InMemory::new()), kept.clone());
        second.put(&path, "one".into()).await.unwrap();
        assert_eq!(second.conflicting_copies(), 0);
        second.put(&path, "two".into()).await.unwrap();
        assert_eq!(second.conflicting_copies(), 1);
        let bytes = kept.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.as_ref(), b"one");
        let refused = KeepsCopies::new(
            Arc::new(FailingPuts::new(Arc::new(InMemory::new()), "c")),
            kept.clone(),
        );
        assert!(refused.put(&Path::from("c/d"), "x".into()).await.is_err());
        assert!(kept.head(&Path::from("c/d")).await.is_err());
    }
}
