//! `deferred-audit export URL --to file:///DIR|s3://BUCKET/PREFIX`: writes a
//! chain in the JSONL layout of FORMAT.md section 7, which `verify` accepts.
//!
//! The source is read in seq order (SQLite or PostgreSQL, a page at a
//! time) and handed over a bounded channel to a writer thread that puts one
//! create-only segment object per `--segment-records` records (never
//! overwriting an object), then the checkpoints; memory holds one segment.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use audit_core::chain::{ChainId, Checkpoint, Record};
use audit_postgres::{PostgresOptions, PostgresReader, StoredRecord};
use audit_s3_jsonl::checkpoints::put_checkpoint;
use audit_s3_jsonl::layout::ChainLayout;
use audit_s3_jsonl::segment::encode_segment;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode};

use crate::error::{CliError, OK, block_on};
use crate::progress;
use crate::store_url::{Access, StoreUrl};

/// Items in flight between the reader and the writer thread.
const CHANNEL_CAPACITY: usize = 4_096;

/// What the reader hands the writer.
enum Item {
    Record(Record),
    Checkpoint(Checkpoint),
}

/// Exports every chain of `from` into `to`.
pub fn run(from: &StoreUrl, to: &StoreUrl, segment_records: u64) -> Result<ExitCode, CliError> {
    if !matches!(from, StoreUrl::Sqlite(_) | StoreUrl::Postgres(_)) {
        return Err(from.unsupported("export"));
    }
    let (store, prefix) = to.object_store(Access::Write, "export --to")?;
    let writer = ArchiveWriter {
        store,
        prefix,
        segment_records: segment_records.max(1),
        current: None,
        records: 0,
        checkpoints: 0,
    };
    let (sender, receiver) = sync_channel(CHANNEL_CAPACITY);
    let thread = std::thread::spawn(move || writer.run(receiver));
    let read = read_source(from, &sender);
    drop(sender);
    let written = thread
        .join()
        .map_err(|_| CliError::usage("the export writer thread panicked"))?;
    // A writer error explains a reader's "channel closed", so it goes first.
    let (records, checkpoints) = written?;
    read?;
    println!("exported {records} records and {checkpoints} checkpoints from {from} to {to}");
    Ok(OK)
}

/// Sends every record, then every checkpoint, of `from`.
fn read_source(from: &StoreUrl, sender: &SyncSender<Item>) -> Result<(), CliError> {
    let send = |item: Item| {
        sender
            .send(item)
            .map_err(|_| CliError::usage("the export writer stopped"))
    };
    match from {
        StoreUrl::Sqlite(path) => {
            let bar = progress::bar(audit_sqlite::count_records(path)?, "export", false);
            audit_sqlite::for_each_record(path, |record| -> Result<(), CliError> {
                bar.inc(1);
                send(Item::Record(record.clone()))
            })?;
            bar.finish_and_clear();
            for checkpoint in audit_sqlite::read_checkpoints(path)? {
                send(Item::Checkpoint(checkpoint))?;
            }
            Ok(())
        }
        StoreUrl::Postgres(url) => block_on(read_postgres(url, &send))?,
        other => Err(other.unsupported("export")),
    }
}

async fn read_postgres(
    url: &str,
    send: &dyn Fn(Item) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let reader = PostgresReader::connect(url, PostgresOptions::default()).await?;
    let mut chains = Vec::new();
    for name in reader.chains().await? {
        chains.push(ChainId::new(&name).map_err(|error| CliError::usage(error.to_string()))?);
    }
    for chain in &chains {
        let mut failure = None;
        reader
            .for_each_record(chain, |stored| {
                if failure.is_some() {
                    return;
                }
                failure = match stored {
                    StoredRecord::Record(record) => send(Item::Record(*record)).err(),
                    StoredRecord::Malformed { seq, detail } => Some(CliError::usage(format!(
                        "{}: the record at seq {seq} of chain {chain} cannot be exported: {detail}",
                        reader.target()
                    ))),
                };
            })
            .await?;
        if let Some(error) = failure {
            return Err(error);
        }
    }
    for chain in &chains {
        for checkpoint in reader.checkpoints(chain).await? {
            let checkpoint = checkpoint.map_err(|(seq, detail)| {
                CliError::usage(format!(
                    "{}: the checkpoint at seq {seq} of chain {chain} cannot be exported: {detail}",
                    reader.target()
                ))
            })?;
            send(Item::Checkpoint(checkpoint))?;
        }
    }
    Ok(())
}

/// Puts segments and checkpoints, create-only.
struct ArchiveWriter {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    segment_records: u64,
    current: Option<(ChainId, Vec<Record>)>,
    records: u64,
    checkpoints: u64,
}

impl ArchiveWriter {
    /// Writes what arrives until the channel closes; returns the counts.
    fn run(mut self, receiver: Receiver<Item>) -> Result<(u64, u64), CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| CliError::usage(format!("starting the async runtime: {error}")))?;
        runtime.block_on(async {
            for item in receiver {
                match item {
                    Item::Record(record) => self.record(record).await?,
                    Item::Checkpoint(checkpoint) => {
                        self.flush().await?;
                        put_checkpoint(self.store.as_ref(), &self.prefix, &checkpoint).await?;
                        self.checkpoints += 1;
                    }
                }
            }
            self.flush().await?;
            Ok((self.records, self.checkpoints))
        })
    }

    async fn record(&mut self, record: Record) -> Result<(), CliError> {
        let full = self.current.as_ref().is_some_and(|(chain, records)| {
            *chain != record.chain || records.len() as u64 >= self.segment_records
        });
        if full {
            self.flush().await?;
        }
        let (_, records) = self
            .current
            .get_or_insert_with(|| (record.chain.clone(), Vec::new()));
        records.push(record);
        Ok(())
    }

    /// Puts the pending segment, if any.
    async fn flush(&mut self) -> Result<(), CliError> {
        let Some((chain, records)) = self.current.take() else {
            return Ok(());
        };
        let Some(first) = records.first() else {
            return Ok(());
        };
        let path = ChainLayout::new(&self.prefix, &chain).segment(first.seq);
        let body = encode_segment(&records);
        match self
            .store
            .put_opts(&path, body.into(), PutMode::Create.into())
            .await
        {
            Ok(_) => {
                self.records += records.len() as u64;
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => Err(CliError::usage(format!(
                "{path} already exists in {}; export into an empty folder or prefix (objects are never overwritten)",
                self.store
            ))),
            Err(error) => Err(CliError::usage(format!(
                "writing {path} to {}: {error}",
                self.store
            ))),
        }
    }
}
