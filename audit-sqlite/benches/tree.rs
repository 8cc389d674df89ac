//! What the transparency-log tree costs in a SQLite chain (FORMAT.md
//! section 8), in one run: `cargo bench -p audit-sqlite --bench tree`.
//!
//! 1. Appends `AUDIT_TREE_BENCH_RECORDS` (default 1,000,000) signed events
//!    through the chain writer in batches of 1,024 (synchronous=FULL), the
//!    tree growing in the same transactions; then times the tree's share of
//!    that work, redone alone over the same events: leaf and node hashing,
//!    and inserting the tree rows and frontier in transactions of the same
//!    size. The ratio is the tree's cost against the append throughput.
//! 2. Bytes the tree adds per record: the file against a `VACUUM INTO`
//!    copy without the tree tables.
//! 3. Inclusion and consistency proofs from the file, through the store's
//!    reader: median and p99 over 1,000 random seqs and old sizes.
//! 4. `verify` of the chain with its tree checkpoints against the same
//!    verification without them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use audit_core::AuditEvent;
use audit_core::chain::ChainId;
use audit_core::chain::tree::TreeFrontier;
use audit_core::chain::tree_rows::{TreeGrowth, encode_frontier};
use audit_core::chain_writer::{ChainSinkOptions, ChainWriter};
use audit_core::keys::{AuditSigner, Keyring};
use audit_core::proving::{newest_tree_checkpoint, prove_consistency, prove_inclusion};
use audit_core::sink::AuditSink;
use audit_core::store::{
    Anchor, ChainSource, Inventory, RecordStream, SourceCheckpoint, SourceError,
    SourceTreeCheckpoint, StoredDeadLetter,
};
use audit_core::verification::{SourceVerifyOptions, verify_source};
use audit_sqlite::{SqliteOptions, SqliteSource, SqliteStore};

const BATCH: usize = 1024;
const PROOFS: usize = 1000;

/// A source that hides the tree checkpoints: the baseline of the verify cost.
struct WithoutTree(SqliteSource);

#[async_trait]
impl ChainSource for WithoutTree {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn inventory(&self) -> Result<Inventory, SourceError> {
        self.0.inventory().await
    }
    async fn records(&self, chain: &ChainId, from: u64) -> Result<RecordStream<'_>, SourceError> {
        self.0.records(chain, from).await
    }
    async fn checkpoints(&self, chain: &ChainId) -> Result<Vec<SourceCheckpoint>, SourceError> {
        self.0.checkpoints(chain).await
    }
    async fn tree_checkpoints(
        &self,
        _chain: &ChainId,
    ) -> Result<Vec<SourceTreeCheckpoint>, SourceError> {
        Ok(Vec::new())
    }
    async fn anchors(&self, chain: &ChainId) -> Result<Vec<Anchor>, SourceError> {
        self.0.anchors(chain).await
    }
    async fn dead_letters(
        &self,
        chain: Option<&ChainId>,
    ) -> Result<Vec<StoredDeadLetter>, SourceError> {
        self.0.dead_letters(chain).await
    }
    async fn duplicate_ids(
        &self,
        chain: &ChainId,
        from: u64,
    ) -> Result<Option<Vec<(u64, String)>>, SourceError> {
        self.0.duplicate_ids(chain, from).await
    }
}

fn event(n: u64) -> AuditEvent {
    AuditEvent::new(
        "governance.refusal",
        format!("agent:{}", n % 64),
        serde_json::json!({"action": "memory.write", "reason": "policy", "n": n}),
    )
    .expect("a valid event")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A small deterministic generator (xorshift), for the random seqs.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn main() {
    let records: u64 = std::env::var("AUDIT_TREE_BENCH_RECORDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("tree-bench.db");
    let signer = Arc::new(AuditSigner::generate());
    let chain = ChainId::default();
    println!("tree bench: {records} signed records, batches of {BATCH}, synchronous=FULL");

    // 1. Appends with the tree.
    let events: Vec<AuditEvent> = (0..records).map(event).collect();
    let append_elapsed = runtime.block_on(async {
        let store = SqliteStore::open(&path, SqliteOptions::default())
            .await
            .expect("the bench database");
        let mut writer = ChainWriter::new(store, ChainSinkOptions::signed(signer.clone()));
        let started = Instant::now();
        for batch in events.chunks(BATCH) {
            writer.append_batch(batch).await.expect("an append");
        }
        writer.checkpoint().await.expect("a final checkpoint");
        started.elapsed()
    });
    let append_rate = records as f64 / append_elapsed.as_secs_f64();
    println!(
        "append with tree: {:.2} s, {append_rate:.0} events/s",
        append_elapsed.as_secs_f64()
    );

    // The tree's share, redone alone: hashing, and the rows in transactions.
    let scratch = rusqlite::Connection::open(dir.path().join("tree-only.db")).expect("scratch");
    scratch
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
             CREATE TABLE nodes (chain_id TEXT, seq INTEGER, hashes BLOB, PRIMARY KEY (chain_id, seq)) WITHOUT ROWID; \
             CREATE TABLE heads (chain_id TEXT PRIMARY KEY, size INTEGER, frontier BLOB);",
        )
        .expect("scratch schema");
    let started = Instant::now();
    let mut frontier = TreeFrontier::new();
    let mut seq = 0u64;
    let mut hashing = Duration::ZERO;
    for batch in events.chunks(BATCH) {
        let hashed = Instant::now();
        let mut growth = TreeGrowth::new(frontier);
        for event in batch {
            seq += 1;
            growth.push(seq, event.canonical_json().as_bytes());
        }
        let (rows, grown) = growth.finish();
        frontier = grown;
        hashing += hashed.elapsed();
        let transaction = scratch.unchecked_transaction().expect("a transaction");
        {
            let mut insert = transaction
                .prepare_cached("INSERT INTO nodes VALUES ('default', ?1, ?2)")
                .expect("insert");
            for row in &rows {
                insert
                    .execute(rusqlite::params![row.seq as i64, row.encode()])
                    .expect("a row");
            }
            transaction
                .execute(
                    "INSERT OR REPLACE INTO heads VALUES ('default', ?1, ?2)",
                    rusqlite::params![frontier.size() as i64, encode_frontier(&frontier)],
                )
                .expect("the head");
        }
        transaction.commit().expect("a commit");
    }
    let tree_alone = started.elapsed();
    // The rows' commits above each paid an fsync the real append shares
    // with its records: the I/O share is an upper bound.
    println!(
        "tree work alone: {:.2} s (hashing {:.2} s, rows and frontier in {} transactions {:.2} s): {:.1} % of the append time (upper bound: separate commits)",
        tree_alone.as_secs_f64(),
        hashing.as_secs_f64(),
        records.div_ceil(BATCH as u64),
        (tree_alone - hashing).as_secs_f64(),
        100.0 * tree_alone.as_secs_f64() / append_elapsed.as_secs_f64()
    );
    println!(
        "tree hashing alone: {:.1} % of the append time",
        100.0 * hashing.as_secs_f64() / append_elapsed.as_secs_f64()
    );
    drop(events);

    // 2. Bytes per record.
    let size_of = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let copy = dir.path().join("copy.db");
    let without = dir.path().join("without-tree.db");
    {
        let connection = rusqlite::Connection::open(&path).expect("the bench database");
        connection
            .execute("VACUUM INTO ?1", [copy.to_str().expect("a UTF-8 path")])
            .expect("VACUUM INTO");
        let connection = rusqlite::Connection::open(&copy).expect("the copy");
        connection
            .execute_batch(
                "DROP TABLE audit_tree_nodes; DROP TABLE audit_tree_heads; DROP TABLE audit_tree_checkpoints;",
            )
            .expect("dropping the tree tables");
        connection
            .execute("VACUUM INTO ?1", [without.to_str().expect("a UTF-8 path")])
            .expect("VACUUM INTO");
    }
    let (with_tree, without_tree) = (size_of(&copy), size_of(&without));
    println!(
        "file: {with_tree} bytes with the tree, {without_tree} without: the tree adds {:.1} bytes per record",
        (with_tree.saturating_sub(without_tree)) as f64 / records as f64
    );

    // 3. Proofs.
    let source = SqliteSource::open(&path).expect("the bench database");
    runtime.block_on(async {
        let note = newest_tree_checkpoint(&source, &chain)
            .await
            .expect("a tree checkpoint");
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let mut inclusion = Vec::with_capacity(PROOFS);
        for _ in 0..PROOFS {
            let seq = 1 + random.below(records);
            let started = Instant::now();
            prove_inclusion(&source, &chain, seq, &note)
                .await
                .expect("an inclusion proof");
            inclusion.push(started.elapsed());
        }
        let mut consistency = Vec::with_capacity(PROOFS);
        for _ in 0..PROOFS {
            let old = 1 + random.below(records);
            let started = Instant::now();
            prove_consistency(&source, &chain, old, &note)
                .await
                .expect("a consistency proof");
            consistency.push(started.elapsed());
        }
        inclusion.sort();
        consistency.sort();
        println!(
            "inclusion proof: median {:.2} ms, p99 {:.2} ms ({PROOFS} random seqs of {records})",
            percentile(&inclusion, 0.5).as_secs_f64() * 1e3,
            percentile(&inclusion, 0.99).as_secs_f64() * 1e3
        );
        println!(
            "consistency proof: median {:.2} ms, p99 {:.2} ms ({PROOFS} random old sizes)",
            percentile(&consistency, 0.5).as_secs_f64() * 1e3,
            percentile(&consistency, 0.99).as_secs_f64() * 1e3
        );
    });

    // 4. Verify with and without the tree checkpoints.
    let mut keyring = Keyring::new();
    keyring.insert(signer.public_key());
    runtime.block_on(async {
        let started = Instant::now();
        let baseline = verify_source(
            &WithoutTree(source.clone()),
            &keyring,
            SourceVerifyOptions::default(),
        )
        .await
        .expect("a verification");
        let without = started.elapsed();
        let started = Instant::now();
        let report = verify_source(&source, &keyring, SourceVerifyOptions::default())
            .await
            .expect("a verification");
        let with = started.elapsed();
        assert!(baseline.is_ok() && report.is_ok(), "{:?}", report.failures);
        let trees = report
            .chains
            .get("default")
            .map_or(0, |chain| chain.tree_checkpoints);
        println!(
            "verify: {:.2} s without tree checkpoints, {:.2} s with {trees}: {:+.1} %",
            without.as_secs_f64(),
            with.as_secs_f64(),
            100.0 * (with.as_secs_f64() / without.as_secs_f64() - 1.0)
        );
    });
}
