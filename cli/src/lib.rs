//! The `quire` command's library half: the command line (`args`), the API client
//! (`client`) and `quire dev` (`dev`), so integration tests can start `quire dev` in-process.

pub mod args;
pub mod client;
pub mod dev;
