//! Audit into PostgreSQL: many writers on many machines can share one
//! chain, each appending under the database's locks.
//!
//! ```text
//! DATABASE_URL=postgres://audit@db.example.com/audit?sslmode=verify-full \
//!     cargo run --example postgres_store --features postgres
//! ```
//!
//! The password comes from `PGPASSWORD` or the password file
//! (`~/.pgpass`), never from the URL in logs. The example writes a few
//! refusals, verifies the chain with the public key alone and prints the
//! inclusion proof of the first one (which `deferred-audit verify-proof`
//! checks offline). The facade's test `tests/example_stores.rs` runs the
//! same code against a real PostgreSQL server.

#[path = "support/audited_store.rs"]
mod audited_store;

use deferred_audit::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url: StoreUrl = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL to postgres://USER@HOST/DATABASE")?
        .parse()?;
    let signer = audited_store::signer();
    let factory = sink_factory(&url, ChainSinkOptions::signed(signer.clone()))?;
    let appended = audited_store::audit_into(factory, 100).await?;
    let source = open_source(&url).await?;
    let outcome = audited_store::verify_and_prove(source.as_ref(), &signer, appended).await?;
    println!(
        "{url}: {} events appended, chain verified: {}",
        outcome.appended,
        outcome.report.is_ok()
    );
    print!("{}", outcome.proof);
    if !outcome.report.is_ok() {
        return Err("the chain does not verify".into());
    }
    Ok(())
}
