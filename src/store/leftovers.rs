//! Temporary files that interrupted writes left in a local folder (a
//! server killed during a put or a download): found with a bounded walk and
//! removed once no writer holds them and they are older than a grace period.

use crate::confine::{is_temp_name, Dir};
use crate::error::{Error, Result};
use crate::tree;
use std::ops::ControlFlow;
use std::path::Path;

/// Removes this library's abandoned temporary files below `root`; returns how many.
pub fn sweep_folder(root: &Path, min_age: u64) -> Result<u64> {
    let dir = match Dir::open_root(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("open", root.display().to_string(), e)),
    };
    let now = super::now_secs();
    let mut removed = 0;
    tree::walk(dir, &root.display().to_string(), &mut |_, _| true, &mut |f| {
        let name = &f.entry.name;
        // The age read while listing only saves opening young files; it is checked again under the lock.
        if is_temp_name(name)
            && now - f.entry.mtime >= min_age as i64
            && f.dir.remove_abandoned(name, min_age).map_err(|e| Error::io("remove", f.dir.display(name), e))?
        {
            removed += 1;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(removed)
}
