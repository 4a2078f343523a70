//! `dj_verify`: checks one tracking row against its stored object.

use super::open;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hash::{self, Hash, Hasher};
use crate::layout::{self, Object};
use crate::store;

/// A tracking row as `~external_<store>` holds it.
pub struct Row<'a> {
    pub schema: &'a str,
    pub hash: Hash,
    pub size: u64,
    pub attachment_name: Option<&'a str>,
    pub filepath: Option<&'a str>,
    pub contents_hash: Option<Hash>,
}

impl Row<'_> {
    /// The object the row points at, by DataJoint's rule: a filepath row has
    /// `filepath`, an attachment row has `attachment_name`, else a blob.
    pub fn object(&self) -> Result<Object> {
        Ok(match (self.filepath, self.attachment_name) {
            (Some(rel), _) => {
                layout::check_relative_path(rel)?;
                Object::Filepath { relative: rel.into() }
            }
            (None, Some(name)) => {
                layout::check_schema_name(self.schema)?;
                layout::check_attachment_name(name)?;
                Object::Attach { schema: self.schema.into(), hash: self.hash, name: name.into() }
            }
            (None, None) => {
                layout::check_schema_name(self.schema)?;
                Object::Blob { schema: self.schema.into(), hash: self.hash }
            }
        })
    }
}

/// Reads the object once and returns `ok`, `missing`, `size mismatch`,
/// `checksum mismatch`, `ok (size only)` for a filepath row without
/// `contents_hash`, or `bad row: …` when the row contradicts itself.
pub fn verify(cfg: &Config, store: &str, row: &Row) -> Result<String> {
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
    let Some(size) = st.io.size(&key)? else { return Ok("missing".into()) };
    if size != row.size {
        return Ok("size mismatch".into());
    }
    let Some(expect) = expect else { return Ok("ok (size only)".into()) };
    let mut src = match st.io.open(&key) {
        Ok(s) => s,
        Err(Error::Missing { .. }) => return Ok("missing".into()),
        Err(e) => return Err(e),
    };
    let (got, n) = store::hash_all(&mut *src, hasher).map_err(|e| Error::io("read", st.io.describe(&key), e))?;
    Ok(if n != row.size {
        "size mismatch"
    } else if got != expect {
        "checksum mismatch"
    } else {
        "ok"
    }
    .into())
}
