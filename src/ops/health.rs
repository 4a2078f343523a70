//! `dj_store_health`: whether each configured store can do its job now:
//! its folder or S3 server reachable, its credentials accepted, and a small
//! probe object written, read back and deleted; a file store also says how
//! much room its file system has left.

use super::objects::authorize;
use crate::config::{Config, Protocol, StoreConfig};
use crate::datajoint::hash::{self, Hasher};
use crate::error::{Error, Result};
use crate::stats::context;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;
use std::time::Instant;

/// Stores checked at once: each check may wait for a timeout.
const AT_ONCE: usize = 8;
/// Where probes are written, below a store's location. Names starting with
/// `.` are never objects: listings skip them.
const PROBE_FOLDER: &str = ".dj-health";

/// One JSON item per configured store: `{store, protocol, healthy, reason,
/// free_bytes, seconds}`; needs the purge key.
pub fn check_all(cfg: &Config, key: &[u8]) -> Result<String> {
    authorize(cfg, key, "store health checks")?;
    let results = crate::parallel::map(&cfg.stores, AT_ONCE, |spec| Ok(check(cfg, spec)));
    let items: Vec<Value> = results.into_iter().map(|r| r.unwrap_or_else(|e| json!({"healthy": false, "reason": e.to_string()}))).collect();
    Ok(Value::Array(items).to_string())
}

fn check(cfg: &Config, spec: &StoreConfig) -> Value {
    // Counted under the store checked, as any other call on it.
    let call = context::current().map(|c| context::Call { store: Some(crate::stats::slot_of(&spec.name)), ..c });
    let _call = context::enter(call);
    let started = Instant::now();
    let (protocol, free) = match &spec.protocol {
        Protocol::File => ("file", free_bytes(Path::new(&spec.location))),
        Protocol::S3(_) => ("s3", Ok(None)),
    };
    let free_shown = free.as_ref().ok().copied().flatten();
    let outcome = free.and_then(|free| {
        if free == Some(0) {
            return Err(format!("no free space left in {}", spec.location));
        }
        probe(cfg, &spec.name)
    });
    json!({
        "store": spec.name,
        "protocol": protocol,
        "healthy": outcome.is_ok(),
        "reason": outcome.as_ref().err(),
        "free_bytes": free_shown,
        "seconds": started.elapsed().as_secs_f64(),
    })
}

/// The bytes an unprivileged writer may still use on the file system of `dir`.
fn free_bytes(dir: &Path) -> std::result::Result<Option<u64>, String> {
    let st = rustix::fs::statvfs(dir).map_err(|e| format!("location {}: {}", dir.display(), std::io::Error::from(e)))?;
    if !Path::new(dir).is_dir() {
        return Err(format!("location {} is not a folder", dir.display()));
    }
    Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
}

/// Writes, reads back and deletes a probe object; the step that failed and why.
fn probe(cfg: &Config, store: &str) -> std::result::Result<(), String> {
    let st = super::open(cfg, store).map_err(|e| e.to_string())?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let conn = context::current().and_then(|c| c.connection).unwrap_or(0);
    let key = format!("{PROBE_FOLDER}/probe-{conn}-{nanos}");
    let data = format!("dj_udf health probe {nanos}").into_bytes();
    let step = |what: &str, e: Error| format!("{what} a probe object failed: {e}");
    // A lookup first: on S3 a miss also checks that the bucket exists (some
    // servers store a PUT into a missing bucket, creating it).
    st.objects.size(&key).map_err(|e| step("looking up", e))?;
    st.objects.put(&key, &mut data.as_slice(), Hasher::default(), Some(hash::digest(b"", &data)), &[]).map_err(|e| step("writing", e))?;
    let read = (|| {
        let mut back = Vec::new();
        st.objects.open(&key)?.read_to_end(&mut back).map_err(|e| Error::io("read", st.objects.describe(&key), e))?;
        if back != data {
            return Err(Error::Stopped { why: "the probe object read back differs from what was written".into() });
        }
        Ok(())
    })();
    let deleted = st.objects.delete(&key);
    read.map_err(|e| step("reading back", e))?;
    deleted.map_err(|e| step("deleting", e))?;
    Ok(())
}
