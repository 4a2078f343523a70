//! `dj_checksum` / `dj_file_checksum`: DataJoint MD5s of bytes or server files.

use super::readable_roots;
use crate::config::Config;
use crate::confine;
use crate::datajoint::hash::{Hash, Hasher};
use crate::error::{Error, Result};
use crate::store;

/// MD5(init ‖ contents of the file at `path`), streamed; the path must lie in
/// a configured folder.
pub fn file(cfg: &Config, path: &str, init: &[u8]) -> Result<Hash> {
    let c = confine::resolve(path, &readable_roots(cfg))?;
    let mut f = c.open_read()?;
    store::hash_all(&mut f, Hasher::with_init(init)).map(|(h, _)| h).map_err(|e| Error::io("read", c.display(), e))
}
