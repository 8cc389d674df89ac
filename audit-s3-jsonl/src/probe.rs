//! The create-only probe: does the store really refuse a second create?
//!
//! The archive's safety against concurrent writers rests on create-only puts
//! (`PutMode::Create`, `If-None-Match: *` on S3): of two writers racing for
//! the same segment name, exactly one must win. Some S3-compatible servers
//! ignore the header and let both win, silently losing a segment. Before
//! first use, the archive puts a probe object under `P/.probe/` twice; the
//! second put must fail with `AlreadyExists`. A store that accepts it (or
//! does not implement create-only puts) is refused with
//! [`ArchiveError::NotCreateOnly`], unless
//! [`ArchiveOptions::assume_single_writer`](crate::ArchiveOptions::assume_single_writer)
//! says exactly one writer ever uses the prefix.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use object_store::{memory::InMemory, path::Path};
//! audit_s3_jsonl::probe::probe_create_only(&InMemory::new(), &Path::from("archive")).await?;
//! # Ok::<(), audit_s3_jsonl::ArchiveError>(())
//! # }).unwrap();
//! ```

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode};

use crate::error::ArchiveError;
use crate::layout::probe_dir;

/// Checks that `store` refuses a second create-only put under `prefix`.
/// The probe object is deleted afterwards when the store allows it.
pub async fn probe_create_only(store: &dyn ObjectStore, prefix: &Path) -> Result<(), ArchiveError> {
    let path = probe_dir(prefix).join(format!("{}.probe", uuid::Uuid::now_v7()));
    store
        .put_opts(&path, "probe".into(), PutMode::Create.into())
        .await
        .map_err(ArchiveError::store(store, "writing probe object", &path))?;
    let second = store
        .put_opts(&path, "probe again".into(), PutMode::Create.into())
        .await;
    let verdict = match second {
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(()),
        Ok(_) => Err("it succeeded and overwrote the object".to_owned()),
        Err(
            object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. },
        ) => Err("the store does not implement create-only puts".to_owned()),
        Err(error) => {
            return Err(ArchiveError::store(
                store,
                "writing probe object again",
                &path,
            )(error));
        }
    };
    if let Err(error) = store.delete(&path).await {
        tracing::debug!(%path, %error, "could not delete the probe object");
    }
    verdict.map_err(|detail| ArchiveError::NotCreateOnly {
        store: store.to_string(),
        path: path.to_string(),
        detail,
    })
}
