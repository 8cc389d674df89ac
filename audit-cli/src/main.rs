//! `deferred-audit`: generate keys, run the demo, load a store (durably
//! through a journal), verify any chain, list and replay dead letters,
//! export a chain.
//!
//! Stores are named by URL (`sqlite://PATH`, `postgres://…`,
//! `s3://BUCKET/PREFIX`, `file:///DIR`; see [`store_url::URLS_HELP`]). Exit codes: 0 when
//! every check holds, 1 when a verification fails, 2 on usage or I/O errors.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bench;
mod demo;
mod dlq;
mod error;
mod export;
mod keygen;
mod load;
mod progress;
mod proofs;
mod read;
mod sinks;
mod store_url;
mod verify;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;
use crate::store_url::StoreUrl;

/// Durable, tamper-evident audit logging: keys, demo, verification, dead letters.
#[derive(Debug, Parser)]
#[command(name = "deferred-audit", version, about, after_help = store_url::URLS_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an Ed25519 signing key: DIR/audit-key.pem (0600) and DIR/audit-key.pub.pem.
    Keygen {
        /// The folder to write the key files into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Measure the pipeline against the machine's limits and the one-event-per-transaction baseline.
    Bench(bench::BenchArgs),
    /// Run the main job: producers simulating a governance engine submit refusals through the pipeline into a chain, then verify it.
    Demo(demo::DemoArgs),
    /// Submit N events (durably with --journal) and record the acknowledged ids; replays the journal first.
    Load(load::LoadArgs),
    /// Verify a chain: exit 0 when every check holds, 1 when one fails, 2 on usage or I/O errors.
    Verify {
        /// The store: sqlite://, postgres://, s3://, file:// or memory:// (see below).
        url: StoreUrl,
        /// A public key (SPKI PEM) trusted for signatures; repeat for rotated keys. With a key, every record must be signed (see --allow-unsigned).
        #[arg(long, value_name = "PEM")]
        pubkey: Vec<PathBuf>,
        /// Also check the checkpoints kept in this store: an archive they were published to (s3://, file://), or another database; repeatable. Without one, truncation of the tail is not detectable.
        #[arg(long, value_name = "URL")]
        checkpoints: Vec<StoreUrl>,
        /// Fail on any unsigned record, even without --pubkey.
        #[arg(long)]
        require_signed: bool,
        /// With --pubkey, accept unsigned records anyway (the report says so).
        #[arg(long, conflicts_with = "require_signed")]
        allow_unsigned: bool,
        /// Verify from this seq on, trusting the record before it.
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Only this chain; repeatable (default: every chain of the store).
        #[arg(long, value_name = "CHAIN")]
        chain: Vec<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// The witness policy the newest tree checkpoint must meet.
        #[command(flatten)]
        witness: witness::WitnessPolicyArgs,
        /// A tree checkpoint note kept outside the store (e.g. from a proof handed out); repeatable: beyond the head it is truncation, with another root a rewrite.
        #[arg(long, value_name = "FILE")]
        tree_checkpoint: Vec<PathBuf>,
    },
    /// Print a log's C2SP verifier key (vkey) for its public key and origin, for witnesses (`witness serve --log`) and `verify-proof --vkey`.
    Vkey {
        /// The log's public key (SPKI PEM).
        #[arg(long, value_name = "PEM")]
        pubkey: PathBuf,
        /// The origin of its tree checkpoints (default deferred-audit/<key_id>/<chain>).
        #[arg(long)]
        origin: Option<String>,
        /// The chain, for the default origin.
        #[arg(long, default_value = "default")]
        chain: String,
    },
    /// Run a witness: a C2SP tlog-witness server that cosigns the tree checkpoints of the logs it knows.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Print the newest tree checkpoint of a chain (a C2SP signed note, with any cosignatures).
    Checkpoint(proofs::CheckpointArgs),
    /// Print an inclusion proof (--seq N, a c2sp.org/tlog-proof@v1 file) or a consistency proof (--consistency-from M) against the newest tree checkpoint.
    Prove(proofs::ProveArgs),
    /// Check a proof offline, with no access to the store: exit 0 when it holds, 1 when it does not, 2 on usage or I/O errors.
    VerifyProof(proofs::VerifyProofArgs),
    /// Print the record at a seq (stored content; `verify` checks it).
    Show(read::ShowArgs),
    /// Print the last records of a chain, and with --follow the new ones as they come.
    Tail(read::TailArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout, e.g. `deferred-audit man > deferred-audit.1`.
    Man,
    /// List or replay dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Export a chain into the JSONL layout (FORMAT.md section 7).
    Export {
        /// The store to read (any URL).
        url: StoreUrl,
        /// The store to write, e.g. an archive: file:///DIR or s3://BUCKET/PREFIX. A chain it already holds the start of is continued.
        #[arg(long, value_name = "URL")]
        to: StoreUrl,
        /// Records per write (one segment object in an archive).
        #[arg(long, default_value_t = 10_000)]
        segment_records: u64,
        /// Only this chain; repeatable (default: every chain).
        #[arg(long, value_name = "CHAIN")]
        chain: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Serve POST <prefix>/add-checkpoint; prints the witness's cosigner vkey and address, runs until SIGINT or SIGTERM.
    Serve(witness::ServeArgs),
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the dead letters of a store (or of a fallback file), with their events.
    List {
        /// The store: sqlite://, postgres://, s3://, file:// or memory://.
        #[arg(required_unless_present = "fallback")]
        url: Option<StoreUrl>,
        /// List the pipeline's fallback dead-letter file instead.
        #[arg(long, value_name = "FILE", conflicts_with = "url")]
        fallback: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Append the dead letters to the chain (idempotently) and remove them; with a key, only letters authenticated by a trusted key.
    Replay {
        /// The store: sqlite://, postgres://, s3://, file:// or memory://.
        url: StoreUrl,
        /// Replay this fallback dead-letter file into the store instead of the store's own dead letters.
        #[arg(long, value_name = "FILE")]
        fallback: Option<PathBuf>,
        /// The chain's secret key (PKCS#8 PEM) to sign the replayed records with; needed for a signed chain.
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
        /// Another public key (SPKI PEM) trusted to have authenticated dead letters (e.g. a rotated key); repeatable.
        #[arg(long, value_name = "PEM")]
        pubkey: Vec<PathBuf>,
        /// The chain to replay into.
        #[arg(long, default_value = "default")]
        chain: String,
    },
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Keygen { out } => keygen::run(&out),
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Load(args) => load::run(args),
        Command::Verify {
            url,
            pubkey,
            checkpoints,
            require_signed,
            allow_unsigned,
            from,
            chain,
            json,
            witness,
            tree_checkpoint,
        } => verify::run(&verify::VerifyArgs {
            url,
            pubkeys: pubkey,
            checkpoints,
            require_signed,
            allow_unsigned,
            from,
            chains: chain,
            json,
            witness,
            tree_checkpoints: tree_checkpoint,
        }),
        Command::Witness {
            command: WitnessCommand::Serve(args),
        } => witness::serve(&args),
        Command::Vkey {
            pubkey,
            origin,
            chain,
        } => witness::vkey(&pubkey, origin.as_deref(), &chain),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "deferred-audit", &mut script);
            verify::print_out(&String::from_utf8_lossy(&script))?;
            Ok(error::OK)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut page)
                .map_err(|error| CliError::usage(format!("rendering the manual page: {error}")))?;
            verify::print_out(&String::from_utf8_lossy(&page))?;
            Ok(error::OK)
        }
        Command::Checkpoint(args) => proofs::checkpoint(&args),
        Command::Prove(args) => proofs::prove(&args),
        Command::VerifyProof(args) => proofs::verify_proof(&args),
        Command::Show(args) => read::show(&args),
        Command::Tail(args) => read::tail(&args),
        Command::Dlq {
            command:
                DlqCommand::List {
                    url,
                    fallback,
                    json,
                },
        } => {
            let from = match (url, fallback) {
                (_, Some(path)) => dlq::Letters::File(path),
                (Some(url), None) => dlq::Letters::Store(url),
                (None, None) => return Err(CliError::usage("give a store URL or --fallback FILE")),
            };
            dlq::list(&from, json)
        }
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    url,
                    fallback,
                    key,
                    pubkey,
                    chain,
                },
        } => dlq::replay(&dlq::ReplayArgs {
            url,
            fallback,
            key,
            pubkeys: pubkey,
            chain,
        }),
        Command::Export {
            url,
            to,
            segment_records,
            chain,
        } => export::run(&url, &to, segment_records, &chain),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEFERRED_AUDIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            error::usage_error()
        }
    }
}
