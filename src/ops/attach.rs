//! `attach@store`: files kept with their names, under MD5(name ‖ 0 ‖ bytes).

use super::{download_verified, open, put_known, read_verified, Expected, Naming};
use crate::config::Config;
use crate::confine::{self, Dir};
use crate::datajoint::hash::{self, Hash, Hasher};
use crate::datajoint::layout::{self, Object};
use crate::error::{Error, Result};
use crate::store;

/// How many `_NNNN` aliases `export` tries before giving up.
const MAX_ALIASES: u32 = 0x1_0000;

pub fn put(cfg: &Config, store: &str, schema: &str, name: &str, data: &[u8]) -> Result<Hash> {
    layout::check_schema_name(schema)?;
    let st = open(cfg, store)?;
    st.check_attachment_name(name)?;
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
    st.check_attachment_name(&name)?;
    let mut src = c.open_read()?;
    let folds = st.spec.subfolding.clone();
    let key_of = |h: &Hash| Object::Attach { schema: schema.into(), hash: *h, name: name.clone() }.key(&folds);
    let (h, n, _) = st.objects.put_by_hash(schema, &mut src, Hasher::for_attachment(&name), &key_of)?;
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
    // `name`, then `stem_0000.ext`, `stem_0001.ext`, …
    let slots = || std::iter::once(None).chain((0..MAX_ALIASES).map(Some));

    // First pass: an existing identical copy is the answer.
    let mut free = None;
    for n in slots() {
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
    let no_alias = || Error::Denied { msg: format!("no free alias for '{name}' in {}", dir.path) };
    let Some(slot) = free else { return Err(no_alias()) };

    // Download and verify, then link it under the first name still free.
    let st = open(cfg, store)?;
    let obj = Object::Attach { schema: schema.into(), hash: *h, name: name.into() };
    let key = st.key(&obj);
    let expect = Expected { hash: Some(*h), size: None, what: st.what(&obj, &key) };
    let mut names = slots().skip_while(|n| *n != slot).map(candidate);
    match download_verified(&st, &key, Hasher::for_attachment(name), &expect, &dir, Naming::FirstFree(&mut names))? {
        Some(file) => Ok(dir.display(&file)),
        None => Err(no_alias()),
    }
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
