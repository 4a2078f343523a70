//! `attach@store`: files kept with their names, under MD5(name ‖ 0 ‖ bytes).

use super::{download_verified, open, put_known, read_verified, Expected, Naming};
use crate::config::Config;
use crate::confine::{self, Dir};
use crate::datajoint::hash::{self, Hash, Hasher};
use crate::datajoint::layout::{self, Object};
use crate::error::{Error, Result};
use crate::held::Claim;
use crate::store;
use crate::tree;
use std::ops::ControlFlow;
use std::path::Path;

/// How many of DataJoint's `_NNNN` aliases `export` tries in order, after
/// the name itself. Only these (and the name) are hashed when their size is
/// the object's: a folder full of planted look-alikes costs little.
const ORDERED_ALIASES: u32 = 16;
/// Then this many random ones of DataJoint's 65 536, and then as many names
/// with a longer random number, so that planted files cannot block a name.
const RANDOM_ALIASES: usize = 16;

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

pub fn get(cfg: &Config, store: &str, schema: &str, h: &Hash, name: &str, claim: &Claim) -> Result<Vec<u8>> {
    layout::check_schema_name(schema)?;
    layout::check_attachment_name(name)?;
    let st = open(cfg, store)?;
    let obj = Object::Attach { schema: schema.into(), hash: *h, name: name.into() };
    read_verified(cfg, &st, &obj, Hasher::for_attachment(name), h, claim)
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

/// A number no other call is likely to pick (std's per-process random keys).
fn random() -> u32 {
    use std::hash::{BuildHasher, Hasher as _};
    std::collections::hash_map::RandomState::new().build_hasher().finish() as u32
}

/// The names an export may take, in order: `name`, its first
/// [`ORDERED_ALIASES`] aliases, random ones, then random longer ones.
fn slots(name: &str) -> Vec<String> {
    let ordered = (0..ORDERED_ALIASES).map(|n| alias(name, n));
    let scattered = (0..RANDOM_ALIASES).map(|_| alias(name, ORDERED_ALIASES + random() % (0x1_0000 - ORDERED_ALIASES)));
    let longer = (0..RANDOM_ALIASES).map(|_| alias(name, 0x1000_0000 | (random() & 0x0fff_ffff)));
    std::iter::once(name.to_string()).chain(ordered).chain(scattered).chain(longer).collect()
}

/// The bytes below an export folder, counted until they pass `stop`.
fn usage(root: &Path, stop: u64) -> Result<u64> {
    let dir = Dir::open_root(root).map_err(|e| Error::io("open export folder", root.display().to_string(), e))?;
    let mut used = 0u64;
    tree::walk(dir, &root.display().to_string(), &mut |_, _| true, &mut |f| {
        used = used.saturating_add(f.entry.size);
        Ok(if used > stop { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    })?;
    Ok(used)
}

/// Writes a verified copy of an attachment into a server folder, following
/// DataJoint's download rule: reuse `dir/name` or an alias when its contents
/// match, else take the first free alias; an existing file is never replaced.
/// The search is bounded (see [`slots`]), and the export folder's
/// `export_quota_bytes` holds for the copy.
pub fn export(cfg: &Config, store: &str, schema: &str, h: &Hash, name: &str, server_dir: &str) -> Result<String> {
    layout::check_schema_name(schema)?;
    layout::check_attachment_name(name)?;
    let roots: Vec<&Path> = cfg.export_dirs.iter().map(|p| p.as_path()).collect();
    let target = confine::resolve(&format!("{}/{}", server_dir.trim_end_matches('/'), name), &roots)?;
    let st = open(cfg, store)?;
    let obj = Object::Attach { schema: schema.into(), hash: *h, name: name.into() };
    let key = st.key(&obj);
    let size = st.objects.size(&key)?.ok_or_else(|| Error::Missing { what: st.what(&obj, &key) })?;
    let (dir, _) = target.parent(true)?;
    let slots = slots(name);

    // First pass: an existing identical copy is the answer; other files,
    // links and anything else in the way only take their slot.
    let mut free = None;
    for (i, file) in slots.iter().enumerate() {
        crate::interrupt::check(|| format!("the search for a free name in {}", dir.path))?;
        match dir.size_of(file) {
            Ok(None) => {
                free = Some(i);
                break;
            }
            Ok(Some(n)) if n == size && i <= ORDERED_ALIASES as usize && matches(&dir, file, name, h)? => return Ok(dir.display(file)),
            Ok(Some(_)) | Err(_) => continue,
        }
    }
    let tried = slots.len();
    let no_alias = || Error::Denied { msg: format!("no free name for '{name}' in {} ({tried} tried)", dir.path) };
    let Some(first_free) = free else { return Err(no_alias()) };

    if let Some(quota) = cfg.export_quota_bytes {
        let used = usage(&target.root, quota)?;
        if used.saturating_add(size) > quota {
            return Err(Error::QuotaExceeded { folder: target.root.display().to_string(), used, wanted: size, quota });
        }
    }

    // Download and verify, then link it under the first name still free.
    let expect = Expected { hash: Some(*h), size: Some(size), what: st.what(&obj, &key) };
    let mut names = slots.into_iter().skip(first_free);
    match download_verified(&st, &key, Hasher::for_attachment(name), &expect, &dir, Naming::FirstFree(&mut names))? {
        Some(file) => Ok(dir.display(&file)),
        None => Err(no_alias()),
    }
}

#[cfg(test)]
mod tests {
    use super::{alias, slots};

    #[test]
    fn alias_follows_pathlib() {
        assert_eq!(alias("scan.png", 0), "scan_0000.png");
        assert_eq!(alias("data.tar.gz", 10), "data.tar_000a.gz");
        assert_eq!(alias(".hidden", 1), ".hidden_0001");
        assert_eq!(alias("noext", 0x1f), "noext_001f");
        assert_eq!(alias("trailing.", 2), "trailing._0002");
        assert_eq!(alias("a b.c d", 3), "a b_0003.c d");
    }

    #[test]
    fn slots_are_bounded_and_mostly_datajoint_aliases() {
        let s = slots("scan.png");
        assert_eq!(s.len(), 1 + 16 + 16 + 16);
        assert_eq!(&s[..3], ["scan.png", "scan_0000.png", "scan_0001.png"]);
        assert_eq!(s[16], "scan_000f.png");
        assert!(s[17..33].iter().all(|n| n.len() == "scan_0000.png".len() && n.as_str() >= "scan_0010.png"), "{s:?}");
        assert!(s[33..].iter().all(|n| n.len() == "scan_00000000.png".len()), "{s:?}");
    }
}
