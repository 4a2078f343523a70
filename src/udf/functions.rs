//! The registry: every SQL function the library exports, declared once.
//! Adding a function means adding it here, to `sql/install.sql` and
//! `sql/uninstall.sql` (a unit test checks those against this list), and
//! to the tests.

use crate::config;
use crate::datajoint::hash::{self, Hash};
use crate::datajoint::layout::{self, Object, TrackingRow};
use crate::error::{Error, Result};
use crate::ops;

/// LONGBLOB: results that carry object contents.
const LONG: u64 = u32::MAX as u64;
/// A path or status text: below 64 KiB keeps it a VARCHAR/TEXT column.
/// Room for a 4096-byte path, or a JSON holding a 1000-character filepath.
const TEXT: u64 = 8192;

fn put_hash(out: &mut Vec<u8>, h: Hash) -> Result<bool> {
    out.extend_from_slice(&h);
    Ok(true)
}

fn put_text(out: &mut Vec<u8>, s: &str) -> Result<bool> {
    out.extend_from_slice(s.as_bytes());
    Ok(true)
}

/// The object a tracking row's (schema, hash, attachment_name, filepath) names.
fn object(schema: Option<&str>, hash: Hash, attachment_name: Option<&str>, filepath: Option<&str>) -> Result<Object> {
    TrackingRow { schema: schema.unwrap_or(""), hash, size: 0, attachment_name, filepath, contents_hash: None }.object()
}

sql_functions! {
    /// MD5(init ‖ data): DataJoint's hash of bytes.
    dj_checksum(data: Bytes, [init_string: Bytes]) -> string(16) = |_, a, out| {
        let Some(data) = a.data.bytes() else { return Ok(false) };
        put_hash(out, hash::digest(a.init_string.bytes().unwrap_or(b""), data))
    }

    /// MD5(init ‖ contents) of a server file inside a configured folder.
    dj_file_checksum(server_path: Text, [init_string: Bytes]) -> string(16) needs_config = |c, a, out| {
        let Some(path) = a.server_path.text()? else { return Ok(false) };
        put_hash(out, ops::checksum::file(c.config(), path, a.init_string.bytes().unwrap_or(b""))?)
    }

    /// Stores serialized blob bytes; returns their hash.
    dj_blob_put(store: Store, schema: Schema, data: Bytes) -> string(16) needs_config = |c, a, out| {
        let Some(data) = a.data.bytes() else { return Ok(false) };
        put_hash(out, ops::blob::put(c.config(), a.store.req()?, a.schema.req()?, data)?)
    }

    /// A blob's bytes, verified against its hash.
    dj_blob_get(store: Store, schema: Schema, hash: Hash) -> string(LONG) needs_config = |c, a, out| {
        let Some(h) = a.hash.hash()? else { return Ok(false) };
        *out = ops::blob::get(c.config(), a.store.req()?, a.schema.req()?, &h, &c.held)?;
        Ok(true)
    }

    /// Stores an attachment sent as bytes; returns its hash.
    dj_attach_put(store: Store, schema: Schema, attachment_name: Name, data: Bytes) -> string(16) needs_config = |c, a, out| {
        let Some(data) = a.data.bytes() else { return Ok(false) };
        put_hash(out, ops::attach::put(c.config(), a.store.req()?, a.schema.req()?, a.attachment_name.req()?, data)?)
    }

    /// Attaches a server file under its base name; returns its hash.
    dj_attach_put_file(store: Store, schema: Schema, server_path: Text) -> string(16) needs_config = |c, a, out| {
        let Some(path) = a.server_path.text()? else { return Ok(false) };
        put_hash(out, ops::attach::put_file(c.config(), a.store.req()?, a.schema.req()?, path)?.0)
    }

    /// The attachment name `dj_attach_put_file` gives a server path: the
    /// routines take it from here so that SQL and Rust never disagree.
    dj_attachment_name(server_path: Text) -> string(TEXT) = |_, a, out| {
        let Some(path) = a.server_path.text()? else { return Ok(false) };
        put_text(out, &ops::attach::file_name(path)?)
    }

    /// An attachment's bytes, verified against its hash.
    dj_attach_get(store: Store, schema: Schema, hash: Hash, attachment_name: Name) -> string(LONG) needs_config = |c, a, out| {
        let Some(h) = a.hash.hash()? else { return Ok(false) };
        *out = ops::attach::get(c.config(), a.store.req()?, a.schema.req()?, &h, a.attachment_name.req()?, &c.held)?;
        Ok(true)
    }

    /// Writes a verified copy of an attachment into a server folder; returns its path.
    dj_attach_export(store: Store, schema: Schema, hash: Hash, attachment_name: Name, server_dir: Text) -> string(TEXT) needs_config [reads: Export] = |c, a, out| {
        let Some(h) = a.hash.hash()? else { return Ok(false) };
        let path = ops::attach::export(c.config(), a.store.req()?, a.schema.req()?, &h, a.attachment_name.req()?, a.server_dir.req()?)?;
        put_text(out, &path)
    }

    /// What a tracking row for a staged file will hold, as JSON.
    dj_filepath_info(store: Store, server_path: Text) -> string(TEXT) needs_config = |c, a, out| {
        let Some(path) = a.server_path.text()? else { return Ok(false) };
        put_text(out, &ops::filepath::info(c.config(), a.store.req()?, path)?.to_json())
    }

    /// Uploads a staged file once; returns MD5 of its relative path.
    dj_filepath_put(store: Store, server_path: Text, [contents_hash: Hash]) -> string(16) needs_config = |c, a, out| {
        let Some(path) = a.server_path.text()? else { return Ok(false) };
        put_hash(out, ops::filepath::put(c.config(), a.store.req()?, path, a.contents_hash.hash()?)?)
    }

    /// Makes the staged copy of a filepath object a checked copy; returns its
    /// path. A different local file is replaced only when `replace` is 1.
    dj_filepath_get(store: Store, filepath: Text, contents_hash: Hash, size: Size, [replace: Size]) -> string(TEXT) needs_config = |c, a, out| {
        let Some(rel) = a.filepath.text()? else { return Ok(false) };
        let replace = a.replace.size()?.unwrap_or(0) != 0;
        put_text(out, &ops::filepath::get(c.config(), a.store.req()?, rel, a.contents_hash.hash()?, a.size.req_size()?, replace)?)
    }

    /// A status for every tracking row, failures included, so that one
    /// query audits a whole table; the failure text also goes to dj_last_error().
    dj_verify(store: Store, schema: Schema, hash: Hash, size: Size, attachment_name: Text, filepath: Text, contents_hash: Hash)
        -> string(TEXT) needs_config [reads: Verify] = |c, a, out| {
        let Some(h) = a.hash.hash()? else { return Ok(false) };
        let status = (|| {
            let row = TrackingRow {
                schema: a.schema.text()?.unwrap_or(""),
                hash: h,
                size: a.size.req_size()?,
                attachment_name: a.attachment_name.text()?,
                filepath: a.filepath.text()?,
                contents_hash: a.contents_hash.hash()?,
            };
            ops::verify::verify(c.config(), a.store.req()?, &row)
        })()
        .unwrap_or_else(|e: Error| {
            crate::stats::failed(&e);
            crate::ffi::set_last_error(format!("{}: {e}", DEF.name));
            e.status()
        });
        put_text(out, &status)
    }

    /// The stored size of an object, NULL when it is absent.
    dj_object_size(store: Store, schema: Schema, hash: Hash, attachment_name: Text, filepath: Text) -> int needs_config = |c, a| {
        let Some(h) = a.hash.hash()? else { return Ok(None) };
        let obj = object(a.schema.text()?, h, a.attachment_name.text()?, a.filepath.text()?)?;
        Ok(ops::objects::object_size(c.config(), a.store.req()?, &obj)?.map(|n| n as i64))
    }

    /// Deletes an object; needs the config's purge key.
    dj_delete_object(store: Store, schema: Schema, hash: Hash, attachment_name: Text, filepath: Text, purge_key: Bytes)
        -> string(16) needs_config = |c, a, out| {
        let Some(h) = a.hash.hash()? else { return Ok(false) };
        let obj = object(a.schema.text()?, h, a.attachment_name.text()?, a.filepath.text()?)?;
        put_text(out, ops::objects::delete(c.config(), a.store.req()?, &obj, &h, a.purge_key.bytes().unwrap_or(b""))?)
    }

    /// A JSON page of a schema's objects in a store, for sweeping; needs
    /// the purge key, since it hands out the hashes and names reading needs.
    dj_list_objects(store: Store, schema: Schema, after: Text, limit: Size, purge_key: Bytes) -> string(16 << 20) needs_config = |c, a, out| {
        let limit = a.limit.size()?.unwrap_or(1000) as usize;
        let key = a.purge_key.bytes().unwrap_or(b"");
        put_text(out, &ops::objects::list_objects(c.config(), a.store.req()?, a.schema.req()?, a.after.text()?.unwrap_or(""), limit, key)?)
    }

    /// Removes what interrupted writes left in a store and nobody is
    /// writing any more, untouched for `min_age_seconds`; needs the purge key.
    dj_sweep_leftovers(store: Store, min_age_seconds: Size, purge_key: Bytes) -> string(TEXT) needs_config = |c, a, out| {
        let key = a.purge_key.bytes().unwrap_or(b"");
        put_text(out, &ops::leftovers::sweep(c.config(), a.store.req()?, a.min_age_seconds.req_size()?, key)?)
    }

    /// `dj_verify` for a JSON array of tracking rows (`hash`, `size`,
    /// `attachment_name`, `filepath`, `contents_hash`), up to the store's
    /// `max_parallel` at once: `[{"hash", "status"}]` in the same order.
    dj_verify_many(store: Store, schema: Schema, rows: Text) -> string(LONG) needs_config [reads: Verify] = |c, a, out| {
        let Some(rows) = a.rows.text()? else { return Ok(false) };
        put_text(out, &ops::batch::verify_many(c.config(), a.store.req()?, a.schema.req()?, rows)?)
    }

    /// `dj_attach_export` for a JSON array of `{hash, attachment_name}` into
    /// one folder, in parallel: `[{"hash", "attachment_name", "path" | "error"}]`.
    dj_attach_export_many(store: Store, schema: Schema, rows: Text, server_dir: Text) -> string(LONG) needs_config [reads: Export] = |c, a, out| {
        let Some(rows) = a.rows.text()? else { return Ok(false) };
        put_text(out, &ops::batch::export_many(c.config(), a.store.req()?, a.schema.req()?, rows, a.server_dir.req()?)?)
    }

    /// `dj_filepath_get` for a JSON array of `{filepath, contents_hash, size}`,
    /// in parallel: `[{"filepath", "path" | "error"}]`.
    dj_filepath_get_many(store: Store, rows: Text) -> string(LONG) needs_config = |c, a, out| {
        let Some(rows) = a.rows.text()? else { return Ok(false) };
        put_text(out, &ops::batch::filepath_get_many(c.config(), a.store.req()?, rows)?)
    }

    /// `dj_attach_put_file` for every file of a server folder, or a JSON
    /// array of server paths, in parallel:
    /// `[{"path", "attachment_name", "hash", "size"} | {"path", "error"}]`.
    dj_attach_put_files(store: Store, schema: Schema, server_paths: Text) -> string(LONG) needs_config = |c, a, out| {
        let Some(paths) = a.server_paths.text()? else { return Ok(false) };
        put_text(out, &ops::batch::put_files(c.config(), a.store.req()?, a.schema.req()?, paths)?)
    }

    /// `dj_attach_put` for many attachments in one call: `items`, a JSON
    /// array of `{"attachment_name", "size"}`, divides `data`, their bytes
    /// one after the other; in parallel:
    /// `[{"attachment_name", "hash", "size"} | {"attachment_name", "error"}]`.
    dj_attach_put_many(store: Store, schema: Schema, items: Text, data: Bytes) -> string(LONG) needs_config = |c, a, out| {
        let (Some(items), Some(data)) = (a.items.text()?, a.data.bytes()) else { return Ok(false) };
        put_text(out, &ops::batch::attach_put_many(c.config(), a.store.req()?, a.schema.req()?, items, data)?)
    }

    /// `dj_blob_put` for many serialized blobs in one call: `items`, a JSON
    /// array of `{"size"}`, divides `data`; in parallel:
    /// `[{"hash", "size"} | {"error"}]`.
    dj_blob_put_many(store: Store, schema: Schema, items: Text, data: Bytes) -> string(LONG) needs_config = |c, a, out| {
        let (Some(items), Some(data)) = (a.items.text()?, a.data.bytes()) else { return Ok(false) };
        put_text(out, &ops::batch::blob_put_many(c.config(), a.store.req()?, a.schema.req()?, items, data)?)
    }

    /// `dj_object_size` for a JSON array of tracking rows, in parallel:
    /// `[{"hash", "size"} | {"hash", "error"}]`.
    dj_object_sizes(store: Store, schema: Schema, rows: Text) -> string(LONG) needs_config = |c, a, out| {
        let Some(rows) = a.rows.text()? else { return Ok(false) };
        put_text(out, &ops::batch::sizes_many(c.config(), a.store.req()?, a.schema.req()?, rows)?)
    }

    /// Deletes the objects of a JSON array of tracking rows (S3: one
    /// `DeleteObjects` request per 1000); needs the config's purge key.
    dj_delete_objects(store: Store, schema: Schema, rows: Text, purge_key: Bytes) -> string(LONG) needs_config = |c, a, out| {
        let Some(rows) = a.rows.text()? else { return Ok(false) };
        put_text(out, &ops::batch::delete_many(c.config(), a.store.req()?, a.schema.req()?, rows, a.purge_key.bytes().unwrap_or(b""))?)
    }

    /// `` `schema`.`~external_store` ``, quoted, once both names pass the
    /// checks every other function applies: the routines build their SQL
    /// from it instead of checking names again.
    dj_tracking_table(store: Text, schema: Schema) -> string(256) = |_, a, out| {
        put_text(out, &layout::tracking_table(a.schema.text()?.unwrap_or(""), a.store.text()?.unwrap_or(""))?)
    }

    /// This connection's last failure.
    dj_last_error() -> string(TEXT) = |_, _a, out| {
        match crate::ffi::last_error() {
            Some(e) => put_text(out, &e),
            None => Ok(false),
        }
    }

    /// The config as JSON, credentials redacted.
    dj_stores() -> string(65535) needs_config = |c, _a, out| {
        put_text(out, &c.config().redacted_json_with(&crate::store::s3::credentials_status))
    }

    /// The store counters since the library was loaded (or reset), as
    /// JSON; needs the purge key, which the `dj_udf.store_stats` view supplies.
    /// The four monitoring functions read the config per call, not when a
    /// statement starts: `CREATE VIEW` starts them, and installing must not
    /// fail on a config whose folders do not exist yet.
    dj_store_stats(purge_key: Bytes) -> string(1 << 20) = |_, a, out| {
        let cfg = &*config::current()?;
        ops::objects::authorize(cfg, a.purge_key.bytes().unwrap_or(b""), "reading the store counters")?;
        let names: Vec<&str> = cfg.stores.iter().map(|s| s.name.as_str()).collect();
        put_text(out, &crate::stats::to_json(&names).to_string())
    }

    /// Zeroes the store counters; needs the purge key. Returns 1.
    dj_reset_store_stats(purge_key: Bytes) -> int = |_, a| {
        ops::objects::authorize(&*config::current()?, a.purge_key.bytes().unwrap_or(b""), "resetting the store counters")?;
        crate::stats::reset();
        Ok(Some(1))
    }

    /// The transfers running now, of every connection, as a JSON array;
    /// needs the purge key (they name other accounts' objects).
    dj_transfers(purge_key: Bytes) -> string(1 << 20) = |_, a, out| {
        ops::objects::authorize(&*config::current()?, a.purge_key.bytes().unwrap_or(b""), "listing the transfers")?;
        put_text(out, &serde_json::Value::Array(crate::stats::transfers::list()).to_string())
    }

    /// Checks every configured store with a probe object, as a JSON array
    /// of `{store, protocol, healthy, reason, free_bytes, seconds}`; needs the purge key.
    dj_store_health(purge_key: Bytes) -> string(1 << 20) = |_, a, out| {
        put_text(out, &ops::health::check_all(&*config::current()?, a.purge_key.bytes().unwrap_or(b""))?)
    }

    /// The library's version.
    dj_version() -> string(64) = |_, _a, out| {
        put_text(out, env!("CARGO_PKG_VERSION"))
    }

    /// Opens a chunked upload of an attachment (or, with a NULL name, a
    /// blob); returns its id, a capability of the account that opened it.
    dj_upload_open(store: Store, schema: Schema, attachment_name: Name, part_size: Size, account: Text) -> string(64) needs_config = |c, a, out| {
        let name = a.attachment_name.text()?;
        let id = ops::chunked::open(c.config(), a.store.req()?, a.schema.req()?, name, a.part_size.req_size()?, a.account.req()?)?;
        put_text(out, &id)
    }

    /// Stores one numbered part of an upload; returns the MD5 (hex) of the
    /// bytes received, the client's receipt.
    dj_upload_part(upload_id: Text, account: Text, part: Size, data: Bytes) -> string(32) needs_config = |c, a, out| {
        let Some(data) = a.data.bytes() else { return Err(Error::arg("data", "must not be NULL")) };
        let md5 = ops::chunked::part(c.config(), a.upload_id.req()?, a.account.req()?, a.part.req_size()?, data)?;
        put_text(out, &md5)
    }

    /// Checks and places an upload of `parts` parts; returns JSON with its
    /// hash and size for the tracking row.
    dj_upload_finish(upload_id: Text, account: Text, parts: Size, [part_md5s: Text, expected_hash: Hash]) -> string(TEXT) needs_config = |c, a, out| {
        let json = ops::chunked::finish(
            c.config(), a.upload_id.req()?, a.account.req()?, a.parts.req_size()?, a.part_md5s.text()?, a.expected_hash.hash()?,
        )?;
        put_text(out, &json)
    }

    /// An upload's parts as the server holds them, as JSON.
    dj_upload_status(upload_id: Text, account: Text) -> string(1 << 20) needs_config = |c, a, out| {
        put_text(out, &ops::chunked::status(c.config(), a.upload_id.req()?, a.account.req()?)?)
    }

    /// Ends an unfinished upload and frees what it holds.
    dj_upload_abort(upload_id: Text, account: Text) -> string(16) needs_config = |c, a, out| {
        ops::chunked::abort(c.config(), a.upload_id.req()?, a.account.req()?)?;
        put_text(out, "aborted")
    }

    /// Removes every expired upload; returns how many.
    dj_expire_uploads() -> int needs_config = |c, _a| {
        Ok(Some(ops::chunked::expire(c.config())? as i64))
    }

    /// Bytes [offset, offset + length) of a tracking row's object; the call
    /// that returns its last byte also checks the whole object's hash.
    dj_read_range(store: Store, schema: Schema, hash: Hash, size: Size, attachment_name: Text, filepath: Text, contents_hash: Hash, offset: Size, length: Size)
        -> string(LONG) needs_config = |c, a, out| {
        let Some(h) = a.hash.hash()? else { return Ok(false) };
        let row = TrackingRow {
            schema: a.schema.text()?.unwrap_or(""),
            hash: h,
            size: a.size.req_size()?,
            attachment_name: a.attachment_name.text()?,
            filepath: a.filepath.text()?,
            contents_hash: a.contents_hash.hash()?,
        };
        ops::ranged::read(c.config(), a.store.req()?, &row, a.offset.req_size()?, a.length.req_size()?, out)?;
        Ok(true)
    }
}
