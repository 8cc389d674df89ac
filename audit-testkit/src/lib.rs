//! audit-testkit
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod object_stores;
pub mod servers;
