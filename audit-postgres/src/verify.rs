//! Reading and verifying a PostgreSQL chain, in constant memory.
//!
//! [`PostgresReader`] opens a database read-only (it checks the schema and
//! never creates or migrates anything) and reads a chain by keyset paging
//! (`WHERE seq > $last ORDER BY seq LIMIT n`, served by the primary key),
//! so memory stays bounded by one page whatever the chain's length.
//! Records are never updated, so pages read at different moments form one
//! consistent prefix of the chain. [`verify_postgres`] feeds every chain
//! through `audit_core`'s [`Verifier`]: stored checkpoints and those given
//! from elsewhere first, then the records in seq order. Rows that cannot be
//! decoded (a hash of the wrong length, a negative seq) are reported as
//! malformed records, not as errors.
//!
//! The verifier keeps 16 bytes per record to check that event ids are
//! unique; set [`VerifyOptions::skip_unique_ids`] to rely on the table's
//! UNIQUE constraint instead and keep memory flat.

use std::collections::BTreeSet;

use audit_core::Digest;
use audit_core::chain::{
    ChainId, Checkpoint, EventColumns, Record, Verifier, VerifyOptions, VerifyReport,
};
use audit_core::keys::Keyring;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Row, Socket};

use crate::connect::{Connection, PostgresOptions, connect_plain, connect_tls};
use crate::error::PostgresError;
use crate::schema::{self, SchemaState};

/// One stored row of `audit_records`, decoded or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredRecord {
    /// A decodable record.
    Record(Box<Record>),
    /// A row that cannot be decoded.
    Malformed {
        /// Its seq (0 when the seq itself is unusable).
        seq: u64,
        /// What is wrong.
        detail: String,
    },
}

/// A read-only view of a PostgreSQL audit database.
pub struct PostgresReader {
    client: Client,
    target: String,
    page_size: i64,
}

impl std::fmt::Debug for PostgresReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReader")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

const SELECT_PAGE: &str = "SELECT seq, event_id, event_type, actor, event_time, event_json, \
     event_hash, prev_hash, record_hash, key_id, signature FROM audit_records \
     WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

const SELECT_CHAINS: &str = "SELECT chain_id FROM audit_heads \
     UNION SELECT DISTINCT chain_id FROM audit_records \
     UNION SELECT DISTINCT chain_id FROM audit_checkpoints ORDER BY 1";

const SELECT_CHECKPOINTS: &str = "SELECT seq, head_hash, time, key_id, signature \
     FROM audit_checkpoints WHERE chain_id = $1 ORDER BY seq";

impl PostgresReader {
    /// Opens `url` without TLS (see [`crate::PostgresStore::connect`]).
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, PostgresError> {
        let connection = connect_plain(url, &options).await?;
        Self::open(connection, &options).await
    }

    /// Opens a database with a TLS connector.
    pub async fn connect_with_tls<T>(
        config: Config,
        tls: T,
        options: PostgresOptions,
    ) -> Result<Self, PostgresError>
    where
        T: MakeTlsConnect<Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let connection = connect_tls(config, tls, &options).await?;
        Self::open(connection, &options).await
    }

    async fn open(
        connection: Connection,
        options: &PostgresOptions,
    ) -> Result<Self, PostgresError> {
        let Connection { client, target } = connection;
        match schema::inspect(&client, &target).await? {
            SchemaState::Version(schema::SCHEMA_VERSION) => {}
            SchemaState::Empty => {
                return Err(PostgresError::ForeignSchema {
                    target,
                    detail: "no audit tables in this database".into(),
                });
            }
            SchemaState::Version(version) => {
                return Err(PostgresError::ForeignSchema {
                    target,
                    detail: format!("schema version {version} needs migrating by a writer first"),
                });
            }
        }
        Ok(Self {
            client,
            target,
            page_size: i64::try_from(options.page_size.max(1)).unwrap_or(5_000),
        })
    }

    /// The server, without password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The names of every chain with a record, head or checkpoint.
    pub async fn chains(&self) -> Result<Vec<String>, PostgresError> {
        let rows = self
            .client
            .query(SELECT_CHAINS, &[])
            .await
            .map_err(PostgresError::query(&self.target, "listing chains"))?;
        rows.iter()
            .map(|row| {
                row.try_get(0).map_err(|error| PostgresError::Corrupt {
                    target: self.target.clone(),
                    detail: format!("chain name: {error}"),
                })
            })
            .collect()
    }

    /// The stored checkpoints of `chain`, in seq order; undecodable rows as
    /// `Err((seq, detail))`.
    pub async fn checkpoints(
        &self,
        chain: &ChainId,
    ) -> Result<Vec<Result<Checkpoint, (u64, String)>>, PostgresError> {
        let rows = self
            .client
            .query(SELECT_CHECKPOINTS, &[&chain.as_str()])
            .await
            .map_err(PostgresError::query(&self.target, "reading checkpoints"))?;
        Ok(rows
            .iter()
            .map(|row| decode_checkpoint(chain, row))
            .collect())
    }

    /// Calls `each` with every record of `chain` in seq order, a page at a
    /// time; returns how many rows were read.
    pub async fn for_each_record(
        &self,
        chain: &ChainId,
        mut each: impl FnMut(StoredRecord),
    ) -> Result<u64, PostgresError> {
        let mut after = None;
        let mut count = 0u64;
        loop {
            let page = self.page_raw(chain, after).await?;
            let Some((last_seq, _)) = page.last() else {
                return Ok(count);
            };
            after = Some(*last_seq);
            let full = page.len() as i64 == self.page_size;
            for (_, record) in page {
                count += 1;
                each(record);
            }
            if !full {
                return Ok(count);
            }
        }
    }

    /// A page keyed by the raw stored seq (so that paging continues past
    /// rows whose seq is malformed).
    async fn page_raw(
        &self,
        chain: &ChainId,
        after: Option<i64>,
    ) -> Result<Vec<(i64, StoredRecord)>, PostgresError> {
        let rows = self
            .client
            .query(
                SELECT_PAGE,
                &[&chain.as_str(), &after.unwrap_or(i64::MIN), &self.page_size],
            )
            .await
            .map_err(PostgresError::query(&self.target, "reading records"))?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(|error| PostgresError::Corrupt {
                    target: self.target.clone(),
                    detail: format!("seq: {error}"),
                })?;
                Ok((seq, decode_record(chain, row)))
            })
            .collect()
    }

    /// Verifies every chain of the database (and any chain named only by
    /// `extra_checkpoints`), calling `progress` with the number of records
    /// checked so far after each page.
    pub async fn verify(
        &self,
        keyring: Keyring,
        options: VerifyOptions,
        extra_checkpoints: &[Checkpoint],
        mut progress: impl FnMut(u64),
    ) -> Result<VerifyReport, PostgresError> {
        let mut verifier = Verifier::new(keyring, options);
        let mut names: BTreeSet<String> = self.chains().await?.into_iter().collect();
        names.extend(
            extra_checkpoints
                .iter()
                .map(|c| c.chain.as_str().to_owned()),
        );
        let mut checked = 0u64;
        for name in names {
            let Ok(chain) = ChainId::new(&name) else {
                verifier.malformed(&name, 0, format!("invalid chain name {name:?}"));
                continue;
            };
            for checkpoint in self.checkpoints(&chain).await? {
                match checkpoint {
                    Ok(checkpoint) => verifier.checkpoint(&checkpoint),
                    Err((seq, detail)) => verifier.malformed(&name, seq, detail),
                }
            }
            extra_checkpoints
                .iter()
                .filter(|checkpoint| checkpoint.chain == chain)
                .for_each(|checkpoint| verifier.checkpoint(checkpoint));
            let mut after = None;
            loop {
                let page = self.page_raw(&chain, after).await?;
                let full = page.len() as i64 == self.page_size;
                for (seq, stored) in &page {
                    after = Some(*seq);
                    checked += 1;
                    match stored {
                        StoredRecord::Record(record) => verifier.record(record),
                        StoredRecord::Malformed { seq, detail } => {
                            verifier.malformed(&name, *seq, detail.clone())
                        }
                    }
                }
                progress(checked);
                if !full {
                    break;
                }
            }
        }
        Ok(verifier.finish())
    }
}

/// Verifies the PostgreSQL audit database at `url`: every chain, against
/// its stored checkpoints and `extra_checkpoints` (e.g. published ones).
pub async fn verify_postgres(
    url: &str,
    keyring: Keyring,
    options: VerifyOptions,
    extra_checkpoints: &[Checkpoint],
    progress: impl FnMut(u64),
) -> Result<VerifyReport, PostgresError> {
    let reader = PostgresReader::connect(url, PostgresOptions::default()).await?;
    reader
        .verify(keyring, options, extra_checkpoints, progress)
        .await
}

fn decode_record(chain: &ChainId, row: &Row) -> StoredRecord {
    let raw_seq: i64 = row.try_get(0).unwrap_or(0);
    let seq = u64::try_from(raw_seq).unwrap_or(0);
    match try_decode_record(chain, row) {
        Ok(record) => StoredRecord::Record(Box::new(record)),
        Err(detail) => StoredRecord::Malformed { seq, detail },
    }
}

fn try_decode_record(chain: &ChainId, row: &Row) -> Result<Record, String> {
    let text = |index: usize, name: &str| -> Result<String, String> {
        row.try_get(index)
            .map_err(|error| format!("{name}: {error}"))
    };
    let digest = |index: usize, name: &str| -> Result<Digest, String> {
        let bytes: Vec<u8> = row
            .try_get(index)
            .map_err(|error| format!("{name}: {error}"))?;
        Digest::from_slice(&bytes).map_err(|error| format!("{name}: {error}"))
    };
    let seq: i64 = row.try_get(0).map_err(|error| format!("seq: {error}"))?;
    let seq = u64::try_from(seq).map_err(|_| format!("negative seq {seq}"))?;
    let sig: Option<Vec<u8>> = row
        .try_get(10)
        .map_err(|error| format!("signature: {error}"))?;
    let sig = sig
        .map(|bytes| {
            <[u8; 64]>::try_from(bytes.as_slice())
                .map_err(|_| format!("signature has {} bytes, not 64", bytes.len()))
        })
        .transpose()?;
    Ok(Record {
        chain: chain.clone(),
        seq,
        columns: Some(EventColumns {
            id: text(1, "event_id")?,
            event_type: text(2, "event_type")?,
            actor: text(3, "actor")?,
            time: text(4, "event_time")?,
        }),
        event_json: text(5, "event_json")?,
        event_hash: digest(6, "event_hash")?,
        prev: digest(7, "prev_hash")?,
        hash: digest(8, "record_hash")?,
        key_id: row.try_get(9).map_err(|error| format!("key_id: {error}"))?,
        sig,
    })
}

fn decode_checkpoint(chain: &ChainId, row: &Row) -> Result<Checkpoint, (u64, String)> {
    let raw_seq: i64 = row.try_get(0).unwrap_or(0);
    let seq = u64::try_from(raw_seq).unwrap_or(0);
    let fail = |detail: String| (seq, format!("checkpoint: {detail}"));
    let head: Vec<u8> = row.try_get(1).map_err(|e| fail(e.to_string()))?;
    let sig: Vec<u8> = row.try_get(4).map_err(|e| fail(e.to_string()))?;
    Ok(Checkpoint {
        chain: chain.clone(),
        seq: u64::try_from(raw_seq).map_err(|_| fail(format!("negative seq {raw_seq}")))?,
        head: Digest::from_slice(&head).map_err(|e| fail(e.to_string()))?,
        time: row.try_get(2).map_err(|e| fail(e.to_string()))?,
        key_id: row.try_get(3).map_err(|e| fail(e.to_string()))?,
        sig: <[u8; 64]>::try_from(sig.as_slice())
            .map_err(|_| fail(format!("signature has {} bytes, not 64", sig.len())))?,
    })
}
