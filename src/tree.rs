//! Walks a folder tree with an explicit stack and a depth cap, never by
//! recursion: a server thread has 292 KiB of stack, and anyone who can write
//! a store's folder can nest folders thousands deep.

use crate::confine::{Dir, Entry};
use crate::error::{Error, Result};
use std::ops::ControlFlow;

/// The most folders a walk descends below where it starts. DataJoint puts an
/// object at most 33 folders below its store's location (a schema folder and
/// up to 32 subfolding levels); deeper folders are not entered.
pub const MAX_DEPTH: usize = 64;

/// How many entries a walk visits between two checks for a killed statement
/// (besides one per folder entered).
const CHECK_EVERY: u64 = 4096;

/// A regular file met by [`walk`].
pub struct File<'a> {
    /// The folder it is in.
    pub dir: &'a Dir,
    /// Its path from where the walk started, with the start's own name first.
    pub path: &'a str,
    pub entry: &'a Entry,
}

/// One folder on the stack: its handle, its path and the entries not yet visited.
struct Frame {
    dir: Dir,
    path: String,
    rest: std::vec::IntoIter<Entry>,
}

/// Visits the regular files below `start` (whose path is `path`), depth
/// first in name order, until `visit` breaks. A folder is entered when
/// `enter(its path, its name)` says so and it is less than [`MAX_DEPTH`]
/// folders down; a folder that vanished meanwhile is passed over.
pub fn walk(start: Dir, path: &str, enter: &mut dyn FnMut(&str, &str) -> bool, visit: &mut dyn FnMut(File) -> Result<ControlFlow<()>>) -> Result<()> {
    let list = |dir: &Dir| dir.entries().map_err(|e| Error::io("list folder", dir.path.clone(), e));
    let rest = list(&start)?.into_iter();
    let mut stack = vec![Frame { dir: start, path: path.to_string(), rest }];
    let mut seen = 0u64;
    while !stack.is_empty() {
        let depth = stack.len();
        let top = stack.last_mut().expect("not empty");
        let Some(entry) = top.rest.next() else {
            stack.pop();
            continue;
        };
        seen += 1;
        if seen.is_multiple_of(CHECK_EVERY) {
            crate::interrupt::check(|| format!("the walk of {}", top.dir.path))?;
        }
        let child = format!("{}/{}", top.path, entry.name);
        if !entry.is_dir {
            if visit(File { dir: &top.dir, path: &child, entry: &entry })?.is_break() {
                return Ok(());
            }
            continue;
        }
        if depth > MAX_DEPTH || !enter(&child, &entry.name) {
            continue;
        }
        let dir = match top.dir.walk([entry.name.as_str()], false) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open folder", top.dir.display(&entry.name), e)),
        };
        crate::interrupt::check(|| format!("the walk of {}", dir.path))?;
        let rest = list(&dir)?.into_iter();
        stack.push(Frame { dir, path: child, rest });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::tests::tmpdir;

    fn files(root: &std::path::Path) -> Vec<String> {
        let mut seen = Vec::new();
        walk(Dir::open_root(root).unwrap(), "s", &mut |_, _| true, &mut |f| {
            seen.push(f.path.to_string());
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        seen
    }

    #[test]
    fn visits_in_key_order_and_stops_at_the_depth_cap() {
        let root = tmpdir("order");
        for p in ["b/2", "a/1", "a/z/3", "c"] {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(files(&root), ["s/a/1", "s/a/z/3", "s/b/2", "s/c"]);

        // Far deeper than any path could be spelled out: built one folder at a time.
        let deep = tmpdir("deep");
        let mut d = Dir::open_root(&deep).unwrap();
        for level in 0..3000 {
            // A file in the deepest folder a walk enters, and one a level below.
            let name = match level {
                l if l == MAX_DEPTH => "reachable",
                l if l == MAX_DEPTH + 1 => "too-deep",
                _ => "",
            };
            if !name.is_empty() {
                d.create_temp().unwrap().persist_into(&d, name).unwrap();
            }
            d = d.walk(["d"], true).unwrap();
        }
        let found = files(&deep);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("/reachable"));
    }
}
