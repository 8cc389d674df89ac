//! The journal's writer thread: group commit, segment rotation, and undo of
//! a failed write.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use super::frame::{self, SEGMENT_MAGIC};
use super::recovery::{segment_file_name, temporary_file_name};
use super::{JournalError, JournalTicket, SegmentState, Shared, WriteRequest, remove_segment};

/// Requests taken into one group at most.
const MAX_GROUP: usize = 8192;

pub(super) fn spawn(shared: Arc<Shared>) -> Result<Sender<WriteRequest>, JournalError> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("audit-journal".into())
        .spawn(move || Writer { shared, file: None }.run(receiver))
        .map_err(|source| JournalError::Io {
            path: "audit-journal writer thread".into(),
            source,
        })?;
    Ok(sender)
}

struct Writer {
    shared: Arc<Shared>,
    file: Option<(u64, File)>,
}

impl Writer {
    fn run(mut self, receiver: Receiver<WriteRequest>) {
        while let Ok(first) = receiver.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<WriteRequest>) {
        let mut buffer =
            Vec::with_capacity(group.iter().map(|request| request.reserved as usize).sum());
        for request in &group {
            frame::encode(&mut buffer, request.payload.canonical_json().as_bytes());
        }
        let reserved: u64 = group.iter().map(|request| request.reserved).sum();
        let result = self.write_group(&buffer, group.len() as u64);
        {
            let mut table = self.shared.table();
            table.reserved = table.reserved.saturating_sub(reserved);
        }
        match result {
            Ok(segment) => {
                for request in group {
                    let _ = request.ack.send(Ok(JournalTicket { segment }));
                }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(dir = %self.shared.config.dir.display(), error = %message, events = group.len(), "journal write failed; the events were not admitted");
                let mut group = group.into_iter();
                if let Some(first) = group.next() {
                    let _ = first.ack.send(Err(error));
                }
                for request in group {
                    let _ = request.ack.send(Err(JournalError::Io {
                        path: self.shared.config.dir.clone(),
                        source: std::io::Error::other(message.clone()),
                    }));
                }
            }
        }
        self.shared.space.notify_waiters();
    }

    /// Writes the frames to the active segment and fsyncs; returns its id.
    fn write_group(&mut self, buffer: &[u8], events: u64) -> Result<u64, JournalError> {
        self.rotate_if_needed(buffer.len() as u64)?;
        let Some((id, file)) = self.file.as_mut() else {
            return Err(self.broken("no active segment"));
        };
        let id = *id;
        let path = self.shared.config.dir.join(segment_file_name(id));
        let before = self
            .shared
            .table()
            .segments
            .get(&id)
            .map_or(0, |segment| segment.bytes);
        if let Err(source) = file.write_all(buffer).and_then(|()| file.sync_data()) {
            // Undo the partial write so no half frame precedes later ones.
            if let Err(undo) = file.set_len(before).and_then(|()| file.sync_data()) {
                self.file = None;
                return Err(self.broken(&format!(
                    "write failed ({source}) and could not be undone ({undo})"
                )));
            }
            return Err(JournalError::Io { path, source });
        }
        let mut table = self.shared.table();
        table.bytes += buffer.len() as u64;
        if let Some(segment) = table.segments.get_mut(&id) {
            segment.bytes += buffer.len() as u64;
            segment.pending += events;
        }
        Ok(id)
    }

    /// Opens a new segment when there is none, the active one is full, or
    /// all its events are resolved (so it can be deleted).
    fn rotate_if_needed(&mut self, incoming: u64) -> Result<(), JournalError> {
        let limit = self.shared.config.segment_bytes;
        let rotate = match &self.file {
            None => true,
            Some((id, _)) => {
                let table = self.shared.table();
                table.segments.get(id).is_none_or(|segment| {
                    let header = SEGMENT_MAGIC.len() as u64;
                    segment.bytes > header
                        && (segment.bytes + incoming > limit || segment.pending == 0)
                })
            }
        };
        if !rotate {
            return Ok(());
        }
        let id = self.shared.table().next_id;
        let file = self.create_segment(id)?;
        let path = self.shared.config.dir.join(segment_file_name(id));
        let mut table = self.shared.table();
        table.next_id += 1;
        let previous = table.active.replace(id);
        table.bytes += SEGMENT_MAGIC.len() as u64;
        table.segments.insert(
            id,
            SegmentState {
                path,
                bytes: SEGMENT_MAGIC.len() as u64,
                pending: 0,
            },
        );
        if let Some(previous) = previous
            && table
                .segments
                .get(&previous)
                .is_some_and(|segment| segment.pending == 0)
        {
            remove_segment(&mut table, previous);
        }
        self.file = Some((id, file));
        Ok(())
    }

    /// Creates segment `id` with its header, retryably: the header is
    /// written and fsync'd under a temporary name, which is then renamed
    /// into place and the directory fsync'd. A failure (a full disk)
    /// removes what it made and leaves nothing that blocks the next try;
    /// a crash leaves at most a `*.journal.tmp` file, which recovery
    /// removes.
    fn create_segment(&self, id: u64) -> Result<File, JournalError> {
        let dir = &self.shared.config.dir;
        let temporary = dir.join(temporary_file_name(id));
        let path = dir.join(segment_file_name(id));
        let io_error = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| JournalError::Io { path, source }
        };
        let created = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(SEGMENT_MAGIC)?;
                file.sync_all()
            })
            .map_err(io_error(&temporary))
            .and_then(|()| fs::rename(&temporary, &path).map_err(io_error(&path)))
            .and_then(|()| {
                File::open(dir)
                    .and_then(|directory| directory.sync_all())
                    .map_err(io_error(dir))
            })
            .and_then(|()| {
                OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io_error(&path))
            });
        if created.is_err() {
            // Best effort: a leftover is harmless (the next try truncates
            // the temporary file or replaces the header-only segment, and
            // recovery removes or drops either), but a full disk likes it gone.
            let _ = fs::remove_file(&temporary);
            let _ = fs::remove_file(&path);
        }
        created
    }

    fn broken(&self, detail: &str) -> JournalError {
        let mut table = self.shared.table();
        let detail = table
            .broken
            .get_or_insert_with(|| detail.to_owned())
            .clone();
        JournalError::Broken {
            dir: self.shared.config.dir.clone(),
            detail,
        }
    }
}
