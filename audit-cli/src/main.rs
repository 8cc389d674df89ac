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
mod sinks;
mod store_url;
mod verify;

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
        /// The store: sqlite://, postgres://, s3:// or file:// (see below).
        url: StoreUrl,
        /// A public key (SPKI PEM) trusted for signatures; repeat for rotated keys.
        #[arg(long, value_name = "PEM")]
        pubkey: Vec<PathBuf>,
        /// Also check the checkpoints kept in this store: an archive they were published to (s3://, file://), or another database.
        #[arg(long, value_name = "URL")]
        checkpoints: Option<StoreUrl>,
        /// Fail on any unsigned record.
        #[arg(long)]
        require_signed: bool,
        /// Verify from this seq on, trusting the record before it.
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List or replay dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Export a chain into the JSONL layout (FORMAT.md section 7).
    Export {
        /// The store to read: sqlite://PATH or postgres://….
        url: StoreUrl,
        /// The archive to write: file:///DIR or s3://BUCKET/PREFIX.
        #[arg(long, value_name = "URL")]
        to: StoreUrl,
        /// Records per segment object.
        #[arg(long, default_value_t = 10_000)]
        segment_records: u64,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the dead letters of a store.
    List {
        /// The store: sqlite://, postgres://, s3:// or file://.
        url: StoreUrl,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Append the dead letters to the chain (idempotently) and remove them.
    Replay {
        /// The store: sqlite://PATH or postgres://….
        url: StoreUrl,
        /// The secret key (PKCS#8 PEM) to sign the replayed records with.
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
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
            from,
            json,
        } => verify::run(&verify::VerifyArgs {
            url,
            pubkeys: pubkey,
            checkpoints,
            require_signed,
            from,
            json,
        }),
        Command::Dlq {
            command: DlqCommand::List { url, json },
        } => dlq::list(&url, json),
        Command::Dlq {
            command: DlqCommand::Replay { url, key, chain },
        } => dlq::replay(&url, key.as_deref(), &chain),
        Command::Export {
            url,
            to,
            segment_records,
        } => export::run(&url, &to, segment_records),
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
