//! The transparency-log commands (FORMAT.md section 8):
//!
//! - `checkpoint URL [--chain C]` prints the newest tree checkpoint note;
//! - `prove URL --seq N | --consistency-from M [--chain C]` prints an
//!   inclusion proof (`c2sp.org/tlog-proof@v1`) or a consistency proof
//!   (tlog-witness `add-checkpoint` body) against that checkpoint;
//! - `verify-proof (--pubkey PEM | --vkey VKEY) FILE [--event FILE]
//!   [--old-checkpoint FILE]` checks a proof offline: exit 0 when it holds,
//!   1 when it does not, 2 on usage or I/O errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use audit_core::chain::ChainId;
use audit_core::chain::note::{Note, Vkey};
use audit_core::chain::proof::{
    ConsistencyProof, InclusionProof, MAX_PROOF_FILE_BYTES, TLOG_PROOF_HEADER, TrustPolicy,
};
use audit_core::chain::tree::EMPTY_ROOT;
use audit_core::chain::tree_checkpoint::TreeCheckpoint;
use audit_core::keys::PublicKey;
use audit_core::proving::{ProveError, newest_tree_checkpoint, prove_consistency, prove_inclusion};
use deferred_audit::open_source;

use crate::error::{CliError, OK, block_on, failed};
use crate::store_url::StoreUrl;
use crate::verify::print_out;

/// Arguments of `checkpoint`.
#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// The store.
    url: StoreUrl,
    /// The chain.
    #[arg(long, default_value = "default")]
    chain: String,
}

/// Arguments of `prove`.
#[derive(Debug, clap::Args)]
pub struct ProveArgs {
    /// The store.
    url: StoreUrl,
    /// Prove the inclusion of the record at this seq.
    #[arg(
        long,
        conflicts_with = "consistency_from",
        required_unless_present = "consistency_from"
    )]
    seq: Option<u64>,
    /// Prove that the newest checkpoint extends the tree of this size.
    #[arg(long, value_name = "M")]
    consistency_from: Option<u64>,
    /// The chain.
    #[arg(long, default_value = "default")]
    chain: String,
}

/// Arguments of `verify-proof`.
#[derive(Debug, clap::Args)]
pub struct VerifyProofArgs {
    /// The proof file: a `.tlog-proof` inclusion proof or a consistency proof.
    file: PathBuf,
    /// The log's public key (SPKI PEM); the checkpoint's origin is its key name.
    #[arg(
        long,
        value_name = "PEM",
        conflicts_with = "vkey",
        required_unless_present = "vkey"
    )]
    pubkey: Option<PathBuf>,
    /// The log's verifier key (`origin+hash+base64`, C2SP signed-note).
    #[arg(long, value_name = "VKEY")]
    vkey: Option<String>,
    /// Require this origin (with --pubkey).
    #[arg(long)]
    origin: Option<String>,
    /// The event the inclusion proof is about (its canonical bytes; one
    /// trailing newline is ignored). Default: the event carried in the
    /// proof's `extra` line.
    #[arg(long, value_name = "FILE")]
    event: Option<PathBuf>,
    /// For a consistency proof from size M > 0: the tree checkpoint note
    /// at size M that the proof starts from.
    #[arg(long, value_name = "FILE")]
    old_checkpoint: Option<PathBuf>,
    /// The witness policy the proof's checkpoint must meet.
    #[command(flatten)]
    witness: crate::witness::WitnessPolicyArgs,
}

fn chain_id(name: &str) -> Result<ChainId, CliError> {
    ChainId::new(name).map_err(|error| CliError::usage(error.to_string()))
}

fn prove_error(url: &StoreUrl, error: ProveError) -> CliError {
    CliError::usage(format!("{url}: {error}"))
}

/// Runs `checkpoint`.
pub fn checkpoint(args: &CheckpointArgs) -> Result<ExitCode, CliError> {
    let chain = chain_id(&args.chain)?;
    let note = block_on(async {
        let source = open_source(&args.url).await?;
        newest_tree_checkpoint(source.as_ref(), &chain)
            .await
            .map_err(|error| prove_error(&args.url, error))
    })??;
    print_out(&note.to_string())?;
    Ok(OK)
}

/// Runs `prove`.
pub fn prove(args: &ProveArgs) -> Result<ExitCode, CliError> {
    let chain = chain_id(&args.chain)?;
    let text = block_on(async {
        let source = open_source(&args.url).await?;
        let source = source.as_ref();
        let note = newest_tree_checkpoint(source, &chain)
            .await
            .map_err(|error| prove_error(&args.url, error))?;
        let text = match (args.seq, args.consistency_from) {
            (Some(seq), _) => prove_inclusion(source, &chain, seq, &note)
                .await
                .map(|proof| proof.to_string()),
            (None, Some(old_size)) => prove_consistency(source, &chain, old_size, &note)
                .await
                .map(|proof| proof.to_string()),
            (None, None) => return Err(CliError::usage("give --seq N or --consistency-from M")),
        };
        text.map_err(|error| prove_error(&args.url, error))
    })??;
    print_out(&text)?;
    Ok(OK)
}

fn read_limited(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|error| CliError::usage(format!("reading {what} {}: {error}", path.display())))?;
    if bytes.len() > MAX_PROOF_FILE_BYTES {
        return Err(CliError::usage(format!(
            "{what} {} is {} bytes, more than the {MAX_PROOF_FILE_BYTES} a proof may have",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The log's vkey: given, or made from the public key and the note's origin.
fn log_vkey(args: &VerifyProofArgs, note: &Note) -> Result<Vkey, CliError> {
    if let Some(vkey) = &args.vkey {
        return Vkey::parse(vkey).map_err(|error| CliError::usage(format!("--vkey: {error}")));
    }
    let Some(path) = &args.pubkey else {
        return Err(CliError::usage("give --pubkey PEM or --vkey VKEY"));
    };
    let key = PublicKey::load(path)?;
    let origin = TreeCheckpoint::parse_body(note.body())
        .map(|checkpoint| checkpoint.origin().to_owned())
        .unwrap_or_default();
    if let Some(wanted) = &args.origin
        && *wanted != origin
    {
        return Err(CliError::usage(format!(
            "the checkpoint's origin is {origin:?}, not {wanted:?}"
        )));
    }
    Vkey::ed25519(&origin, key.verifying_key())
        .map_err(|error| CliError::usage(format!("checkpoint origin: {error}")))
}

/// The log key and witness policy the proof's checkpoint must meet.
fn trust_policy(args: &VerifyProofArgs, note: &Note) -> Result<TrustPolicy, CliError> {
    let (witnesses, quorum) = args.witness.policy()?;
    Ok(TrustPolicy::new(log_vkey(args, note)?).with_witnesses(witnesses, quorum))
}

/// Runs `verify-proof`: prints what holds, or why not (exit 1).
pub fn verify_proof(args: &VerifyProofArgs) -> Result<ExitCode, CliError> {
    let bytes = read_limited(&args.file, "proof file")?;
    let outcome = if bytes.starts_with(format!("{TLOG_PROOF_HEADER}\n").as_bytes()) {
        verify_inclusion(args, &bytes)?
    } else if bytes.starts_with(b"old ") {
        verify_consistency(args, &bytes)?
    } else {
        Err(format!(
            "{} is neither a {TLOG_PROOF_HEADER} file nor a consistency proof (\"old <size>\")",
            args.file.display()
        ))
    };
    match outcome {
        Ok(summary) => {
            print_out(&format!("OK: {summary}\n"))?;
            Ok(OK)
        }
        Err(why) => {
            print_out(&format!("FAILED: {why}\n"))?;
            Ok(failed())
        }
    }
}

fn verify_inclusion(
    args: &VerifyProofArgs,
    bytes: &[u8],
) -> Result<Result<String, String>, CliError> {
    let proof = match InclusionProof::parse(bytes) {
        Ok(proof) => proof,
        Err(error) => return Ok(Err(format!("{}: {error}", args.file.display()))),
    };
    let policy = trust_policy(args, &proof.note)?;
    let given = match &args.event {
        Some(path) => {
            let mut event = read_limited(path, "event file")?;
            if event.last() == Some(&b'\n') {
                event.pop();
            }
            Some(event)
        }
        None => None,
    };
    let event = match (given, &proof.extra) {
        (Some(given), Some(carried)) if given != *carried => {
            return Ok(Err(
                "the event given differs from the event the proof carries".into(),
            ));
        }
        (Some(given), _) => given,
        (None, Some(carried)) => carried.clone(),
        (None, None) => {
            return Err(CliError::usage(
                "the proof carries no event: give the event with --event FILE",
            ));
        }
    };
    Ok(match proof.verify_event(&event, &policy) {
        Ok(verified) => Ok(format!(
            "record {} (leaf index {}) is in the tree of {} records of log {:?} (root {})",
            proof.index + 1,
            proof.index,
            verified.checkpoint.size(),
            verified.checkpoint.origin(),
            verified.checkpoint.root()
        )),
        Err(error) => Err(error.to_string()),
    })
}

fn verify_consistency(
    args: &VerifyProofArgs,
    bytes: &[u8],
) -> Result<Result<String, String>, CliError> {
    let proof = match ConsistencyProof::parse(bytes) {
        Ok(proof) => proof,
        Err(error) => return Ok(Err(format!("{}: {error}", args.file.display()))),
    };
    let policy = trust_policy(args, &proof.note)?;
    let old_root = match (&args.old_checkpoint, proof.old_size) {
        (_, 0) => EMPTY_ROOT,
        (None, _) => {
            return Err(CliError::usage(
                "a consistency proof from a size above 0 needs --old-checkpoint FILE (the note at that size)",
            ));
        }
        (Some(path), old_size) => {
            let text = read_limited(path, "old checkpoint")?;
            let old = match Note::parse(&text)
                .map_err(|error| error.to_string())
                .and_then(|note| policy.verify_note(&note).map_err(|e| e.to_string()))
            {
                Ok(old) => old,
                Err(error) => return Ok(Err(format!("old checkpoint: {error}"))),
            };
            if old.checkpoint.size() != old_size {
                return Ok(Err(format!(
                    "the old checkpoint is at size {}, the proof starts at {old_size}",
                    old.checkpoint.size()
                )));
            }
            old.checkpoint.root()
        }
    };
    Ok(match proof.verify(&old_root, &policy) {
        Ok(verified) => Ok(format!(
            "the tree of {} records of log {:?} (root {}) extends the tree of {} records (root {old_root})",
            verified.checkpoint.size(),
            verified.checkpoint.origin(),
            verified.checkpoint.root(),
            proof.old_size
        )),
        Err(error) => Err(error.to_string()),
    })
}
