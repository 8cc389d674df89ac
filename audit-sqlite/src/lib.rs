//! audit-sqlite
#![deny(missing_docs)]
#![forbid(unsafe_code)]
