//! audit-postgres
#![deny(missing_docs)]
#![forbid(unsafe_code)]
