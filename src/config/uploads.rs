//! The config keys of chunked uploads: where unfinished uploads wait, how
//! large and how many they may be, and when an abandoned one expires. A
//! server without `upload_dir` has chunked uploads switched off.

use super::existing_dir;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The largest object a chunked upload may build unless `max_upload_bytes` says otherwise.
pub const DEFAULT_MAX_UPLOAD: u64 = 64 << 30;
/// Unfinished uploads an account may hold unless `max_open_uploads` says otherwise.
pub const DEFAULT_MAX_OPEN: u64 = 8;
/// Seconds without a call after which an upload expires unless `upload_expiry` says otherwise.
pub const DEFAULT_EXPIRY: u64 = 24 * 3600;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploads {
    /// Where each unfinished upload keeps its record (and, for a file
    /// store, its bytes); `None`: chunked uploads are off.
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
    pub max_open: u64,
    pub expiry_secs: u64,
}

/// Reads the upload keys of the config's top level; an error names the key.
pub fn parse(top: &Map<String, Value>) -> Result<Uploads, (&'static str, String)> {
    let dir = match top.get("upload_dir") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(existing_dir(d).map_err(|m| ("upload_dir", m))?),
        Some(_) => return Err(("upload_dir", "must be an absolute folder".into())),
    };
    let positive = |key: &'static str, default: u64| match top.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or((key, "must be a positive integer".to_string())),
    };
    Ok(Uploads {
        dir,
        max_bytes: positive("max_upload_bytes", DEFAULT_MAX_UPLOAD)?,
        max_open: positive("max_open_uploads", DEFAULT_MAX_OPEN)?,
        expiry_secs: positive("upload_expiry", DEFAULT_EXPIRY)?,
    })
}

/// An upload folder must not overlap a folder that SQL may read or write
/// through other functions (a store's location or stage, `import_dirs`,
/// `export_dirs`): through it any account could read unfinished uploads of
/// every account, or plant files in them. `roots` are (what, folder).
pub fn check_apart(dir: &Path, roots: &[(String, &Path)]) -> Result<(), String> {
    for (what, root) in roots {
        if dir.starts_with(root) || root.starts_with(dir) {
            return Err(format!(
                "'{}' overlaps {what} ({}): SQL could reach unfinished uploads through it; give the uploads a folder of their own",
                dir.display(),
                root.display()
            ));
        }
    }
    Ok(())
}

impl Uploads {
    /// The keys for `dj_stores()`.
    pub fn json(&self, top: &mut Map<String, Value>) {
        top.insert("upload_dir".into(), self.dir.as_ref().map(|p| p.display().to_string()).into());
        top.insert("max_upload_bytes".into(), self.max_bytes.into());
        top.insert("max_open_uploads".into(), self.max_open.into());
        top.insert("upload_expiry".into(), self.expiry_secs.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Uploads, (&'static str, String)> {
        parse(serde_json::from_str::<Value>(text).unwrap().as_object().unwrap())
    }

    #[test]
    fn defaults_and_checks() {
        let u = parse_text("{}").unwrap();
        assert_eq!((u.dir, u.max_bytes, u.max_open, u.expiry_secs), (None, DEFAULT_MAX_UPLOAD, DEFAULT_MAX_OPEN, DEFAULT_EXPIRY));
        let u = parse_text(r#"{"upload_dir": "/tmp", "max_upload_bytes": 10, "max_open_uploads": 2, "upload_expiry": 60}"#).unwrap();
        assert_eq!((u.max_bytes, u.max_open, u.expiry_secs), (10, 2, 60));
        assert!(u.dir.unwrap().is_absolute());
        assert_eq!(parse_text(r#"{"max_open_uploads": 0}"#).unwrap_err().0, "max_open_uploads");
        assert_eq!(parse_text(r#"{"upload_expiry": "1h"}"#).unwrap_err().0, "upload_expiry");
        assert_eq!(parse_text(r#"{"upload_dir": "relative"}"#).unwrap_err().0, "upload_dir");
        assert_eq!(parse_text(r#"{"upload_dir": "/nonexistent/x"}"#).unwrap_err().0, "upload_dir");
        let (a, b) = (Path::new("/srv/store"), Path::new("/srv/uploads"));
        assert!(check_apart(b, &[("store 'f' location".into(), a)]).is_ok());
        assert!(check_apart(&a.join("up"), &[("store 'f' location".into(), a)]).unwrap_err().contains("overlaps store 'f' location"));
        assert!(check_apart(Path::new("/srv"), &[("export_dirs".into(), a)]).is_err());
    }
}
