//! Many objects in one call: audit, export, sync, put, size and delete a
//! list of objects with up to the store's `max_parallel` transfers at once,
//! returning one JSON result per object, in the order given.
//!
//! Each object goes through the very function its single-object SQL
//! function uses, so a batch checks and writes exactly what one-by-one
//! calls would; a failure is that object's result and the others go on.
//! The call returns when every object has finished or failed; its worker
//! threads end with it ([`crate::parallel`]).

use super::{attach, blob, filepath, objects, readable_roots, verify};
use crate::config::Config;
use crate::confine::{self, Dir};
use crate::datajoint::hash::{self, to_hex, Hash};
use crate::datajoint::layout::{Object, TrackingRow};
use crate::error::{Error, Result};
use crate::parallel;
use serde_json::{json, Map, Value};

/// The most objects one call takes: results are held in memory until the
/// call returns, so longer lists go in pages.
pub const MAX_BATCH: usize = 10_000;

/// One tracking row, as a batch names it.
struct Row {
    hash: Hash,
    size: Option<u64>,
    attachment_name: Option<String>,
    filepath: Option<String>,
    contents_hash: Option<Hash>,
}

impl Row {
    fn tracking<'a>(&'a self, schema: &'a str) -> TrackingRow<'a> {
        TrackingRow {
            schema,
            hash: self.hash,
            size: self.size.unwrap_or(0),
            attachment_name: self.attachment_name.as_deref(),
            filepath: self.filepath.as_deref(),
            contents_hash: self.contents_hash,
        }
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::arg("rows", msg)
}

/// A JSON array of at most [`MAX_BATCH`] items.
fn array(json: &str) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(json).map_err(|e| {
        bad(format!("not valid JSON ({e}); a list built with JSON_ARRAYAGG is cut at group_concat_max_len bytes, so raise it for long lists"))
    })?;
    let Value::Array(items) = v else { return Err(bad("must be a JSON array")) };
    if items.len() > MAX_BATCH {
        return Err(bad(format!("holds {} items, more than the {MAX_BATCH} one call takes; send them in pages", items.len())));
    }
    Ok(items)
}

fn field<'v>(item: &'v Value, i: usize, name: &str) -> Result<Option<&'v Value>> {
    let o = item.as_object().ok_or_else(|| bad(format!("item {i} is not a JSON object")))?;
    Ok(o.get(name).filter(|v| !v.is_null()))
}

fn text(item: &Value, i: usize, name: &str) -> Result<Option<String>> {
    match field(item, i, name)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("item {i}: {name} must be a string"))),
    }
}

fn hash_of(item: &Value, i: usize, name: &str) -> Result<Option<Hash>> {
    match text(item, i, name)? {
        None => Ok(None),
        Some(s) => hash::parse(s.as_bytes()).map(Some).ok_or_else(|| bad(format!("item {i}: {name} must be 32 hex digits or a UUID"))),
    }
}

fn size_of(item: &Value, i: usize, name: &str) -> Result<Option<u64>> {
    match field(item, i, name)? {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(format!("item {i}: {name} must be a non-negative integer"))),
    }
}

fn rows(json: &str, need_hash: bool) -> Result<Vec<Row>> {
    array(json)?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let h = hash_of(item, i, "hash")?;
            Ok(Row {
                hash: match h {
                    Some(h) => h,
                    None if !need_hash => [0; 16],
                    None => return Err(bad(format!("item {i}: hash is missing"))),
                },
                size: size_of(item, i, "size")?,
                attachment_name: text(item, i, "attachment_name")?,
                filepath: text(item, i, "filepath")?,
                contents_hash: hash_of(item, i, "contents_hash")?,
            })
        })
        .collect()
}

/// `{…, "error": message}` or the fields of a success.
fn result(mut base: Map<String, Value>, r: Result<Map<String, Value>>) -> Value {
    match r {
        Ok(fields) => base.extend(fields),
        Err(e) => {
            crate::stats::failed(&e);
            base.insert("error".into(), e.to_string().into());
        }
    }
    Value::Object(base)
}

fn key(row: &Row) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("hash".into(), to_hex(&row.hash).into());
    m
}

/// `dj_verify` for every row: `[{"hash", "size", "attachment_name",
/// "filepath", "status"}]` (the row's own fields, so that a query needs no
/// join to show them), where a failure is a status `error: …` as
/// `dj_verify` gives it.
pub fn verify_many(cfg: &Config, store: &str, schema: &str, json: &str) -> Result<String> {
    let rows = rows(json, true)?;
    let workers = cfg.store(store)?.max_parallel();
    let out = parallel::map(&rows, workers, |row| {
        if row.size.is_none() {
            return Err(bad("size is missing"));
        }
        verify::verify(cfg, store, &row.tracking(schema))
    });
    let items: Vec<Value> = rows
        .iter()
        .zip(out)
        .map(|(row, r)| {
            let mut m = key(row);
            m.insert("size".into(), row.size.into());
            m.insert("attachment_name".into(), row.attachment_name.clone().into());
            m.insert("filepath".into(), row.filepath.clone().into());
            m.insert(
                "status".into(),
                r.unwrap_or_else(|e| {
                    crate::stats::failed(&e);
                    e.status()
                })
                .into(),
            );
            Value::Object(m)
        })
        .collect();
    Ok(Value::Array(items).to_string())
}

/// `dj_attach_export` for every `{hash, attachment_name}` into one folder:
/// `[{"hash", "attachment_name", "path" | "error"}]`. The same attachment
/// twice is exported once (both items get its path).
pub fn export_many(cfg: &Config, store: &str, schema: &str, json: &str, server_dir: &str) -> Result<String> {
    let rows = rows(json, true)?;
    let workers = cfg.store(store)?.max_parallel();
    let (unique, which) = dedupe(&rows, |r| (r.hash, r.attachment_name.clone()));
    let out = parallel::map(&unique, workers, |&i| {
        let row = &rows[i];
        let name = row.attachment_name.as_deref().ok_or_else(|| bad("attachment_name is missing"))?;
        attach::export(cfg, store, schema, &row.hash, name, server_dir)
    });
    let items = rows.iter().zip(which).map(|(row, u)| {
        let mut base = key(row);
        base.insert("attachment_name".into(), row.attachment_name.clone().into());
        result(base, shared(&out[u]).map(|p| Map::from_iter([("path".to_string(), Value::from(p))])))
    });
    Ok(Value::Array(items.collect()).to_string())
}

/// `dj_filepath_get` for every `{filepath, contents_hash, size}`:
/// `[{"filepath", "path" | "error"}]`; a filepath named twice is synced once.
pub fn filepath_get_many(cfg: &Config, store: &str, json: &str) -> Result<String> {
    let rows = rows(json, false)?;
    let workers = cfg.store(store)?.max_parallel();
    let (unique, which) = dedupe(&rows, |r| r.filepath.clone());
    let out = parallel::map(&unique, workers, |&i| {
        let row = &rows[i];
        let rel = row.filepath.as_deref().ok_or_else(|| bad("filepath is missing"))?;
        let size = row.size.ok_or_else(|| bad("size is missing"))?;
        filepath::get(cfg, store, rel, row.contents_hash, size, false)
    });
    let items = rows.iter().zip(which).map(|(row, u)| {
        let base = Map::from_iter([("filepath".to_string(), Value::from(row.filepath.clone()))]);
        result(base, shared(&out[u]).map(|p| Map::from_iter([("path".to_string(), Value::from(p))])))
    });
    Ok(Value::Array(items.collect()).to_string())
}

/// `dj_attach_put_file` for every file of a server folder (its regular
/// files, not those of its subfolders), or of a JSON array of server paths:
/// `[{"path", "attachment_name", "hash", "size"} | {"path", "error"}]`,
/// rows ready to track and insert.
pub fn put_files(cfg: &Config, store: &str, schema: &str, paths: &str) -> Result<String> {
    crate::datajoint::layout::check_schema_name(schema)?;
    let paths: Vec<String> = if paths.trim_start().starts_with('[') {
        array(paths)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.as_str().map(str::to_string).ok_or_else(|| bad(format!("item {i} is not a server path (a JSON string)"))))
            .collect::<Result<_>>()?
    } else {
        files_in(cfg, paths)?
    };
    let workers = cfg.store(store)?.max_parallel();
    let out = parallel::map(&paths, workers, |path| {
        let name = attach::file_name(path)?;
        let (h, n) = attach::put_file(cfg, store, schema, path)?;
        Ok(json!({"attachment_name": name, "hash": to_hex(&h), "size": n}))
    });
    let items = paths.iter().zip(out).map(|(path, r)| {
        let base = Map::from_iter([("path".to_string(), Value::from(path.as_str()))]);
        result(base, r.map(|v| v.as_object().cloned().unwrap_or_default()))
    });
    Ok(Value::Array(items.collect()).to_string())
}

/// `dj_attach_put` for many attachments sent in one statement: `items`, a
/// JSON array of `{"attachment_name", "size"}`, says how `data` (their bytes
/// one after the other) divides. Returns
/// `[{"attachment_name", "hash", "size"} | {"attachment_name", "error"}]`,
/// rows ready to track and insert. One call takes the statement and the
/// fsyncs of many objects at once: a client with many small objects pays
/// one round trip and lets the store's `max_parallel` writes share the
/// file system's journal commits, where one call per object waits for each.
pub fn attach_put_many(cfg: &Config, store: &str, schema: &str, items: &str, data: &[u8]) -> Result<String> {
    put_many(cfg, store, schema, items, data, true, &|name, bytes| attach::put(cfg, store, schema, name.unwrap_or(""), bytes))
}

/// `dj_blob_put` for many serialized blobs sent in one statement: `items`,
/// a JSON array of `{"size"}`, divides `data` as for [`attach_put_many`].
/// Returns `[{"hash", "size"} | {"error"}]` in the same order.
pub fn blob_put_many(cfg: &Config, store: &str, schema: &str, items: &str, data: &[u8]) -> Result<String> {
    put_many(cfg, store, schema, items, data, false, &|_, bytes| blob::put(cfg, store, schema, bytes))
}

/// Puts one piece of a batch (with its attachment name, for attachments).
type PutPiece<'a> = dyn Fn(Option<&str>, &[u8]) -> Result<Hash> + Sync + 'a;

/// Splits `data` by the items' sizes (each attachment's with its name when
/// `named`) and puts the pieces up to the store's `max_parallel` at once.
fn put_many(cfg: &Config, store: &str, schema: &str, items: &str, data: &[u8], named: bool, put: &PutPiece) -> Result<String> {
    crate::datajoint::layout::check_schema_name(schema)?;
    let mut parts = Vec::new();
    let mut at = 0u64;
    for (i, item) in array(items)?.iter().enumerate() {
        let name = match (named, text(item, i, "attachment_name")?) {
            (true, None) => return Err(bad(format!("item {i}: attachment_name is missing"))),
            (false, Some(_)) => return Err(bad(format!("item {i}: a blob has no attachment_name (attachments go to dj_attach_put_many)"))),
            (_, name) => name,
        };
        let size = size_of(item, i, "size")?.ok_or_else(|| bad(format!("item {i}: size is missing")))?;
        let end = at.checked_add(size).filter(|&e| e <= data.len() as u64).ok_or_else(|| {
            let which = name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            bad(format!("item {i}{which} would end at byte {}, past the {} bytes of data", at.saturating_add(size), data.len()))
        })?;
        parts.push((name, at as usize..end as usize));
        at = end;
    }
    if at != data.len() as u64 {
        return Err(bad(format!("the sizes of the items add up to {at} bytes, but data has {}", data.len())));
    }
    let workers = cfg.store(store)?.max_parallel();
    let out = parallel::map(&parts, workers, |(name, range)| {
        let h = put(name.as_deref(), &data[range.clone()])?;
        Ok(Map::from_iter([("hash".to_string(), Value::from(to_hex(&h))), ("size".to_string(), Value::from(range.len()))]))
    });
    let items = parts.iter().zip(out).map(|((name, _), r)| {
        let base = name.iter().map(|n| ("attachment_name".to_string(), Value::from(n.as_str()))).collect();
        result(base, r)
    });
    Ok(Value::Array(items.collect()).to_string())
}

/// The regular files directly in a readable server folder, sorted by name.
fn files_in(cfg: &Config, folder: &str) -> Result<Vec<String>> {
    let folder = folder.trim_end_matches('/');
    let roots = readable_roots(cfg);
    // A file in the folder, resolved: tells the root, and whether the folder is one.
    let probe = confine::resolve(&format!("{folder}/probe"), &roots)?;
    let (dir, _) = probe.parent(false)?;
    let shown = |e| Error::io("list", folder.to_string(), e);
    let entries = Dir::entries(&dir).map_err(shown)?;
    let files: Vec<String> = entries.into_iter().filter(|e| !e.is_dir).map(|e| format!("{folder}/{}", e.name)).collect();
    if files.len() > MAX_BATCH {
        return Err(bad(format!(
            "folder {folder} holds {} files, more than the {MAX_BATCH} one call takes; give lists of paths instead",
            files.len()
        )));
    }
    Ok(files)
}

/// The stored size of every object (`null` when it is absent):
/// `[{"hash", "size"} | {"hash", "error"}]`, for the routines that check
/// objects after tracking them.
pub fn sizes_many(cfg: &Config, store: &str, schema: &str, json: &str) -> Result<String> {
    let rows = rows(json, true)?;
    let workers = cfg.store(store)?.max_parallel();
    let out = parallel::map(&rows, workers, |row| objects::object_size(cfg, store, &row.tracking(schema).object()?));
    let items = rows.iter().zip(out).map(|(row, r)| result(key(row), r.map(|n| Map::from_iter([("size".to_string(), Value::from(n))]))));
    Ok(Value::Array(items.collect()).to_string())
}

/// Deletes the objects of the rows (needs the purge key, like
/// `dj_delete_object`): `[{"hash", "status": "deleted" | "missing"} | {"hash", "error"}]`.
/// On S3 this is one `DeleteObjects` request per 1000 objects, which does
/// not tell whether an object was there: every one removed reads `deleted`.
pub fn delete_many(cfg: &Config, store: &str, schema: &str, json: &str, purge_key: &[u8]) -> Result<String> {
    objects::authorize(cfg, purge_key, "object deletion")?;
    let rows = rows(json, true)?;
    let st = super::open(cfg, store)?;
    let objs: Vec<Result<Object>> = rows
        .iter()
        .map(|r| {
            let t = r.tracking(schema);
            let obj = t.object()?;
            objects::check_deletable(&st, &obj, &t.hash)?;
            Ok(obj)
        })
        .collect();
    let keys: Vec<String> = objs.iter().filter_map(|o| o.as_ref().ok()).map(|o| st.key(o)).collect();
    let mut done = st.objects.delete_many(&keys, st.spec.max_parallel()).into_iter();
    let items = rows.iter().zip(objs).map(|(row, o)| {
        let r = o.and_then(|_| done.next().unwrap_or_else(|| Err(bad("no result"))));
        result(key(row), r.map(|gone| Map::from_iter([("status".to_string(), Value::from(if gone { "deleted" } else { "missing" }))])))
    });
    Ok(Value::Array(items.collect()).to_string())
}

/// The first index of each distinct key, and for every row the position
/// of its key among those.
fn dedupe<K: PartialEq>(rows: &[Row], key: impl Fn(&Row) -> K) -> (Vec<usize>, Vec<usize>) {
    let mut firsts: Vec<usize> = Vec::new();
    let mut keys: Vec<K> = Vec::new();
    let which = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let k = key(r);
            match keys.iter().position(|x| *x == k) {
                Some(p) => p,
                None => {
                    keys.push(k);
                    firsts.push(i);
                    firsts.len() - 1
                }
            }
        })
        .collect();
    (firsts, which)
}

/// A result that several rows share.
fn shared(r: &Result<String>) -> Result<String> {
    match r {
        Ok(s) => Ok(s.clone()),
        Err(e) => Err(Error::Shared { msg: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_strictly() {
        let r = rows(r#"[{"hash": "676de6356c1b33e8084921c02b8cdea6", "size": 13, "attachment_name": null}]"#, true).unwrap();
        assert_eq!((r[0].size, r[0].attachment_name.as_deref()), (Some(13), None));
        for (json, want) in [
            ("{}", "must be a JSON array"),
            ("[1]", "item 0 is not a JSON object"),
            (r#"[{"hash": "xyz"}]"#, "item 0: hash must be 32 hex digits"),
            (r#"[{"size": 1}]"#, "item 0: hash is missing"),
            (r#"[{"hash": "676de6356c1b33e8084921c02b8cdea6", "size": -1}]"#, "size must be a non-negative integer"),
            (r#"[{"hash": "676de6356c1b"#, "not valid JSON"),
        ] {
            let e = rows(json, true).err().unwrap().to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
        let many = format!("[{}]", vec!["{}"; MAX_BATCH + 1].join(","));
        assert!(rows(&many, false).err().unwrap().to_string().contains("send them in pages"));
    }

    #[test]
    fn duplicates_share_one_slot() {
        let r = rows(r#"[{"filepath": "a"}, {"filepath": "b"}, {"filepath": "a"}]"#, false).unwrap();
        assert_eq!(dedupe(&r, |r| r.filepath.clone()), (vec![0, 1], vec![0, 1, 0]));
    }
}
