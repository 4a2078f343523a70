//! `dj_sweep_leftovers`: removes what interrupted writes left in one store
//! (its temporary files, its unfinished S3 uploads, and temporary files in
//! its stage), never a write in progress. Needs the purge key.

use super::{objects::authorize, open};
use crate::config::{Config, Protocol};
use crate::error::Result;
use crate::store::leftovers::sweep_folder;

/// Returns JSON: `{"temporary_files": n, "uploads_aborted": m}`.
pub fn sweep(cfg: &Config, store: &str, min_age: u64, key: &[u8]) -> Result<String> {
    authorize(cfg, key, "sweeping leftovers")?;
    let st = open(cfg, store)?;
    let in_store = st.objects.remove_leftovers(min_age)?;
    let (mut files, uploads) = match st.spec.protocol {
        Protocol::File => (in_store, 0),
        Protocol::S3(_) => (0, in_store),
    };
    if let Some(stage) = st.spec.stage.as_deref() {
        // A stage inside a file store's location (or the location itself) was just swept.
        let swept = st.spec.protocol == Protocol::File && stage.starts_with(&st.spec.location);
        if !swept {
            files += sweep_folder(stage, min_age)?;
        }
    }
    Ok(serde_json::json!({ "temporary_files": files, "uploads_aborted": uploads }).to_string())
}
