//! Names and object keys exactly as DataJoint 0.14 lays them out in a store.
//!
//! Everything here is pure string work, so that the same keys serve the file
//! and the S3 protocol and can be unit-tested against DataJoint's own output.

use super::hash::{to_hex, Hash};
use crate::error::{Error, Result};

/// The longest attachment name a file store can hold: the object's file name
/// is `<32 hex>.<name>` and Linux file names stop at 255 bytes.
pub const MAX_FILE_STORE_NAME: usize = 255 - 33;

/// An attachment name a file store can hold: [`MAX_FILE_STORE_NAME`] bytes
/// at most, so the put fails with this message, not the file system's
/// "File name too long" after the bytes were sent.
pub fn check_file_store_name(name: &str) -> Result<()> {
    check_attachment_name(name)?;
    if name.len() > MAX_FILE_STORE_NAME {
        return Err(Error::arg(
            "attachment name",
            format!(
                "'{}' has {} bytes; a file store holds at most {MAX_FILE_STORE_NAME} (its object is named <32 hex digits>.<name>)",
                shown(name),
                name.len()
            ),
        ));
    }
    Ok(())
}

/// A store name as DataJoint accepts it: `[a-z][-\w]*`, at most 54 characters
/// so that `~external_<store>` fits MySQL's 64-character identifiers.
pub fn check_store_name(store: &str) -> Result<()> {
    let mut chars = store.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && store.len() <= 54;
    if ok {
        Ok(())
    } else {
        Err(Error::arg("store name", format!("'{}' must match [a-z][-a-z0-9_]* and have at most 54 characters", shown(store))))
    }
}

/// A schema (database) name. It becomes a folder name and is quoted into SQL
/// by the routines, so only plain identifier characters are allowed.
pub fn check_schema_name(schema: &str) -> Result<()> {
    let ok = !schema.is_empty() && schema.len() <= 64 && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::arg("schema name", format!("'{}' must be 1 to 64 characters of [A-Za-z0-9_$-]", shown(schema))))
    }
}

/// The tracking table of a store in a schema, quoted for SQL:
/// `` `<schema>`.`~external_<store>` ``. Both names are checked first, so
/// neither can hold a backtick or leave the identifier.
pub fn tracking_table(schema: &str, store: &str) -> Result<String> {
    check_schema_name(schema)?;
    check_store_name(store)?;
    Ok(format!("`{schema}`.`~external_{store}`"))
}

/// An attachment name is a base name: it becomes part of a file name in the
/// store and of a path in an export directory, so it may not name a folder.
pub fn check_attachment_name(name: &str) -> Result<()> {
    let bad = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not file names")
    } else if name.contains('/') {
        Some("it contains '/'; give the base name only")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else if name.chars().count() > 255 {
        Some("it is longer than 255 characters (the attachment_name column)")
    } else {
        None
    };
    match bad {
        Some(why) => Err(Error::arg("attachment name", format!("'{}': {why}", shown(name)))),
        None => Ok(()),
    }
}

/// A relative filepath as stored in `~external_<store>.filepath`: POSIX
/// components, none empty, `.` or `..`, so it can never climb out of a root.
pub fn check_relative_path(rel: &str) -> Result<()> {
    let bad = if rel.is_empty() {
        Some("it is empty")
    } else if rel.starts_with('/') {
        Some("it is absolute; filepaths are relative to the store")
    } else if rel.contains('\0') {
        Some("it contains a NUL byte")
    } else if rel.chars().count() > 1000 {
        Some("it is longer than 1000 characters (the filepath column)")
    } else if rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        Some("it has an empty, '.' or '..' component")
    } else {
        None
    };
    match bad {
        Some(why) => Err(Error::arg("filepath", format!("'{}': {why}", shown(rel)))),
        None => Ok(()),
    }
}

/// Subfolding as DataJoint applies it: consecutive slices of the hex name.
pub fn check_subfolding(folds: &[usize]) -> std::result::Result<(), String> {
    if folds.contains(&0) {
        return Err("every subfolding level must be at least 1".into());
    }
    if folds.iter().sum::<usize>() > 32 {
        return Err("subfolding levels add up to more than the 32 hex digits of a hash".into());
    }
    Ok(())
}

fn subfolded(schema: &str, hex: &str, folds: &[usize]) -> String {
    let mut key = String::with_capacity(schema.len() + 48);
    key.push_str(schema);
    let mut at = 0;
    for &n in folds {
        key.push('/');
        key.push_str(&hex[at..at + n]);
        at += n;
    }
    key.push('/');
    key.push_str(hex);
    key
}

/// What a tracking row points at; the key of its object follows from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Blob { schema: String, hash: Hash },
    Attach { schema: String, hash: Hash, name: String },
    Filepath { relative: String },
}

impl Object {
    /// The object's key relative to the store's location.
    pub fn key(&self, folds: &[usize]) -> String {
        match self {
            Object::Blob { schema, hash } => subfolded(schema, &to_hex(hash), folds),
            Object::Attach { schema, hash, name } => {
                // DataJoint uses PurePosixPath.with_suffix("." + name) on a
                // suffix-less hex name, which amounts to appending.
                let mut key = subfolded(schema, &to_hex(hash), folds);
                key.push('.');
                key.push_str(name);
                key
            }
            Object::Filepath { relative } => relative.clone(),
        }
    }

    /// A short description for error messages.
    pub fn describe(&self, store: &str) -> String {
        match self {
            Object::Blob { hash, .. } => format!("blob {} in store '{store}'", to_hex(hash)),
            Object::Attach { hash, name, .. } => format!("attachment '{name}' ({}) in store '{store}'", to_hex(hash)),
            Object::Filepath { relative } => format!("file '{relative}' in store '{store}'"),
        }
    }
}

/// A tracking row as `~external_<store>` holds it.
pub struct TrackingRow<'a> {
    pub schema: &'a str,
    pub hash: Hash,
    pub size: u64,
    pub attachment_name: Option<&'a str>,
    pub filepath: Option<&'a str>,
    pub contents_hash: Option<Hash>,
}

impl TrackingRow<'_> {
    /// The object the row points at, by DataJoint's rule: a filepath row has
    /// `filepath`, an attachment row has `attachment_name`, else a blob.
    pub fn object(&self) -> Result<Object> {
        Ok(match (self.filepath, self.attachment_name) {
            (Some(rel), _) => {
                check_relative_path(rel)?;
                Object::Filepath { relative: rel.into() }
            }
            (None, Some(name)) => {
                check_schema_name(self.schema)?;
                check_attachment_name(name)?;
                Object::Attach { schema: self.schema.into(), hash: self.hash, name: name.into() }
            }
            (None, None) => {
                check_schema_name(self.schema)?;
                Object::Blob { schema: self.schema.into(), hash: self.hash }
            }
        })
    }
}

/// Truncates user input quoted in messages, which must stay under 512 bytes.
pub fn shown(s: &str) -> String {
    if s.len() <= 80 {
        return s.replace('\0', "\\0");
    }
    format!("{}…", crate::text::cut(s, 80).replace('\0', "\\0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datajoint::hash;

    fn blob_hash() -> Hash {
        hash::parse(b"676de6356c1b33e8084921c02b8cdea6").unwrap()
    }

    #[test]
    fn blob_keys_with_subfolding() {
        let b = Object::Blob { schema: "mydb".into(), hash: blob_hash() };
        assert_eq!(b.key(&[2, 2]), "mydb/67/6d/676de6356c1b33e8084921c02b8cdea6");
        assert_eq!(b.key(&[1, 2, 3]), "mydb/6/76/de6/676de6356c1b33e8084921c02b8cdea6");
        assert_eq!(b.key(&[]), "mydb/676de6356c1b33e8084921c02b8cdea6");
    }

    #[test]
    fn attachment_suffix_rule() {
        let h = hash::attachment("hello.txt", b"hello world\n");
        let key = |name: &str| Object::Attach { schema: "s".into(), hash: h, name: name.into() }.key(&[2, 2]);
        assert_eq!(key("hello.txt"), "s/b2/fd/b2fd972284848b26f19727fc49a93a85.hello.txt");
        assert_eq!(key("data.tar.gz"), "s/b2/fd/b2fd972284848b26f19727fc49a93a85.data.tar.gz");
        assert_eq!(key(".hidden"), "s/b2/fd/b2fd972284848b26f19727fc49a93a85..hidden");
        assert_eq!(key("my scan 1.png"), "s/b2/fd/b2fd972284848b26f19727fc49a93a85.my scan 1.png");
        assert_eq!(key("Ströme.ü"), "s/b2/fd/b2fd972284848b26f19727fc49a93a85.Ströme.ü");
    }

    #[test]
    fn filepath_key_is_the_relative_path() {
        let f = Object::Filepath { relative: "sub/dir/file.dat".into() };
        assert_eq!(f.key(&[2, 2]), "sub/dir/file.dat");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_store_name("localattach").is_ok());
        assert!(check_store_name("Raw-data_2").is_ok());
        for bad in ["", "2abc", "a/b", "a b", "a.b", &"x".repeat(55)] {
            assert!(check_store_name(bad).is_err(), "{bad}");
        }
        assert!(check_schema_name("my_db").is_ok());
        for bad in ["", "a/b", "..", "a`b", "a b", &"x".repeat(65)] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
        for good in ["a.tar.gz", ".hidden", "with space", "Ströme", "it's \"quoted\""] {
            assert!(check_attachment_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "/etc/passwd", "a\0b", &"x".repeat(256)] {
            assert!(check_attachment_name(bad).is_err(), "{bad}");
        }
        for good in ["f.dat", "sub/dir/file.dat", "a..b/c"] {
            assert!(check_relative_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "../x", "a/../b", "a//b", "./a", "a/", "a\0"] {
            assert!(check_relative_path(bad).is_err(), "{bad}");
        }
    }

    /// Each limit at its boundary, and every character class the checks allow.
    #[test]
    fn limits_hold_exactly_at_their_boundaries() {
        for good in ["a$b", "a-b", "A_9"] {
            assert!(check_schema_name(good).is_ok(), "{good}");
        }
        assert!(check_schema_name(&"x".repeat(64)).is_ok());
        assert_eq!(tracking_table("lab", "main").unwrap(), "`lab`.`~external_main`");
        assert!(tracking_table("a`b", "main").is_err() && tracking_table("lab", "a`b").is_err());
        assert!(check_attachment_name(&"é".repeat(255)).is_ok(), "255 characters, more bytes");
        assert!(check_attachment_name(&"x".repeat(255)).is_ok());
        assert!(check_relative_path(&"x".repeat(1000)).is_ok());
        assert!(check_relative_path(&"x".repeat(1001)).is_err());
        assert!(check_subfolding(&[16, 16]).is_ok());
        assert!(check_subfolding(&[16, 17]).is_err());
        assert_eq!(MAX_FILE_STORE_NAME, 222);
        assert!(check_file_store_name(&"x".repeat(222)).is_ok());
        let long = check_file_store_name(&"x".repeat(223)).unwrap_err().to_string();
        assert!(long.contains("has 223 bytes; a file store holds at most 222"), "{long}");
        assert!(check_file_store_name(&"é".repeat(112)).is_err(), "bytes count, not characters");
    }

    #[test]
    fn objects_describe_themselves_for_messages() {
        let h = blob_hash();
        assert_eq!(Object::Blob { schema: "s".into(), hash: h }.describe("main"), "blob 676de6356c1b33e8084921c02b8cdea6 in store 'main'");
        assert_eq!(
            Object::Attach { schema: "s".into(), hash: h, name: "a.txt".into() }.describe("att"),
            "attachment 'a.txt' (676de6356c1b33e8084921c02b8cdea6) in store 'att'"
        );
        assert_eq!(Object::Filepath { relative: "d/f.dat".into() }.describe("data"), "file 'd/f.dat' in store 'data'");
    }

    #[test]
    fn tracking_rows_name_their_object_by_datajoint_rule() {
        let row = |attachment_name, filepath| TrackingRow { schema: "s", hash: blob_hash(), size: 1, attachment_name, filepath, contents_hash: None };
        assert_eq!(row(None, None).object().unwrap(), Object::Blob { schema: "s".into(), hash: blob_hash() });
        assert_eq!(row(Some("a.txt"), None).object().unwrap(), Object::Attach { schema: "s".into(), hash: blob_hash(), name: "a.txt".into() });
        assert_eq!(row(Some("a.txt"), Some("d/f.dat")).object().unwrap(), Object::Filepath { relative: "d/f.dat".into() });
        assert!(row(Some("../x"), None).object().is_err());
        assert!(row(None, Some("/abs")).object().is_err());
        assert!(TrackingRow { schema: "a/b", ..row(None, None) }.object().is_err());
    }

    #[test]
    fn subfolding_is_checked() {
        assert!(check_subfolding(&[2, 2]).is_ok());
        assert!(check_subfolding(&[]).is_ok());
        assert!(check_subfolding(&[0]).is_err());
        assert!(check_subfolding(&[30, 3]).is_err());
    }
}
