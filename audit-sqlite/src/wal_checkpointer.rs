//! WAL checkpoints off the commit path.
//!
//! In WAL mode SQLite copies committed pages back into the database file
//! (a checkpoint) when the log grows past `wal_autocheckpoint` pages, and it
//! does so inside the `COMMIT` that crossed the mark: the writer waits
//! for the copy and its fsync while the signing threads idle. A
//! [`WalCheckpointer`] runs `PRAGMA wal_checkpoint(PASSIVE)` on a thread and
//! connection of its own after each commit it is nudged about (and once a
//! second), so the copy overlaps with the sealing of the next batch. The
//! writer keeps an automatic checkpoint at [`BACKSTOP_PAGES`] in case this
//! thread falls behind or cannot open the file.
//!
//! Durability does not change: a commit is durable when its frames are in
//! the WAL (and synced, with `synchronous=FULL`), before any checkpoint. A
//! passive checkpoint takes no lock a writer or reader waits for.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The writer's own automatic checkpoint, kept as a backstop: 16,384
/// pages (64 MiB of 4 KiB pages) of log before a commit checkpoints.
pub(crate) const BACKSTOP_PAGES: u32 = 16_384;

/// How often the thread checkpoints when nobody nudges it.
const IDLE_PERIOD: Duration = Duration::from_secs(1);

/// A thread that checkpoints one database file's WAL; stops when dropped.
#[derive(Debug)]
pub(crate) struct WalCheckpointer {
    nudges: SyncSender<()>,
}

impl WalCheckpointer {
    /// Starts the thread for `path`, with the writer's `synchronous`
    /// setting. `None` (logged) if no thread can be started: the writer's
    /// backstop checkpoints then.
    pub(crate) fn start(path: &Path, synchronous: &'static str) -> Option<Self> {
        Self::start_with_period(path, synchronous, IDLE_PERIOD)
    }

    /// [`start`](Self::start), checkpointing every `idle_period` when not
    /// nudged.
    fn start_with_period(
        path: &Path,
        synchronous: &'static str,
        idle_period: Duration,
    ) -> Option<Self> {
        let (nudges, nudged) = sync_channel(1);
        let thread_path = path.to_owned();
        let started = std::thread::Builder::new()
            .name("audit-sqlite-wal".into())
            .spawn(move || run(&thread_path, synchronous, idle_period, &nudged));
        match started {
            Ok(_) => Some(Self { nudges }),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "no WAL checkpoint thread; commits will checkpoint");
                None
            }
        }
    }

    /// Asks for a checkpoint soon (a commit just landed); never blocks.
    pub(crate) fn nudge(&self) {
        match self.nudges.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

fn run(path: &Path, synchronous: &str, idle_period: Duration, nudged: &Receiver<()>) {
    let connection = match open(path, synchronous) {
        Ok(connection) => connection,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "the WAL checkpoint thread cannot open the file; commits will checkpoint");
            return;
        }
    };
    loop {
        match nudged.recv_timeout(idle_period) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let checkpoint = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(error) = checkpoint {
            tracing::debug!(path = %path.display(), %error, "passive WAL checkpoint failed; will try again");
        }
    }
}

/// Opens the writer's file read-write, never creating one: a file moved
/// or deleted under the store is not replaced by an empty database.
fn open(path: &Path, synchronous: &str) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.pragma_update(None, "synchronous", synchronous)?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nudge_checkpoints_the_log_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (zeroblob(100000));")
            .unwrap();
        // Only the nudge can checkpoint: the idle period is an hour.
        let checkpointer =
            WalCheckpointer::start_with_period(&path, "FULL", Duration::from_secs(3_600)).unwrap();
        checkpointer.nudge();
        // The pages reach the database file, copied by the thread alone
        // (the writer never checkpoints).
        let observer = Connection::open(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let size: i64 = observer
                .query_row("PRAGMA page_count", [], |row| row.get(0))
                .unwrap();
            let file_pages = std::fs::metadata(&path).unwrap().len() / 4096;
            if file_pages as i64 >= size && size > 20 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the file holds {file_pages} of {size} pages after 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_missing_file_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.db");
        assert!(open(&path, "FULL").is_err());
        assert!(!path.exists(), "the checkpoint thread created {path:?}");
    }
}
