//! `deferred-audit demo`: the main job (filled in with the pipeline).

use std::process::ExitCode;

use crate::error::CliError;

/// Arguments of the demo.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(_args: DemoArgs) -> Result<ExitCode, CliError> {
    Err(CliError::usage("demo: not available yet"))
}
