//! Archive audit records on S3 (or any S3-compatible server) as signed
//! JSONL segments: a forensic copy that outlives the service's own
//! database.
//!
//! ```text
//! AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… AWS_REGION=eu-west-1 \
//!     cargo run --example s3_archive --features s3 -- BUCKET PREFIX
//! ```
//!
//! The store is built from the standard `AWS_*` variables
//! (`AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true` for a local server). Give the
//! writer credentials that may create objects but not overwrite or delete
//! them: the archive never needs to. The facade's test
//! `tests/example_stores.rs` runs the same code against a real
//! S3-compatible server.

#[path = "support/audited_store.rs"]
mod audited_store;

use std::sync::Arc;

use deferred_audit::prelude::*;
use deferred_audit::s3::{ArchiveFactory, ArchiveOptions, ArchiveSource};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(bucket), Some(prefix)) = (args.next(), args.next()) else {
        return Err("usage: s3_archive BUCKET PREFIX".into());
    };
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()?,
    );
    let prefix = Path::from(prefix);
    let signer = audited_store::signer();
    let factory = ArchiveFactory::new(
        store.clone(),
        prefix.clone(),
        ChainSinkOptions::signed(signer.clone()),
        ArchiveOptions::default(),
    );
    let appended = audited_store::audit_into(factory, 100).await?;
    let source = ArchiveSource::new(store, prefix.clone());
    let outcome = audited_store::verify_and_prove(&source, &signer, appended).await?;
    println!(
        "s3://{bucket}/{prefix}: {} events appended, chain verified: {}",
        outcome.appended,
        outcome.report.is_ok()
    );
    print!("{}", outcome.proof);
    if !outcome.report.is_ok() {
        return Err("the archive does not verify".into());
    }
    Ok(())
}
