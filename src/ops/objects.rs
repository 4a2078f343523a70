//! Objects one by one, for the SQL layer's put checks, cleanup and sweep:
//! `dj_object_size`, `dj_delete_object` (gated by the config's purge key) and
//! `dj_list_objects`.

use super::{open, Opened};
use crate::config::{Config, StoreConfig};
use crate::datajoint::hash::{self, Hash};
use crate::datajoint::layout::{self, Object};
use crate::error::{Error, Result};

/// The stored size of an object, `None` when it is absent.
pub fn object_size(cfg: &Config, store: &str, obj: &Object) -> Result<Option<u64>> {
    let st = open(cfg, store)?;
    st.objects.size(&st.key(obj))
}

/// Compares without an early exit, so timing tells nothing about the key.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Deletes an object. Any SQL user can call a UDF, so deleting needs the
/// secret `purge_key` of the config file; the cleanup routine reads it from a
/// table only trusted accounts may read. `hash` is the hash of the tracking
/// row that named the object: a filepath object is deleted only by the hash
/// of its own path, and never where its path is also another object's key.
pub fn delete(cfg: &Config, store: &str, obj: &Object, hash: &Hash, key: &[u8]) -> Result<&'static str> {
    let Some(secret) = &cfg.purge_key else {
        return Err(Error::Denied { msg: format!("object deletion is disabled: {} has no purge_key", cfg.file.display()) });
    };
    if !same_secret(secret.as_bytes(), key) {
        return Err(Error::Denied { msg: "wrong purge key: deletion refused".into() });
    }
    let st = open(cfg, store)?;
    if let Object::Filepath { relative } = obj {
        if hash::filepath(relative) != *hash {
            return Err(Error::Denied {
                msg: format!("deletion refused: hash {} is not the MD5 of filepath '{}'", hash::to_hex(hash), layout::shown(relative)),
            });
        }
        refuse_object_key(&st, relative)?;
    }
    Ok(if st.objects.delete(&st.key(obj))? { "deleted" } else { "missing" })
}

/// Refuses a filepath whose relative path has the layout of a blob or an
/// attachment of this store (`<schema>/<subfolds>/<hex>[.<name>]`): as a
/// filepath object it would share that object's key, so putting it could
/// adopt another schema's object and deleting it would remove that object.
pub fn refuse_object_key(st: &Opened, relative: &str) -> Result<()> {
    let schema = relative.split('/').next().unwrap_or("");
    match parse_key(relative, schema, &st.spec.subfolding) {
        Some(_) => Err(Error::Denied {
            msg: format!(
                "filepath '{}' is refused: it has the layout of a blob or attachment key of schema '{}' in store '{}'",
                layout::shown(relative),
                layout::shown(schema),
                st.spec.name
            ),
        }),
        None => Ok(()),
    }
}

/// Whether two stores keep their objects in the same place.
fn same_place(a: &StoreConfig, b: &StoreConfig) -> bool {
    use crate::config::Protocol;
    match (&a.protocol, &b.protocol) {
        // File locations are canonical in the config.
        (Protocol::File, Protocol::File) => a.location == b.location,
        (Protocol::S3(x), Protocol::S3(y)) => {
            x.endpoint.eq_ignore_ascii_case(&y.endpoint)
                && x.bucket == y.bucket
                && crate::store::s3::location_prefix(&a.location) == crate::store::s3::location_prefix(&b.location)
        }
        _ => false,
    }
}

/// What a listed key names, when it has DataJoint's layout for this store:
/// `<schema>/<subfolds>/<hex>` (a blob) or `…/<hex>.<name>` (an attachment).
pub fn parse_key(key: &str, schema: &str, folds: &[usize]) -> Option<(Hash, Option<String>)> {
    let rest = key.strip_prefix(schema)?.strip_prefix('/')?;
    let mut parts: Vec<&str> = rest.split('/').collect();
    let file = parts.pop()?;
    let (hex, name) = match file.split_once('.') {
        Some((hex, name)) => (hex, Some(name.to_string())),
        None => (file, None),
    };
    let h = hash::parse(hex.as_bytes()).filter(|_| hex.len() == 32 && hex == hex.to_ascii_lowercase())?;
    let expected = Object::Blob { schema: schema.into(), hash: h }.key(folds);
    if expected != format!("{schema}/{}{hex}", parts.iter().map(|p| format!("{p}/")).collect::<String>()) {
        return None;
    }
    if let Some(n) = &name {
        layout::check_attachment_name(n).ok()?;
    }
    Some((h, name))
}

/// A page of the objects stored for one schema, as JSON for the sweep
/// routine: `[{"key", "hash", "attachment_name", "size", "age"}, …]`, with
/// `hash` null for a file that is not a DataJoint object of this store.
pub fn list_objects(cfg: &Config, store: &str, schema: &str, after: &str, limit: usize) -> Result<String> {
    layout::check_schema_name(schema)?;
    let st = open(cfg, store)?;
    // Two stores in one place (a blob and an attach store on one folder is a
    // common DataJoint setup) hold each other's objects: seen from one, the
    // other's objects have no tracking row and would be swept away.
    if let Some(other) = cfg.stores.iter().find(|o| o.name != st.spec.name && same_place(o, st.spec)) {
        return Err(Error::Denied {
            msg: format!(
                "store '{}' shares its location with store '{}': listing it for a sweep could remove the other store's objects; give each store its own location",
                st.spec.name, other.name
            ),
        });
    }
    let page = st.objects.list(&format!("{schema}/"), after, limit.clamp(1, 1000))?;
    let items: Vec<serde_json::Value> = page
        .into_iter()
        .map(|o| {
            let parsed = parse_key(&o.key, schema, &st.spec.subfolding);
            serde_json::json!({
                "key": o.key,
                "hash": parsed.as_ref().map(|(h, _)| hash::to_hex(h)),
                "attachment_name": parsed.and_then(|(_, n)| n),
                "size": o.size,
                "age": o.age,
            })
        })
        .collect();
    Ok(serde_json::Value::Array(items).to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_key;
    use crate::datajoint::hash;

    #[test]
    fn keys_parse_back_to_objects() {
        let h = hash::parse(b"676de6356c1b33e8084921c02b8cdea6").unwrap();
        assert_eq!(parse_key("s/67/6d/676de6356c1b33e8084921c02b8cdea6", "s", &[2, 2]), Some((h, None)));
        assert_eq!(parse_key("s/67/6d/676de6356c1b33e8084921c02b8cdea6.a.tar.gz", "s", &[2, 2]), Some((h, Some("a.tar.gz".into()))));
        assert_eq!(parse_key("s/676de6356c1b33e8084921c02b8cdea6..hidden", "s", &[]), Some((h, Some(".hidden".into()))));
        assert_eq!(parse_key("s/6/76/de6/676de6356c1b33e8084921c02b8cdea6", "s", &[1, 2, 3]), Some((h, None)));
        for foreign in [
            "s/67/6d/676de6356c1b33e8084921c02b8cdea6x",
            "s/67/6e/676de6356c1b33e8084921c02b8cdea6",
            "s/676de6356c1b33e8084921c02b8cdea6",
            "s/67/6d/notes.txt",
            "other/67/6d/676de6356c1b33e8084921c02b8cdea6",
            "s/67/6d/676DE6356C1B33E8084921C02B8CDEA6",
        ] {
            assert_eq!(parse_key(foreign, "s", &[2, 2]), None, "{foreign}");
        }
    }
}

#[cfg(test)]
mod deletion_tests {
    use super::delete;
    use crate::config::Config;
    use crate::datajoint::hash;
    use crate::datajoint::layout::Object;
    use std::path::Path;

    #[test]
    fn a_filepath_is_deleted_only_by_its_own_hash_and_never_as_another_objects_key() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let loc = std::env::temp_dir().join(format!("dj-del-{}-{nanos}", std::process::id()));
        let blob = hash::parse(b"676de6356c1b33e8084921c02b8cdea6").unwrap();
        let blob_key = "alice/67/6d/676de6356c1b33e8084921c02b8cdea6";
        std::fs::create_dir_all(loc.join("alice/67/6d")).unwrap();
        std::fs::create_dir_all(loc.join("eve")).unwrap();
        std::fs::write(loc.join(blob_key), b"alice's blob").unwrap();
        std::fs::write(loc.join("eve/f.dat"), b"eve's file").unwrap();
        let text = format!(r#"{{"stores": {{"m": {{"protocol": "file", "location": "{}"}}}}, "purge_key": "0123456789abcdef0"}}"#, loc.display());
        let cfg = Config::parse(Path::new("/etc/t.json"), &text).unwrap();
        let key = b"0123456789abcdef0";
        let fp = |rel: &str| Object::Filepath { relative: rel.into() };

        let e = delete(&cfg, "m", &fp("eve/f.dat"), &[7; 16], key).unwrap_err();
        assert!(e.to_string().contains("is not the MD5 of filepath 'eve/f.dat'"), "{e}");
        let e = delete(&cfg, "m", &fp(blob_key), &hash::filepath(blob_key), key).unwrap_err();
        assert!(e.to_string().contains("layout of a blob or attachment key of schema 'alice'"), "{e}");
        assert!(loc.join(blob_key).exists() && loc.join("eve/f.dat").exists());

        assert_eq!(delete(&cfg, "m", &fp("eve/f.dat"), &hash::filepath("eve/f.dat"), key).unwrap(), "deleted");
        let b = Object::Blob { schema: "alice".into(), hash: blob };
        assert_eq!(delete(&cfg, "m", &b, &blob, key).unwrap(), "deleted");
        std::fs::remove_dir_all(&loc).unwrap();
    }
}
