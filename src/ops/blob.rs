//! `blob@store`: serialized DataJoint blobs stored under MD5(bytes).

use super::{open, put_known, read_verified};
use crate::config::Config;
use crate::datajoint::hash::{self, Hash, Hasher};
use crate::datajoint::layout::{self, Object};
use crate::error::{Error, Result};
use crate::held::Claim;

/// The headers `datajoint.blob.unpack` accepts; anything else would be stored
/// fine but could never be fetched by DataJoint, so it is refused up front.
const HEADERS: [&[u8]; 3] = [b"mYm\0", b"dj0\0", b"ZL123\0"];

pub fn check_serialized(data: &[u8]) -> Result<()> {
    if HEADERS.iter().any(|h| data.starts_with(h)) {
        Ok(())
    } else {
        Err(Error::arg(
            "blob",
            "the bytes are not a serialized DataJoint blob (they must start with 'mYm\\0', 'dj0\\0' or 'ZL123\\0'; pack values with datajoint.blob.pack)",
        ))
    }
}

pub fn put(cfg: &Config, store: &str, schema: &str, data: &[u8]) -> Result<Hash> {
    layout::check_schema_name(schema)?;
    check_serialized(data)?;
    let st = open(cfg, store)?;
    let h = hash::digest(b"", data);
    let key = st.key(&Object::Blob { schema: schema.into(), hash: h });
    put_known(&st, &key, data, Hasher::default(), h)?;
    Ok(h)
}

pub fn get(cfg: &Config, store: &str, schema: &str, h: &Hash, claim: &Claim) -> Result<Vec<u8>> {
    layout::check_schema_name(schema)?;
    let st = open(cfg, store)?;
    read_verified(cfg, &st, &Object::Blob { schema: schema.into(), hash: *h }, Hasher::default(), h, claim)
}
