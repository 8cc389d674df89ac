//! The statements a writer runs, prepared once per connection.

use tokio_postgres::{Client, Statement};

use crate::error::PostgresError;

/// Prepared statements of one connection.
pub(crate) struct Statements {
    pub(crate) lock_head: Statement,
    pub(crate) init_head: Statement,
    pub(crate) read_head: Statement,
    pub(crate) last_record: Statement,
    pub(crate) existing_ids: Statement,
    pub(crate) insert_records: Statement,
    pub(crate) update_head: Statement,
    pub(crate) insert_dead_letters: Statement,
    pub(crate) insert_checkpoint: Statement,
}

const LOCK_HEAD: &str =
    "SELECT seq, record_hash FROM audit_heads WHERE chain_id = $1::text FOR UPDATE";

const INIT_HEAD: &str = "INSERT INTO audit_heads (chain_id, seq, record_hash) \
     SELECT $1::text, COALESCE(last.seq, 0), COALESCE(last.record_hash, $2::bytea) \
     FROM (SELECT 1) AS one LEFT JOIN LATERAL \
       (SELECT seq, record_hash FROM audit_records WHERE chain_id = $1::text \
        ORDER BY seq DESC LIMIT 1) AS last ON true \
     ON CONFLICT (chain_id) DO NOTHING";

const READ_HEAD: &str = "SELECT seq, record_hash FROM audit_heads WHERE chain_id = $1::text";

const LAST_RECORD: &str = "SELECT seq, record_hash FROM audit_records WHERE chain_id = $1::text \
     ORDER BY seq DESC LIMIT 1";

const EXISTING_IDS: &str = "SELECT event_id, seq, record_hash FROM audit_records \
     WHERE chain_id = $1::text AND event_id = ANY($2::text[])";

const INSERT_RECORDS: &str = "INSERT INTO audit_records (chain_id, seq, event_id, event_type, \
       actor, event_time, event_json, event_hash, prev_hash, record_hash, key_id, signature) \
     SELECT $1::text, r.* FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], \
       $6::text[], $7::text[], $8::bytea[], $9::bytea[], $10::bytea[], $11::text[], \
       $12::bytea[]) AS r";

const UPDATE_HEAD: &str =
    "UPDATE audit_heads SET seq = $2::bigint, record_hash = $3::bytea WHERE chain_id = $1::text";

const INSERT_DEAD_LETTERS: &str = "INSERT INTO audit_dead_letters (chain_id, event_id, \
       event_json, failure_reason, failed_at, attempts) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[])";

const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (chain_id, seq, head_hash, time, \
       key_id, signature) VALUES ($1::text, $2::bigint, $3::bytea, $4::text, $5::text, $6::bytea) \
     ON CONFLICT (chain_id, seq) DO NOTHING";

impl Statements {
    /// Prepares every statement on `client`.
    pub(crate) async fn prepare(client: &Client, target: &str) -> Result<Self, PostgresError> {
        let prepare = |sql: &'static str| async move {
            client
                .prepare(sql)
                .await
                .map_err(PostgresError::query(target, "preparing statements"))
        };
        Ok(Self {
            lock_head: prepare(LOCK_HEAD).await?,
            init_head: prepare(INIT_HEAD).await?,
            read_head: prepare(READ_HEAD).await?,
            last_record: prepare(LAST_RECORD).await?,
            existing_ids: prepare(EXISTING_IDS).await?,
            insert_records: prepare(INSERT_RECORDS).await?,
            update_head: prepare(UPDATE_HEAD).await?,
            insert_dead_letters: prepare(INSERT_DEAD_LETTERS).await?,
            insert_checkpoint: prepare(INSERT_CHECKPOINT).await?,
        })
    }
}
