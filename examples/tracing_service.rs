//! A service that audits through `tracing`: its refusals are ordinary
//! `tracing::info!(target: "audit", actor = …, event_type = …, …)` events,
//! which the `AuditLayer` turns into signed records of a SQLite chain; at
//! exit the service shuts the pipeline down and verifies the chain with
//! the public key alone. The service itself is in
//! `examples/support/tracing_service.rs`, which the facade's test
//! `tests/tracing_service.rs` runs too.
//!
//! Run it with `cargo run --example tracing_service`.

#[path = "support/tracing_service.rs"]
mod service;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let outcome = service::run(dir.path()).await?;
    println!(
        "served {}, refused {}; the layer submitted {} audit events and refused {}; {} appended",
        outcome.served,
        outcome.refused,
        outcome.counters.submitted(),
        outcome.counters.refused(),
        outcome.appended
    );
    println!(
        "chain verified: {} ({} records, {} failures)",
        outcome.verified.is_ok(),
        outcome.verified.records,
        outcome.verified.failures.len()
    );
    if !outcome.verified.is_ok() {
        return Err("the chain does not verify".into());
    }
    Ok(())
}
