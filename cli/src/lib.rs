//! The `quire` command's library half, so integration tests can start `quire dev` in-process.

pub mod dev;
