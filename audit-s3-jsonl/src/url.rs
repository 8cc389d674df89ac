//! Store URLs: `s3://BUCKET/PREFIX` and `file:///DIR`.
//!
//! [`open_store_url`] (or [`open_store`] for a parsed [`StoreUrl`]) turns a
//! URL into an object store and the prefix the archive lives under:
//!
//! - `s3://BUCKET/PREFIX`: Amazon S3 or any S3-compatible server, configured
//!   from the usual AWS environment variables (`AmazonS3Builder::from_env`):
//!   - `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`): the server, e.g.
//!     `http://127.0.0.1:9000` for an S3-compatible one; unset for AWS;
//!   - `AWS_REGION` (or `AWS_DEFAULT_REGION`): e.g. `us-east-1`;
//!   - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`);
//!     without them, the instance or container credentials are used;
//!   - `AWS_ALLOW_HTTP=true`: allow a plain-HTTP endpoint;
//!   - `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`: bucket in the host name
//!     (default: path-style requests, which S3-compatible servers expect).
//!
//!   Requests are retried by the client with exponential backoff on
//!   connection errors, HTTP 5xx and throttling (429, `SlowDown`) for up to
//!   [`S3_RETRY_TIMEOUT`]; each request times out after
//!   [`S3_REQUEST_TIMEOUT`]. Create-only puts (`If-None-Match: *`) are used
//!   for every object.
//! - `file:///DIR`: a local folder in the same layout (created when missing);
//!   the prefix is empty.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("file://{}", dir.path().display());
//! let (store, prefix) = audit_s3_jsonl::url::open_store_url(&url)?;
//! assert_eq!(prefix.as_ref(), "");
//! # drop(store);
//! # Ok::<(), audit_s3_jsonl::ArchiveError>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use audit_core::store::StoreUrl;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::ArchiveError;

/// How long the S3 client retries one request before giving up.
pub const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one S3 request may take.
pub const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `url` is a store URL this crate opens.
pub fn is_store_url(url: &str) -> bool {
    matches!(
        StoreUrl::parse(url),
        Ok(StoreUrl::S3 { .. } | StoreUrl::File(_))
    )
}

/// The object store and prefix that `url` names.
pub fn open_store_url(url: &str) -> Result<(Arc<dyn ObjectStore>, Path), ArchiveError> {
    let parsed = StoreUrl::parse(url).map_err(|error| ArchiveError::Url {
        url: error.url,
        detail: error.why,
    })?;
    open_store(&parsed)
}

/// The object store and prefix of a parsed `s3://` or `file://` URL.
pub fn open_store(url: &StoreUrl) -> Result<(Arc<dyn ObjectStore>, Path), ArchiveError> {
    let url_error = |detail: String| ArchiveError::Url {
        url: url.to_string(),
        detail,
    };
    match url {
        StoreUrl::S3 { bucket, prefix } => {
            let prefix =
                Path::parse(prefix).map_err(|error| url_error(format!("bad prefix: {error}")))?;
            let store = s3_builder_from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|error| url_error(error.to_string()))?;
            Ok((Arc::new(store), prefix))
        }
        StoreUrl::File(dir) => {
            if !dir.is_absolute() {
                return Err(url_error("expected an absolute path, file:///DIR".into()));
            }
            std::fs::create_dir_all(dir)
                .map_err(|error| url_error(format!("creating the folder: {error}")))?;
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|error| url_error(error.to_string()))?;
            Ok((Arc::new(store), Path::default()))
        }
        _ => Err(url_error(
            "not an archive URL (expected s3://BUCKET/PREFIX or file:///DIR)".into(),
        )),
    }
}

/// An S3 builder from the AWS environment variables, with the retry and
/// timeout settings of this crate.
pub fn s3_builder_from_env() -> AmazonS3Builder {
    // `with_client_options` replaces the client options `from_env` read,
    // so `AWS_ALLOW_HTTP` is applied again afterwards.
    let allow_http = std::env::var("AWS_ALLOW_HTTP")
        .is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1");
    AmazonS3Builder::from_env()
        .with_retry(s3_retry_config(S3_RETRY_TIMEOUT))
        .with_client_options(
            ClientOptions::new()
                .with_timeout(S3_REQUEST_TIMEOUT)
                .with_connect_timeout(Duration::from_secs(5)),
        )
        .with_allow_http(allow_http)
}

/// Exponential backoff from 50 ms to 2 s, up to `deadline` in total.
pub fn s3_retry_config(deadline: Duration) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 32,
        retry_timeout: deadline,
    }
}
