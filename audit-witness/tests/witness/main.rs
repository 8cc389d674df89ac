//! audit-witness against itself and against implementations that are not
//! ours, over real HTTP on loopback. One test binary, so that the crate
//! links once.

mod common;
mod interop;
mod postgres;
mod racing;
mod set;
mod split_view;
mod statuses;
