//! `dj_verify`: checks one tracking row against its stored object.

use super::open;
use crate::config::Config;
use crate::datajoint::hash::{self, Hasher};
use crate::datajoint::layout::{Object, TrackingRow};
use crate::error::{Error, Result};
use crate::stats::counters::Failure;
use crate::store;

/// Reads the object once and returns `ok`, `missing`, `size mismatch`,
/// `checksum mismatch`, `ok (size only)` for a filepath row without
/// `contents_hash`, or `bad row: …` when the row contradicts itself. A
/// missing or mismatched object is no error of the call, but counts among
/// its store's errors all the same: it is what an audit looks for.
pub fn verify(cfg: &Config, store: &str, row: &TrackingRow) -> Result<String> {
    let status = check(cfg, store, row)?;
    match status.as_str() {
        "missing" => crate::stats::noted(Failure::Missing),
        "size mismatch" | "checksum mismatch" => crate::stats::noted(Failure::Mismatch),
        _ => {}
    }
    Ok(status)
}

fn check(cfg: &Config, store: &str, row: &TrackingRow) -> Result<String> {
    let st = open(cfg, store)?;
    let obj = row.object()?;
    let (hasher, expect) = match &obj {
        Object::Blob { .. } => (Hasher::default(), Some(row.hash)),
        Object::Attach { name, .. } => (Hasher::for_attachment(name), Some(row.hash)),
        Object::Filepath { relative } => {
            if hash::filepath(relative) != row.hash {
                return Ok("bad row: hash is not the MD5 of filepath".into());
            }
            (Hasher::default(), row.contents_hash)
        }
    };
    let key = st.key(&obj);
    let (mut src, size) = match st.objects.open_sized(&key) {
        Ok(s) => s,
        Err(Error::Missing { .. }) => return Ok("missing".into()),
        Err(e) => return Err(e),
    };
    if size.is_some_and(|s| s != row.size) {
        return Ok("size mismatch".into());
    }
    let Some(expect) = expect else { return Ok("ok (size only)".into()) };
    let (got, n) = store::hash_all(&mut *src, hasher).map_err(|e| Error::io("read", st.objects.describe(&key), e))?;
    Ok(if n != row.size {
        "size mismatch"
    } else if got != expect {
        "checksum mismatch"
    } else {
        "ok"
    }
    .into())
}
