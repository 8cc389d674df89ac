//! facade
#![deny(missing_docs)]
pub use audit_core as core;
