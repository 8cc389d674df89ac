//! Real servers for tests, on free loopback ports, stopped when dropped.

pub mod s3;
