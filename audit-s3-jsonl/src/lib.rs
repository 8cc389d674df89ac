//! audit-s3-jsonl
#![deny(missing_docs)]
#![forbid(unsafe_code)]
