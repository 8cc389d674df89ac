//! An axum service that audits its handlers: every refused request and
//! every privileged change becomes a signed record, submitted without
//! waiting on the audit store; when the pipeline can no longer take
//! events (its store failed past every retry), privileged handlers fail
//! closed with 503 instead of acting unaudited.
//!
//! Run it with `cargo run --example axum_service`: it serves on a local
//! port, sends itself a few requests, shuts down, and verifies the chain.
//! The facade's test `tests/example_axum.rs` runs the same code.

#[path = "support/axum_service.rs"]
mod axum_service;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let outcome = axum_service::run(dir.path()).await?;
    for (request, status) in &outcome.responses {
        println!("{status} {request}");
    }
    println!(
        "{} audit records, chain verified: {}",
        outcome.report.records,
        outcome.report.is_ok()
    );
    if !outcome.report.is_ok() {
        return Err("the chain does not verify".into());
    }
    Ok(())
}
