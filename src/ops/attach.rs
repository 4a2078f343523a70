//! `attach@store`: files kept with their names, under MD5(name ‖ 0 ‖ bytes).

use super::{open, put_known, read_verified};
use crate::config::Config;
use crate::confine::{self, Dir};
use crate::error::{Error, Result};
use crate::hash::{self, to_hex, Hash, Hasher};
use crate::layout::{self, Object};
use crate::store::{self, CopyError};

/// How many `_NNNN` aliases `export` tries before giving up.
const MAX_ALIASES: u32 = 0x1_0000;

pub fn put(cfg: &Config, store: &str, schema: &str, name: &str, data: &[u8]) -> Result<Hash> {
    layout::check_schema_name(schema)?;
    layout::check_attachment_name(name)?;
    let st = open(cfg, store)?;
    let h = hash::attachment(name, data);
    let key = st.key(&Object::Attach { schema: schema.into(), hash: h, name: name.into() });
    put_known(&st, &key, data, Hasher::for_attachment(name), h)?;
    Ok(h)
}

/// Attaches a server file under its base name, hashing while it is copied.
pub fn put_file(cfg: &Config, store: &str, schema: &str, path: &str) -> Result<(Hash, u64)> {
    layout::check_schema_name(schema)?;
    let c = confine::resolve(path, &super::readable_roots(cfg))?;
    let name = file_name(path)?;
    let st = open(cfg, store)?;
    let (dir, file_name) = c.parent(false)?;
    let mut src = dir.open_read(file_name).map_err(|e| Error::io("open", c.display(), e))?;
    let folds = st.cfg.subfolding.clone();
    let key_of = |h: &Hash| Object::Attach { schema: schema.into(), hash: *h, name: name.clone() }.key(&folds);
    let (h, n, _) = st.io.put_by_hash(schema, &mut src, Hasher::for_attachment(&name), &key_of)?;
    Ok((h, n))
}

/// The attachment name a server file is attached under: the last
/// component of its path, as [`confine::resolve`] splits it (so
/// `/import/a.bin/` is `a.bin`).
pub fn file_name(path: &str) -> Result<String> {
    let name = path.split('/').rfind(|c| !c.is_empty()).unwrap_or("");
    layout::check_attachment_name(name)?;
    Ok(name.to_string())
}

pub fn get(cfg: &Config, store: &str, schema: &str, h: &Hash, name: &str) -> Result<Vec<u8>> {
    layout::check_schema_name(schema)?;
    layout::check_attachment_name(name)?;
    let st = open(cfg, store)?;
    let obj = Object::Attach { schema: schema.into(), hash: *h, name: name.into() };
    read_verified(&st, &obj, Hasher::for_attachment(name), h, cfg.max_get_bytes)
}

/// `name` with DataJoint's alias number: `stem_%04x` + last suffix, using
/// Python's `PurePath.stem`/`.suffix` rules (`.hidden` has no suffix).
pub fn alias(name: &str, n: u32) -> String {
    let (stem, suffix) = match name.rfind('.') {
        Some(i) if i > 0 && i < name.len() - 1 => name.split_at(i),
        _ => (name, ""),
    };
    format!("{stem}_{n:04x}{suffix}")
}

fn matches(dir: &Dir, file: &str, name: &str, h: &Hash) -> Result<bool> {
    let mut f = dir.open_read(file).map_err(|e| Error::io("open", dir.display(file), e))?;
    let (got, _) = store::hash_all(&mut f, Hasher::for_attachment(name)).map_err(|e| Error::io("read", dir.display(file), e))?;
    Ok(&got == h)
}

/// Writes a verified copy of an attachment into a server folder, following
/// DataJoint's download rule: reuse `dir/name` or an alias when its contents
/// match, else take the first free alias; an existing file is never replaced.
pub fn export(cfg: &Config, store: &str, schema: &str, h: &Hash, name: &str, server_dir: &str) -> Result<String> {
    layout::check_schema_name(schema)?;
    layout::check_attachment_name(name)?;
    let roots: Vec<&std::path::Path> = cfg.export_dirs.iter().map(|p| p.as_path()).collect();
    let target = confine::resolve(&format!("{}/{}", server_dir.trim_end_matches('/'), name), &roots)?;
    let (dir, _) = target.parent(true)?;
    let candidate = |n: Option<u32>| n.map_or_else(|| name.to_string(), |n| alias(name, n));

    // First pass: an existing identical copy is the answer.
    let mut free = None;
    for n in std::iter::once(None).chain((0..MAX_ALIASES).map(Some)) {
        let file = candidate(n);
        match dir.size_of(&file).map_err(|e| Error::io("stat", dir.display(&file), e))? {
            Some(_) if matches(&dir, &file, name, h)? => return Ok(dir.display(&file)),
            Some(_) => continue,
            None => {
                free = Some(n);
                break;
            }
        }
    }
    let Some(mut slot) = free else {
        return Err(Error::Denied { msg: format!("no free alias for '{name}' in {}", dir.path) });
    };

    // Download to a temporary file, verify, then link it under the free name.
    let st = open(cfg, store)?;
    let obj = Object::Attach { schema: schema.into(), hash: *h, name: name.into() };
    let key = st.key(&obj);
    let mut src = st.io.open(&key)?;
    let (tmp, mut f) = dir.create_temp().map_err(|e| Error::io("create temporary file in", &dir.path, e))?;
    let mut hasher = Hasher::for_attachment(name);
    let copied = store::copy_hashing(&mut *src, &mut f, &mut hasher);
    let result = (|| {
        copied.map_err(|e| match e {
            CopyError::Read(e) => Error::io("read", st.io.describe(&key), e),
            CopyError::Write(e) => Error::io("write", dir.display(&tmp), e),
        })?;
        f.sync_all().map_err(|e| Error::io("fsync", dir.display(&tmp), e))?;
        let got = hasher.finish();
        if &got != h {
            return Err(Error::ChecksumMismatch { what: st.what(&obj, &key), expected: to_hex(h), actual: to_hex(&got) });
        }
        loop {
            let file = candidate(slot);
            if dir.link_new(&tmp, &file).map_err(|e| Error::io("create", dir.display(&file), e))? {
                dir.sync().map_err(|e| Error::io("fsync", &dir.path, e))?;
                return Ok(dir.display(&file));
            }
            // Someone took the name meanwhile: move on to the next alias.
            slot = match slot {
                None => Some(0),
                Some(n) if n + 1 < MAX_ALIASES => Some(n + 1),
                Some(_) => return Err(Error::Denied { msg: format!("no free alias for '{name}' in {}", dir.path) }),
            };
        }
    })();
    let _ = dir.remove(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::alias;

    #[test]
    fn alias_follows_pathlib() {
        assert_eq!(alias("scan.png", 0), "scan_0000.png");
        assert_eq!(alias("data.tar.gz", 10), "data.tar_000a.gz");
        assert_eq!(alias(".hidden", 1), ".hidden_0001");
        assert_eq!(alias("noext", 0x1f), "noext_001f");
        assert_eq!(alias("trailing.", 2), "trailing._0002");
        assert_eq!(alias("a b.c d", 3), "a b_0003.c d");
    }
}
