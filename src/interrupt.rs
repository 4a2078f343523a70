//! Whether the statement a call serves was killed (`KILL QUERY` or `KILL`),
//! asked by every long loop between chunks so that it stops soon and
//! cleanly: temporary files are removed and unfinished S3 uploads aborted
//! on the way out, as after any other failure.

use crate::error::{Error, Result};
use std::fmt;
use std::io;

/// What a loop reading or writing through `std::io` fails with once the
/// statement is killed; [`Error::io`] turns it into [`Error::Killed`].
#[derive(Debug)]
pub struct Killed;

impl fmt::Display for Killed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the statement was killed")
    }
}

impl std::error::Error for Killed {}

/// `Err` once the statement is killed, for loops working with `std::io`.
/// (Not `ErrorKind::Interrupted`: read loops retry that.)
pub fn check_io() -> io::Result<()> {
    if crate::ffi::server::killed() {
        return Err(io::Error::other(Killed));
    }
    Ok(())
}

/// `Err` once the statement is killed, naming what was under way.
pub fn check(during: impl FnOnce() -> String) -> Result<()> {
    if crate::ffi::server::killed() {
        return Err(Error::Killed { during: during() });
    }
    Ok(())
}

/// Whether an I/O error is a loop's answer to a killed statement.
pub fn is_killed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Killed>())
}
