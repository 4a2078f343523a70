//! DataJoint external storage inside MariaDB and MySQL.
//!
//! The server loads this library with `CREATE FUNCTION … SONAME` and calls the
//! `dj_*` functions exported from [`udf`]. Everything under it is a safe core
//! that the unit tests exercise without a server: [`ffi`] alone handles raw
//! pointers, [`ops`] does the work, [`store`] reaches the objects,
//! [`datajoint`] knows where and under which hash DataJoint keeps them, and
//! [`confine`] keeps every server path inside the configured folders.
//! Unsafe code is denied everywhere but in [`ffi`] (system calls go through
//! `rustix`'s safe wrappers).

#![deny(unsafe_code)]

pub mod config;
pub mod confine;
pub mod datajoint;
pub mod error;
pub mod ffi;
pub mod held;
pub mod interrupt;
pub mod ops;
pub mod parallel;
pub mod stats;
pub mod store;
pub mod text;
pub mod tree;
pub mod udf;
