//! The dead-letter table `audit_dead_letters`: listing, and replay into the
//! chain.
//!
//! Replay takes the letters of one chain in id order, a page at a time;
//! each page is one transaction that appends the events (idempotently: an
//! id already in the chain keeps its record) and deletes the letters, so a
//! crash in between neither loses nor duplicates anything. The letter rows
//! are locked `FOR UPDATE SKIP LOCKED`, so two replays at once share the
//! work instead of both appending it. A letter whose event does not parse
//! stays in the table and is reported.

use audit_core::chain::{ChainId, Sealer};
use audit_core::dead_letter::DeadLetter;
use audit_core::sink::AppendOutcome;
use tokio_postgres::Row;

use crate::append::append_in;
use crate::error::PostgresError;
use crate::store::PostgresStore;

/// Letters replayed per transaction.
pub const REPLAY_PAGE: i64 = 1_000;

/// A dead letter with its row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// `audit_dead_letters.id`.
    pub id: i64,
    /// The letter.
    pub letter: DeadLetter,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Letters whose event was appended now.
    pub appended: u64,
    /// Letters whose event was already in the chain (deleted as well).
    pub already_present: u64,
    /// Letters left in place because their event does not parse: id and why.
    pub invalid: Vec<(i64, String)>,
}

const SELECT_LETTERS: &str = "SELECT id, chain_id, event_id, event_json, failure_reason, \
     failed_at, attempts FROM audit_dead_letters";

impl PostgresStore {
    /// Every dead letter, of one chain or of all, in id order.
    pub async fn list_dead_letters(
        &self,
        chain: Option<&ChainId>,
    ) -> Result<Vec<StoredDeadLetter>, PostgresError> {
        let action = "listing dead letters";
        let rows = match chain {
            Some(chain) => {
                let sql = format!("{SELECT_LETTERS} WHERE chain_id = $1 ORDER BY id");
                self.client().query(&sql, &[&chain.as_str()]).await
            }
            None => {
                let sql = format!("{SELECT_LETTERS} ORDER BY id");
                self.client().query(&sql, &[]).await
            }
        }
        .map_err(PostgresError::query(self.target(), action))?;
        rows.iter()
            .map(|row| decode_letter(self.target(), row))
            .collect()
    }

    /// Replays the dead letters of `sealer`'s chain into the chain and
    /// deletes them, a page per transaction.
    pub async fn replay_dead_letters(
        &mut self,
        sealer: &Sealer,
    ) -> Result<ReplayReport, PostgresError> {
        let mut report = ReplayReport::default();
        let mut after = 0i64;
        loop {
            let (page_last, done) = self.replay_page(sealer, after, &mut report).await?;
            after = page_last;
            if done {
                return Ok(report);
            }
        }
    }

    /// One page: returns the last id seen and whether it was the last page.
    async fn replay_page(
        &mut self,
        sealer: &Sealer,
        after: i64,
        report: &mut ReplayReport,
    ) -> Result<(i64, bool), PostgresError> {
        let chain = sealer.chain().as_str().to_owned();
        let (transaction, statements, target) = self.begin_with_statements().await?;
        let sql = format!(
            "{SELECT_LETTERS} WHERE chain_id = $1 AND id > $2 ORDER BY id LIMIT $3 \
             FOR UPDATE SKIP LOCKED"
        );
        let rows = transaction
            .query(&sql, &[&chain, &after, &REPLAY_PAGE])
            .await
            .map_err(PostgresError::query(target, "reading dead letters"))?;
        let letters = rows
            .iter()
            .map(|row| decode_letter(target, row))
            .collect::<Result<Vec<_>, _>>()?;
        let last = letters.last().map_or(after, |stored| stored.id);
        let mut replayed_ids = Vec::new();
        let mut events = Vec::new();
        for stored in &letters {
            match stored.letter.event() {
                Ok(event) => {
                    replayed_ids.push(stored.id);
                    events.push(event);
                }
                Err(error) => report.invalid.push((stored.id, error.to_string())),
            }
        }
        let outcomes = append_in(&transaction, statements, target, sealer, &events).await?;
        for outcome in &outcomes {
            match outcome {
                AppendOutcome::Appended(receipt) if receipt.already_present => {
                    report.already_present += 1
                }
                _ => report.appended += 1,
            }
        }
        transaction
            .execute(
                "DELETE FROM audit_dead_letters WHERE id = ANY($1::bigint[])",
                &[&replayed_ids],
            )
            .await
            .map_err(PostgresError::query(
                target,
                "deleting replayed dead letters",
            ))?;
        transaction
            .commit()
            .await
            .map_err(PostgresError::query(target, "committing a replay"))?;
        Ok((last, (letters.len() as i64) < REPLAY_PAGE))
    }
}

fn decode_letter(target: &str, row: &Row) -> Result<StoredDeadLetter, PostgresError> {
    let corrupt = |error: tokio_postgres::Error| PostgresError::Corrupt {
        target: target.to_owned(),
        detail: format!("dead letter row: {error}"),
    };
    let attempts: i32 = row.try_get(6).map_err(corrupt)?;
    Ok(StoredDeadLetter {
        id: row.try_get(0).map_err(corrupt)?,
        letter: DeadLetter {
            chain_id: row.try_get(1).map_err(corrupt)?,
            event_id: row.try_get(2).map_err(corrupt)?,
            event_json: row.try_get(3).map_err(corrupt)?,
            failure_reason: row.try_get(4).map_err(corrupt)?,
            failed_at: row.try_get(5).map_err(corrupt)?,
            attempts: u32::try_from(attempts).unwrap_or(0),
        },
    })
}
