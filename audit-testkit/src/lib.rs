//! audit-testkit
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod servers;
