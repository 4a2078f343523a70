//! Object existence and deletion, the latter gated by the config's purge key.

use super::open;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Object;

/// The stored size of an object, `None` when it is absent.
pub fn object_size(cfg: &Config, store: &str, obj: &Object) -> Result<Option<u64>> {
    let st = open(cfg, store)?;
    st.io.size(&st.key(obj))
}

/// Compares without an early exit, so timing tells nothing about the key.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Deletes an object. Any SQL user can call a UDF, so deleting needs the
/// secret `purge_key` of the config file; the cleanup routine reads it from a
/// table only trusted accounts may read.
pub fn delete(cfg: &Config, store: &str, obj: &Object, key: &[u8]) -> Result<&'static str> {
    let Some(secret) = &cfg.purge_key else {
        return Err(Error::Denied {
            msg: format!("object deletion is disabled: {} has no purge_key", cfg.file.display()),
        });
    };
    if !same_secret(secret.as_bytes(), key) {
        return Err(Error::Denied { msg: "wrong purge key: deletion refused".into() });
    }
    let st = open(cfg, store)?;
    Ok(if st.io.delete(&st.key(obj))? { "deleted" } else { "missing" })
}
