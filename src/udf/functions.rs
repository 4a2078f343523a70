//! The SQL functions: their names, parameters and what each row does.

use super::{Call, Def, Func, IntFunc, Kind, Row};
use crate::config::Config;
use crate::datajoint::hash::{self, Hash};
use crate::datajoint::layout::{Object, TrackingRow};
use crate::error::{Error, Result};
use crate::export_fn;
use crate::ops;

use Kind::*;

/// LONGBLOB: results that carry object contents.
const LONG: u64 = u32::MAX as u64;
/// A path or status text: below 64 KiB keeps it a VARCHAR/TEXT column.
/// Room for a 4096-byte path, or a JSON holding a 1000-character filepath.
const TEXT: u64 = 8192;

fn cfg(c: Option<&Config>) -> &Config {
    c.expect("this function declares needs_config")
}

fn put_hash(out: &mut Vec<u8>, h: Hash) -> Result<bool> {
    out.extend_from_slice(&h);
    Ok(true)
}

fn put_text(out: &mut Vec<u8>, s: &str) -> Result<bool> {
    out.extend_from_slice(s.as_bytes());
    Ok(true)
}

/// The object a (schema, hash, attachment_name, filepath) argument group names.
fn object(a: &Row, schema: usize, h: Hash, name: usize, filepath: usize) -> Result<Object> {
    let schema = a.text(schema)?.unwrap_or("");
    let row = TrackingRow { schema, hash: h, size: 0, attachment_name: a.text(name)?, filepath: a.text(filepath)?, contents_hash: None };
    row.object()
}

pub struct Checksum;
impl Func for Checksum {
    const DEF: Def =
        Def { name: "dj_checksum", params: &[("data", Bytes), ("init_string", Bytes)], optional: 1, needs_config: false, max_length: 16 };
    fn run(_: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(data) = a.bytes(0) else { return Ok(false) };
        put_hash(out, hash::digest(a.bytes(1).unwrap_or(b""), data))
    }
}
export_fn!(string Call<Checksum>, dj_checksum, dj_checksum_init, dj_checksum_deinit);

pub struct FileChecksum;
impl Func for FileChecksum {
    const DEF: Def =
        Def { name: "dj_file_checksum", params: &[("server_path", Text), ("init_string", Bytes)], optional: 1, needs_config: true, max_length: 16 };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(path) = a.text(0)? else { return Ok(false) };
        put_hash(out, ops::checksum::file(cfg(c), path, a.bytes(1).unwrap_or(b""))?)
    }
}
export_fn!(string Call<FileChecksum>, dj_file_checksum, dj_file_checksum_init, dj_file_checksum_deinit);

pub struct BlobPut;
impl Func for BlobPut {
    const DEF: Def = Def {
        name: "dj_blob_put",
        params: &[("store", Store), ("schema", Schema), ("data", Bytes)],
        optional: 0,
        needs_config: true,
        max_length: 16,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(data) = a.bytes(2) else { return Ok(false) };
        put_hash(out, ops::blob::put(cfg(c), a.req(0)?, a.req(1)?, data)?)
    }
}
export_fn!(string Call<BlobPut>, dj_blob_put, dj_blob_put_init, dj_blob_put_deinit);

pub struct BlobGet;
impl Func for BlobGet {
    const DEF: Def = Def {
        name: "dj_blob_get",
        params: &[("store", Store), ("schema", Schema), ("hash", Hash)],
        optional: 0,
        needs_config: true,
        max_length: LONG,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(h) = a.hash(2)? else { return Ok(false) };
        *out = ops::blob::get(cfg(c), a.req(0)?, a.req(1)?, &h)?;
        Ok(true)
    }
}
export_fn!(string Call<BlobGet>, dj_blob_get, dj_blob_get_init, dj_blob_get_deinit);

pub struct AttachPut;
impl Func for AttachPut {
    const DEF: Def = Def {
        name: "dj_attach_put",
        params: &[("store", Store), ("schema", Schema), ("attachment_name", Name), ("data", Bytes)],
        optional: 0,
        needs_config: true,
        max_length: 16,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(data) = a.bytes(3) else { return Ok(false) };
        put_hash(out, ops::attach::put(cfg(c), a.req(0)?, a.req(1)?, a.req(2)?, data)?)
    }
}
export_fn!(string Call<AttachPut>, dj_attach_put, dj_attach_put_init, dj_attach_put_deinit);

pub struct AttachPutFile;
impl Func for AttachPutFile {
    const DEF: Def = Def {
        name: "dj_attach_put_file",
        params: &[("store", Store), ("schema", Schema), ("server_path", Text)],
        optional: 0,
        needs_config: true,
        max_length: 16,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(path) = a.text(2)? else { return Ok(false) };
        put_hash(out, ops::attach::put_file(cfg(c), a.req(0)?, a.req(1)?, path)?.0)
    }
}
export_fn!(string Call<AttachPutFile>, dj_attach_put_file, dj_attach_put_file_init, dj_attach_put_file_deinit);

pub struct AttachGet;
impl Func for AttachGet {
    const DEF: Def = Def {
        name: "dj_attach_get",
        params: &[("store", Store), ("schema", Schema), ("hash", Hash), ("attachment_name", Name)],
        optional: 0,
        needs_config: true,
        max_length: LONG,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(h) = a.hash(2)? else { return Ok(false) };
        *out = ops::attach::get(cfg(c), a.req(0)?, a.req(1)?, &h, a.req(3)?)?;
        Ok(true)
    }
}
export_fn!(string Call<AttachGet>, dj_attach_get, dj_attach_get_init, dj_attach_get_deinit);

pub struct AttachExport;
impl Func for AttachExport {
    const DEF: Def = Def {
        name: "dj_attach_export",
        params: &[("store", Store), ("schema", Schema), ("hash", Hash), ("attachment_name", Name), ("server_dir", Text)],
        optional: 0,
        needs_config: true,
        max_length: TEXT,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(h) = a.hash(2)? else { return Ok(false) };
        put_text(out, &ops::attach::export(cfg(c), a.req(0)?, a.req(1)?, &h, a.req(3)?, a.req(4)?)?)
    }
}
export_fn!(string Call<AttachExport>, dj_attach_export, dj_attach_export_init, dj_attach_export_deinit);

pub struct FilepathInfo;
impl Func for FilepathInfo {
    const DEF: Def =
        Def { name: "dj_filepath_info", params: &[("store", Store), ("server_path", Text)], optional: 0, needs_config: true, max_length: TEXT };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(path) = a.text(1)? else { return Ok(false) };
        put_text(out, &ops::filepath::info(cfg(c), a.req(0)?, path)?.to_json())
    }
}
export_fn!(string Call<FilepathInfo>, dj_filepath_info, dj_filepath_info_init, dj_filepath_info_deinit);

pub struct FilepathPut;
impl Func for FilepathPut {
    const DEF: Def = Def {
        name: "dj_filepath_put",
        params: &[("store", Store), ("server_path", Text), ("contents_hash", Hash)],
        optional: 1,
        needs_config: true,
        max_length: 16,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(path) = a.text(1)? else { return Ok(false) };
        put_hash(out, ops::filepath::put(cfg(c), a.req(0)?, path, a.hash(2)?)?)
    }
}
export_fn!(string Call<FilepathPut>, dj_filepath_put, dj_filepath_put_init, dj_filepath_put_deinit);

pub struct FilepathGet;
impl Func for FilepathGet {
    const DEF: Def = Def {
        name: "dj_filepath_get",
        params: &[("store", Store), ("filepath", Text), ("contents_hash", Hash), ("size", Size)],
        optional: 0,
        needs_config: true,
        max_length: TEXT,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(rel) = a.text(1)? else { return Ok(false) };
        let size = a.size(3)?.ok_or_else(|| Error::arg("size", "must not be NULL"))?;
        put_text(out, &ops::filepath::get(cfg(c), a.req(0)?, rel, a.hash(2)?, size)?)
    }
}
export_fn!(string Call<FilepathGet>, dj_filepath_get, dj_filepath_get_init, dj_filepath_get_deinit);

pub struct Verify;
impl Func for Verify {
    const DEF: Def = Def {
        name: "dj_verify",
        params: &[
            ("store", Store),
            ("schema", Schema),
            ("hash", Hash),
            ("size", Size),
            ("attachment_name", Text),
            ("filepath", Text),
            ("contents_hash", Hash),
        ],
        optional: 0,
        needs_config: true,
        max_length: TEXT,
    };
    /// Returns a status for every row, failures included, so that one query
    /// audits a whole table; the failure text also goes to dj_last_error().
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(h) = a.hash(2)? else { return Ok(false) };
        let status = (|| {
            let row = TrackingRow {
                schema: a.text(1)?.unwrap_or(""),
                hash: h,
                size: a.size(3)?.ok_or_else(|| Error::arg("size", "must not be NULL"))?,
                attachment_name: a.text(4)?,
                filepath: a.text(5)?,
                contents_hash: a.hash(6)?,
            };
            ops::verify::verify(cfg(c), a.req(0)?, &row)
        })()
        .unwrap_or_else(|e| {
            crate::ffi::set_last_error(format!("dj_verify: {e}"));
            e.status()
        });
        put_text(out, &status)
    }
}
export_fn!(string Call<Verify>, dj_verify, dj_verify_init, dj_verify_deinit);

pub struct ObjectSize;
impl IntFunc for ObjectSize {
    const DEF: Def = Def {
        name: "dj_object_size",
        params: &[("store", Store), ("schema", Schema), ("hash", Hash), ("attachment_name", Text), ("filepath", Text)],
        optional: 0,
        needs_config: true,
        max_length: 21,
    };
    fn run(c: Option<&Config>, a: &Row) -> Result<Option<i64>> {
        let Some(h) = a.hash(2)? else { return Ok(None) };
        let obj = object(a, 1, h, 3, 4)?;
        Ok(ops::objects::object_size(cfg(c), a.req(0)?, &obj)?.map(|n| n as i64))
    }
}
export_fn!(int Call<ObjectSize>, dj_object_size, dj_object_size_init, dj_object_size_deinit);

pub struct DeleteObject;
impl Func for DeleteObject {
    const DEF: Def = Def {
        name: "dj_delete_object",
        params: &[("store", Store), ("schema", Schema), ("hash", Hash), ("attachment_name", Text), ("filepath", Text), ("purge_key", Bytes)],
        optional: 0,
        needs_config: true,
        max_length: 16,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let Some(h) = a.hash(2)? else { return Ok(false) };
        let obj = object(a, 1, h, 3, 4)?;
        put_text(out, ops::objects::delete(cfg(c), a.req(0)?, &obj, a.bytes(5).unwrap_or(b""))?)
    }
}
export_fn!(string Call<DeleteObject>, dj_delete_object, dj_delete_object_init, dj_delete_object_deinit);

pub struct ListObjects;
impl Func for ListObjects {
    const DEF: Def = Def {
        name: "dj_list_objects",
        params: &[("store", Store), ("schema", Schema), ("after", Text), ("limit", Size)],
        optional: 0,
        needs_config: true,
        max_length: 16 << 20,
    };
    fn run(c: Option<&Config>, a: &Row, out: &mut Vec<u8>) -> Result<bool> {
        let limit = a.size(3)?.unwrap_or(1000) as usize;
        put_text(out, &ops::objects::list_objects(cfg(c), a.req(0)?, a.req(1)?, a.text(2)?.unwrap_or(""), limit)?)
    }
}
export_fn!(string Call<ListObjects>, dj_list_objects, dj_list_objects_init, dj_list_objects_deinit);

pub struct LastError;
impl Func for LastError {
    const DEF: Def = Def { name: "dj_last_error", params: &[], optional: 0, needs_config: false, max_length: TEXT };
    fn run(_: Option<&Config>, _: &Row, out: &mut Vec<u8>) -> Result<bool> {
        match crate::ffi::last_error() {
            Some(e) => put_text(out, &e),
            None => Ok(false),
        }
    }
}
export_fn!(string Call<LastError>, dj_last_error, dj_last_error_init, dj_last_error_deinit);

pub struct Stores;
impl Func for Stores {
    const DEF: Def = Def { name: "dj_stores", params: &[], optional: 0, needs_config: true, max_length: 65535 };
    fn run(c: Option<&Config>, _: &Row, out: &mut Vec<u8>) -> Result<bool> {
        put_text(out, &cfg(c).redacted_json())
    }
}
export_fn!(string Call<Stores>, dj_stores, dj_stores_init, dj_stores_deinit);

pub struct Version;
impl Func for Version {
    const DEF: Def = Def { name: "dj_version", params: &[], optional: 0, needs_config: false, max_length: 64 };
    fn run(_: Option<&Config>, _: &Row, out: &mut Vec<u8>) -> Result<bool> {
        put_text(out, env!("CARGO_PKG_VERSION"))
    }
}
export_fn!(string Call<Version>, dj_version, dj_version_init, dj_version_deinit);
