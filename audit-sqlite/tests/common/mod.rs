//! Blocking helpers over the core's verifier and replay for SQLite files,
//! usable from plain and async tests alike (each runs its own runtime on
//! its own thread).
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;

use audit_core::chain::{Checkpoint, VerifyReport};
use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
use audit_core::keys::Keyring;
use audit_core::replay::{ReplayReport, replay_dead_letters};
use audit_core::store::{ChainSource, StoredDeadLetter};
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_sqlite::{SqliteOptions, SqliteSource, SqliteStore};

/// Runs `future` to completion on a fresh runtime on another thread.
pub fn run<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    })
    .join()
    .unwrap()
}

/// Verifies the file with the default options.
pub fn verify_file(path: &Path, keyring: &Keyring) -> VerifyReport {
    verify_file_with(path, keyring, SourceVerifyOptions::default())
}

/// Verifies the file.
pub fn verify_file_with(
    path: &Path,
    keyring: &Keyring,
    options: SourceVerifyOptions,
) -> VerifyReport {
    let source = SqliteSource::open(path).unwrap();
    let keyring = keyring.clone();
    run(async move { verify_source(&source, &keyring, options).await.unwrap() })
}

/// Every dead letter of the file.
pub fn list(path: &Path) -> Vec<StoredDeadLetter> {
    let source = SqliteSource::open(path).unwrap();
    run(async move { source.dead_letters(None).await.unwrap() })
}

/// Every checkpoint of the chain `default`.
pub fn checkpoints(path: &Path) -> Vec<Checkpoint> {
    let source = SqliteSource::open(path).unwrap();
    run(async move {
        source
            .checkpoints(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect()
    })
}

/// Replays the dead letters of `options.chain` into the file.
pub fn replay(path: &Path, options: &ChainSinkOptions) -> ReplayReport {
    let source = SqliteSource::open(path).unwrap();
    let path = path.to_owned();
    let options = options.clone();
    run(async move {
        let store = SqliteStore::open(&path, SqliteOptions::default())
            .await
            .unwrap();
        let mut writer = ChainWriter::new(store, options);
        replay_dead_letters(&source, &mut writer, &Keyring::new())
            .await
            .unwrap()
    })
}
