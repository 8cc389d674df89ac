//! The testkit's hostile-chain suite, run against the JSONL layout in
//! memory, in a local folder and in moto's S3 server: the same cases, the
//! same verdicts, kinds and seqs as on SQLite and PostgreSQL.
//!
//! How an attacker's rows map onto the layout: rows are written as
//! segments under the folder of their chain name (valid or not), a run of
//! consecutive seqs per segment named after its first seq; a row at seq 0
//! or below states that seq in its line and goes to the segment named
//! `00000000000000000000.jsonl`. Deleting records rewrites the segments
//! that held them (renamed after their new first record) or deletes them.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use audit_core::ChainId;
use audit_core::chain_writer::ChainStore;
use audit_core::jsonl::{decode_record, encode_record};
use audit_core::store::ChainSource;
use audit_s3_jsonl::{ArchiveSource, ArchiveState, ObjectStoreChain};
use audit_testkit::hostile::{self, RawRow, Tamper, TamperFactory};
use audit_testkit::servers::s3::MotoServer;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

/// Records per segment written by `put_raw`.
const SEGMENT_RECORDS: usize = 40;

struct ArchiveTamper {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    _dir: Option<tempfile::TempDir>,
}

impl ArchiveTamper {
    fn segment(&self, chain: &str, first_seq: i64) -> Path {
        let name = format!("{:020}.jsonl", first_seq.max(0));
        Path::from(format!("{}/{chain}/records/{name}", self.prefix))
    }

    async fn put(&self, path: &Path, text: String) {
        self.store.put(path, PutPayload::from(text)).await.unwrap();
    }
}

/// The line of `row`: the record as encoded, stating the row's seq.
fn line(row: &RawRow) -> String {
    encode_record(&row.record).replacen(
        &format!(",\"seq\":{},", row.record.seq),
        &format!(",\"seq\":{},", row.seq),
        1,
    )
}

#[async_trait]
impl Tamper for ArchiveTamper {
    fn source(&self) -> Arc<dyn ChainSource> {
        Arc::new(ArchiveSource::new(self.store.clone(), self.prefix.clone()))
    }

    async fn store(&self) -> Box<dyn ChainStore> {
        Box::new(ObjectStoreChain::new(
            self.store.clone(),
            self.prefix.clone(),
            ChainId::default(),
            ArchiveState::new(),
        ))
    }

    async fn put_raw(&self, rows: &[RawRow]) {
        let mut segments: Vec<(String, i64, String, i64)> = Vec::new();
        let mut count = 0;
        for row in rows {
            let continues = segments.last().is_some_and(|(chain, first, _, last)| {
                *chain == row.chain
                    && count < SEGMENT_RECORDS
                    && if row.seq <= 0 {
                        *first <= 0
                    } else {
                        last.checked_add(1) == Some(row.seq)
                    }
            });
            if continues {
                if let Some((_, _, body, last)) = segments.last_mut() {
                    body.push_str(&line(row));
                    *last = row.seq;
                }
                count += 1;
            } else {
                segments.push((row.chain.clone(), row.seq, line(row), row.seq));
                count = 1;
            }
        }
        for (chain, first, body, _) in segments {
            self.put(&self.segment(&chain, first), body).await;
        }
    }

    async fn delete_records(&self, chain: &ChainId, seqs: RangeInclusive<u64>) {
        let dir = Path::from(format!("{}/{chain}/records", self.prefix));
        let paths: Vec<Path> = self
            .store
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .unwrap();
        for path in paths {
            let body = self.store.get(&path).await.unwrap().bytes().await.unwrap();
            let text = String::from_utf8(body.to_vec()).unwrap();
            let kept: Vec<(u64, &str)> = text
                .lines()
                .map(|line| (decode_record(line).unwrap().seq, line))
                .filter(|(seq, _)| !seqs.contains(seq))
                .collect();
            if kept.len() == text.lines().count() {
                continue;
            }
            self.store.delete(&path).await.unwrap();
            if let Some(&(first, _)) = kept.first() {
                let body: String = kept.iter().map(|(_, line)| format!("{line}\n")).collect();
                self.put(&self.segment(chain.as_str(), first as i64), body)
                    .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_archives_fail_the_hostile_suite_like_every_backend() {
    let factory: TamperFactory = Arc::new(|| {
        Box::pin(async {
            Box::new(ArchiveTamper {
                store: Arc::new(InMemory::new()),
                prefix: Path::from("archive"),
                _dir: None,
            }) as Box<dyn Tamper>
        })
    });
    hostile::run(factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folders_fail_the_hostile_suite_like_every_backend() {
    let factory: TamperFactory = Arc::new(|| {
        Box::pin(async {
            let dir = tempfile::tempdir().unwrap();
            let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
            Box::new(ArchiveTamper {
                store: Arc::new(store),
                prefix: Path::default(),
                _dir: Some(dir),
            }) as Box<dyn Tamper>
        })
    });
    hostile::run(factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_archives_fail_the_hostile_suite_like_every_backend() {
    let server = Arc::new(MotoServer::start().unwrap());
    let next = Arc::new(AtomicUsize::new(0));
    let factory: TamperFactory = Arc::new(move || {
        let store = server.store("");
        let prefix = Path::from(format!("case{}", next.fetch_add(1, Ordering::SeqCst)));
        Box::pin(async move {
            Box::new(ArchiveTamper {
                store,
                prefix,
                _dir: None,
            }) as Box<dyn Tamper>
        })
    });
    hostile::run(factory).await;
}
