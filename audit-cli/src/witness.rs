//! `deferred-audit witness serve`: a C2SP tlog-witness server for the tree
//! checkpoints of the logs it is given; and the `--witness` options shared
//! by the commands that write (`demo`, `load`) and those that check
//! (`verify`, `verify-proof`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use audit_core::chain::note::{KeyType, Vkey};
use audit_core::chain_writer::Cosigner;
use audit_core::store::StoreUrl;
use deferred_audit::witness::{
    WitnessClient, WitnessConfig, WitnessServer, Witnesses, open_state, witness_cosigner,
};

use crate::error::{CliError, OK};

/// Arguments of `witness serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on, e.g. 127.0.0.1:7380 (port 0 picks one; the address is printed).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The witness's Ed25519 secret key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// The witness's key name, e.g. witness.example.com/w1.
    #[arg(long)]
    name: String,
    /// Where the witness keeps the latest head of each log: sqlite://PATH, postgres://… or memory://NAME.
    #[arg(long, value_name = "URL")]
    state: String,
    /// A log's verifier key (`origin+hash+base64`, as `verify-proof --vkey` takes); repeatable.
    #[arg(long = "log", value_name = "VKEY", required = true)]
    logs: Vec<String>,
    /// Serve under this path prefix: POST <prefix>/add-checkpoint.
    #[arg(long, default_value = "")]
    prefix: String,
}

/// Parses `--origin`: a valid note key name (non-empty, no space, no `+`),
/// refused at the command line rather than at the first checkpoint.
pub fn parse_origin(text: &str) -> Result<String, String> {
    audit_core::chain::note::check_key_name(text)
        .map(|()| text.to_owned())
        .map_err(|error| error.to_string())
}

/// Options naming witnesses, for the commands that write.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WitnessArgs {
    /// A witness asked to cosign every tree checkpoint: `URL,VKEY` (its cosigner vkey); repeatable.
    #[arg(long = "witness", value_name = "URL,VKEY")]
    witnesses: Vec<String>,
    /// How many witness cosignatures each checkpoint should gather (default: all of them).
    #[arg(long, value_name = "K", requires = "witnesses")]
    witness_quorum: Option<usize>,
}

impl WitnessArgs {
    /// The cosigner these options describe, with proofs from `store`.
    pub async fn cosigner(&self, store: &StoreUrl) -> Result<Option<Arc<dyn Cosigner>>, CliError> {
        if self.witnesses.is_empty() {
            return Ok(None);
        }
        let clients = self
            .witnesses
            .iter()
            .map(|spec| {
                WitnessClient::parse(spec)
                    .map_err(|error| CliError::usage(format!("--witness {spec}: {error}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = self.witness_quorum.unwrap_or(clients.len());
        let witnesses = Witnesses::new(clients, quorum)
            .map_err(|error| CliError::usage(format!("--witness-quorum: {error}")))?;
        Ok(Some(witness_cosigner(store, witnesses)))
    }
}

/// Options of a witness policy, for the commands that check.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WitnessPolicyArgs {
    /// A witness's cosigner vkey (`name+hash+base64`, key type 0x04) trusted to cosign; repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many valid cosignatures of those witnesses the newest tree checkpoint must carry (default: all of them).
    #[arg(long, value_name = "K", requires = "witnesses")]
    witness_quorum: Option<usize>,
}

impl WitnessPolicyArgs {
    /// The witness vkeys and the quorum (0 without witnesses).
    pub fn policy(&self) -> Result<(Vec<Vkey>, usize), CliError> {
        let vkeys = self
            .witnesses
            .iter()
            .map(|text| {
                let vkey = Vkey::parse(text)
                    .map_err(|error| CliError::usage(format!("--witness {text}: {error}")))?;
                if vkey.key_type() != KeyType::Cosignature {
                    return Err(CliError::usage(format!(
                        "--witness {text}: not a witness cosigner key (type 0x04)"
                    )));
                }
                Ok(vkey)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = self.witness_quorum.unwrap_or(vkeys.len());
        if quorum > vkeys.len() {
            return Err(CliError::usage(format!(
                "--witness-quorum {quorum} is more than the {} witnesses given",
                vkeys.len()
            )));
        }
        Ok((vkeys, quorum))
    }
}

/// Runs `vkey`: prints the log's verifier key.
pub fn vkey(
    pubkey: &std::path::Path,
    origin: Option<&str>,
    chain: &str,
) -> Result<ExitCode, CliError> {
    let key = audit_core::keys::PublicKey::load(pubkey)?;
    let chain = audit_core::chain::ChainId::new(chain)
        .map_err(|error| CliError::usage(format!("--chain: {error}")))?;
    let origin = match origin {
        Some(origin) => origin.to_owned(),
        None => audit_core::chain::tree_checkpoint::default_origin(&key.key_id(), &chain),
    };
    let vkey = Vkey::ed25519(&origin, key.verifying_key())
        .map_err(|error| CliError::usage(format!("--origin {origin:?}: {error}")))?;
    crate::verify::print_out(&format!("{vkey}\n"))?;
    Ok(OK)
}

/// Runs `witness serve` until interrupted (SIGINT or SIGTERM).
pub fn serve(args: &ServeArgs) -> Result<ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::usage(format!("starting the async runtime: {error}")))?;
    runtime.block_on(async {
        let key = audit_core::keys::AuditSigner::load(&args.key)?;
        let logs = args
            .logs
            .iter()
            .map(|text| {
                Vkey::parse(text).map_err(|error| CliError::usage(format!("--log {text}: {error}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let state = open_state(&args.state)
            .await
            .map_err(|error| CliError::usage(format!("--state {}: {error}", args.state)))?;
        let config = WitnessConfig::new(&args.name, key, logs, state)
            .map_err(|error| CliError::usage(error.to_string()))?
            .with_prefix(&args.prefix);
        let handle = WitnessServer::bind(config, args.listen)
            .await
            .map_err(|error| CliError::usage(format!("--listen {}: {error}", args.listen)))?;
        crate::verify::print_out(&format!(
            "vkey {}\nlistening on {}\n",
            handle.vkey(),
            handle.url()
        ))?;
        wait_for_signal().await?;
        handle
            .shutdown(Duration::from_secs(10))
            .await
            .map_err(|error| CliError::usage(error.to_string()))
    })?;
    Ok(OK)
}

async fn wait_for_signal() -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|error| CliError::usage(format!("listening for SIGTERM: {error}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}
