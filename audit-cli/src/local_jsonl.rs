//! A local folder in the JSONL layout of FORMAT.md section 7
//! (`DIR/{chain}/records/{first_seq:020}.jsonl`,
//! `DIR/{chain}/checkpoints/{seq:020}.json`): streaming verification and
//! export.
//!
//! Segments are read one line at a time in name order (which is seq
//! order), so memory stays constant whatever the chain's length.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use audit_core::chain::{
    ChainHead, ChainId, Checkpoint, Record, Verifier, VerifyOptions, VerifyReport,
};
use audit_core::jsonl;
use audit_core::keys::Keyring;

use crate::error::CliError;

const RECORDS: &str = "records";
const CHECKPOINTS: &str = "checkpoints";

/// A JSONL folder.
#[derive(Debug, Clone)]
pub struct LocalJsonl {
    root: PathBuf,
}

fn io_error(path: &Path, what: &str) -> impl FnOnce(std::io::Error) -> CliError {
    let path = path.display().to_string();
    let what = what.to_owned();
    move |error| CliError::usage(format!("{what} {path}: {error}"))
}

impl LocalJsonl {
    /// An existing folder (to read).
    pub fn open(root: &Path) -> Result<Self, CliError> {
        if !root.is_dir() {
            return Err(CliError::usage(format!(
                "{} is not a folder; give file:///DIR of a folder in the JSONL layout",
                root.display()
            )));
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// A folder to export into (created when missing).
    pub fn create(root: &Path) -> Result<Self, CliError> {
        fs::create_dir_all(root).map_err(io_error(root, "creating folder"))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The chains: sub-folders holding `records/` or `checkpoints/`.
    pub fn chains(&self) -> Result<Vec<String>, CliError> {
        let mut chains = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_error(&self.root, "listing"))? {
            let entry = entry.map_err(io_error(&self.root, "listing"))?;
            let path = entry.path();
            if path.join(RECORDS).is_dir() || path.join(CHECKPOINTS).is_dir() {
                chains.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        chains.sort();
        Ok(chains)
    }

    fn sorted_files(&self, chain: &str, kind: &str) -> Result<Vec<PathBuf>, CliError> {
        let dir = self.root.join(chain).join(kind);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir, "listing"))? {
            files.push(entry.map_err(io_error(&dir, "listing"))?.path());
        }
        files.sort();
        Ok(files)
    }

    /// Every checkpoint of every chain; an undecodable object is an error
    /// naming it.
    pub fn all_checkpoints(&self) -> Result<Vec<Checkpoint>, CliError> {
        let mut all = Vec::new();
        for chain in self.chains()? {
            for path in self.sorted_files(&chain, CHECKPOINTS)? {
                let text = fs::read_to_string(&path).map_err(io_error(&path, "reading"))?;
                let checkpoint = jsonl::decode_checkpoint(&text)
                    .map_err(|error| CliError::usage(format!("{}: {error}", path.display())))?;
                all.push(checkpoint);
            }
        }
        Ok(all)
    }

    /// Verifies every chain of the folder.
    pub fn verify(
        &self,
        keyring: &Keyring,
        options: &VerifyOptions,
        from: Option<u64>,
        extra_checkpoints: &[Checkpoint],
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, CliError> {
        let mut reports = Vec::new();
        let mut done = 0u64;
        for chain in self.chains()? {
            reports.push(self.verify_chain(
                &chain,
                keyring,
                options,
                from,
                extra_checkpoints,
                &mut |n| {
                    done += n;
                    progress(done);
                },
            )?);
        }
        Ok(crate::verify::merge(reports))
    }

    fn verify_chain(
        &self,
        chain: &str,
        keyring: &Keyring,
        options: &VerifyOptions,
        from: Option<u64>,
        extra_checkpoints: &[Checkpoint],
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, CliError> {
        let from = from.unwrap_or(1).max(1);
        let segments = self.sorted_files(chain, RECORDS)?;
        let mut options = options.clone();
        options.start = Some(self.start_head(chain, &segments, from)?);
        let mut verifier = Verifier::new(keyring.clone(), options);
        for path in self.sorted_files(chain, CHECKPOINTS)? {
            let text = fs::read_to_string(&path).map_err(io_error(&path, "reading"))?;
            match jsonl::decode_checkpoint(&text) {
                Ok(checkpoint) if checkpoint.seq >= from => verifier.checkpoint(&checkpoint),
                Ok(_) => {}
                Err(error) => verifier.malformed(
                    chain,
                    jsonl::seq_of_name(&path.to_string_lossy()).unwrap_or(0),
                    format!("{}: {error}", path.display()),
                ),
            }
        }
        for checkpoint in extra_checkpoints
            .iter()
            .filter(|c| c.chain.as_str() == chain && c.seq >= from)
        {
            verifier.checkpoint(checkpoint);
        }
        for (index, path) in segments.iter().enumerate() {
            let next_first = segments
                .get(index + 1)
                .and_then(|next| jsonl::seq_of_name(&next.to_string_lossy()));
            if next_first.is_some_and(|next| next <= from) {
                continue;
            }
            let mut count = 0;
            self.read_segment(chain, path, &mut |decoded| {
                match decoded {
                    Ok(record) if record.seq >= from => verifier.record(&record),
                    Ok(_) => {}
                    Err((seq, detail)) => verifier.malformed(chain, seq, detail),
                }
                count += 1;
            })?;
            progress(count);
        }
        Ok(verifier.finish())
    }

    fn start_head(
        &self,
        chain: &str,
        segments: &[PathBuf],
        from: u64,
    ) -> Result<ChainHead, CliError> {
        if from <= 1 {
            return Ok(ChainHead::EMPTY);
        }
        let previous = from - 1;
        let holder = segments.iter().rfind(|path| {
            jsonl::seq_of_name(&path.to_string_lossy()).is_some_and(|first| first <= previous)
        });
        let mut head = None;
        if let Some(path) = holder {
            self.read_segment(chain, path, &mut |decoded| {
                if let Ok(record) = decoded
                    && record.seq == previous
                {
                    head = Some(record.head());
                }
            })?;
        }
        head.ok_or_else(|| {
            CliError::usage(format!(
                "cannot start at seq {from} of chain {chain} in {}: there is no record at seq {previous}",
                self.root.display()
            ))
        })
    }

    /// Reads one segment line by line; undecodable lines come out as
    /// `(seq, detail)` with the seq the line should have.
    fn read_segment(
        &self,
        chain: &str,
        path: &Path,
        each: &mut dyn FnMut(Result<Record, (u64, String)>),
    ) -> Result<(), CliError> {
        let name = path.to_string_lossy();
        let Some(first) = jsonl::seq_of_name(&name).filter(|_| name.ends_with(".jsonl")) else {
            each(Err((
                0,
                format!(
                    "{} is not a segment name ({{first_seq:020}}.jsonl)",
                    path.display()
                ),
            )));
            return Ok(());
        };
        let file = File::open(path).map_err(io_error(path, "opening"))?;
        for (index, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io_error(path, "reading"))?;
            let expected = first + index as u64;
            let decoded = jsonl::decode_record(&line)
                .map_err(|error| {
                    (
                        expected,
                        format!("{}, line {}: {error}", path.display(), index + 1),
                    )
                })
                .and_then(|record| {
                    if record.chain.as_str() == chain {
                        Ok(record)
                    } else {
                        Err((
                            expected,
                            format!(
                                "{}: record of chain {} in the folder of chain {chain}",
                                path.display(),
                                record.chain
                            ),
                        ))
                    }
                });
            each(decoded);
        }
        Ok(())
    }
}

/// Writes one chain into a JSONL folder: segments of `segment_records`
/// records, each file created new (never overwritten) and fsync'd.
pub struct SegmentWriter {
    dir: PathBuf,
    segment_records: u64,
    current: Option<(PathBuf, BufWriter<File>, u64)>,
}

impl SegmentWriter {
    /// A writer for `chain` under `folder`.
    pub fn new(
        folder: &LocalJsonl,
        chain: &ChainId,
        segment_records: u64,
    ) -> Result<Self, CliError> {
        let dir = folder.root.join(chain.as_str());
        for kind in [RECORDS, CHECKPOINTS] {
            let path = dir.join(kind);
            fs::create_dir_all(&path).map_err(io_error(&path, "creating folder"))?;
        }
        Ok(Self {
            dir,
            segment_records: segment_records.max(1),
            current: None,
        })
    }

    /// Appends a record, starting a new segment when the current one is full.
    pub fn record(&mut self, record: &Record) -> Result<(), CliError> {
        if self
            .current
            .as_ref()
            .is_none_or(|(_, _, count)| *count >= self.segment_records)
        {
            self.finish_segment()?;
            let path = self.dir.join(RECORDS).join(jsonl::segment_name(record.seq));
            self.current = Some((path.clone(), BufWriter::new(create_new(&path)?), 0));
        }
        if let Some((path, writer, count)) = self.current.as_mut() {
            writer
                .write_all(jsonl::encode_record(record).as_bytes())
                .map_err(io_error(path, "writing"))?;
            *count += 1;
        }
        Ok(())
    }

    /// Writes a checkpoint object.
    pub fn checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), CliError> {
        let path = self
            .dir
            .join(CHECKPOINTS)
            .join(jsonl::checkpoint_name(checkpoint.seq));
        let mut file = create_new(&path)?;
        file.write_all(jsonl::encode_checkpoint(checkpoint).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error(&path, "writing"))
    }

    /// Flushes and syncs the last segment.
    pub fn finish_segment(&mut self) -> Result<(), CliError> {
        if let Some((path, writer, _)) = self.current.take() {
            let file = writer
                .into_inner()
                .map_err(|error| io_error(&path, "writing")(error.into_error()))?;
            file.sync_all().map_err(io_error(&path, "syncing"))?;
        }
        Ok(())
    }
}

fn create_new(path: &Path) -> Result<File, CliError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|error| {
            CliError::usage(format!(
                "creating {}: {error}; export into an empty folder (objects are never overwritten)",
                path.display()
            ))
        })
}
