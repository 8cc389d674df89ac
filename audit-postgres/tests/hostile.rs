//! The testkit's hostile-chain suite on real PostgreSQL databases (one
//! fresh database per case, on one server): the same verdict, failure kind
//! and seq as every other backend. The cases only SQL storage or this
//! backend can hold (head rows, NULL columns, paging) are in `source.rs`.

mod common;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use audit_core::AuditEvent;
use audit_core::chain::ChainId;
use audit_core::store::{ChainSource, ChainStore};
use audit_postgres::{PostgresOptions, PostgresSource, PostgresStore, open_source};
use audit_testkit::hostile::{self, RawRow, Tamper, TamperFactory};
use audit_testkit::servers::postgres::PostgresServer;

/// One fresh database: its writer (for raw rows) and its source.
struct PostgresTamper {
    url: String,
    writer: PostgresStore,
    source: Arc<PostgresSource>,
}

impl PostgresTamper {
    async fn new(server: Arc<PostgresServer>, database: String) -> Self {
        let url = server.url_for(&database);
        tokio::task::spawn_blocking(move || server.create_database(&database))
            .await
            .unwrap()
            .unwrap();
        let writer = PostgresStore::connect(&url, PostgresOptions::default())
            .await
            .unwrap();
        let source = Arc::new(open_source(&url, PostgresOptions::default()).await.unwrap());
        Self {
            url,
            writer,
            source,
        }
    }
}

#[async_trait]
impl Tamper for PostgresTamper {
    fn source(&self) -> Arc<dyn ChainSource> {
        self.source.clone()
    }

    async fn store(&self) -> Box<dyn ChainStore> {
        Box::new(
            PostgresStore::connect(&self.url, PostgresOptions::default())
                .await
                .unwrap(),
        )
    }

    async fn put_raw(&self, rows: &[RawRow]) {
        for row in rows {
            let record = &row.record;
            let event = AuditEvent::from_canonical(&record.event_json).ok();
            let member = |get: fn(&AuditEvent) -> &str| event.as_ref().map_or("", get).to_owned();
            self.writer
                .client()
                .execute(
                    "INSERT INTO audit_records (chain_id, seq, event_id, event_type, actor, \
                     event_time, event_json, event_hash, prev_hash, record_hash, key_id, signature) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    &[
                        &row.chain,
                        &row.seq,
                        &member(AuditEvent::id),
                        &member(AuditEvent::event_type),
                        &member(AuditEvent::actor),
                        &member(AuditEvent::time),
                        &record.event_json.as_str(),
                        &record.event_hash.as_bytes().as_slice(),
                        &record.prev.as_bytes().as_slice(),
                        &record.hash.as_bytes().as_slice(),
                        &record.key_id.as_deref(),
                        &record.sig.as_ref().map(|sig| sig.as_slice()),
                    ],
                )
                .await
                .unwrap();
        }
    }

    async fn delete_records(&self, chain: &ChainId, seqs: RangeInclusive<u64>) {
        let bound = |seq: u64| i64::try_from(seq).unwrap();
        self.writer
            .client()
            .execute(
                "DELETE FROM audit_records WHERE chain_id = $1 AND seq BETWEEN $2 AND $3",
                &[&chain.as_str(), &bound(*seqs.start()), &bound(*seqs.end())],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fails_the_hostile_suite_like_every_backend() {
    let server = Arc::new(
        PostgresServer::start()
            .unwrap_or_else(|error| panic!("cannot start a test PostgreSQL server: {error}")),
    );
    let cases = Arc::new(AtomicUsize::new(0));
    let factory: TamperFactory = Arc::new(move || {
        let server = server.clone();
        let database = format!("hostile_{}", cases.fetch_add(1, Ordering::Relaxed));
        Box::pin(
            async move { Box::new(PostgresTamper::new(server, database).await) as Box<dyn Tamper> },
        )
    });
    hostile::run(factory).await;
}
