//! Every store as [`open`](super::open) hands it out: the protocol's store
//! wrapped so that each object put, read or deleted is counted for its
//! store (objects, bytes, latency; see [`crate::stats`]) and listed among
//! the running transfers while its bytes move.
//!
//! An object read counts once its stream reaches its end (a read abandoned
//! before is not an object read), under the operation of the calling
//! function (verify, export or plain read). Failures are not counted here
//! but where a call's error ends (the UDF dispatch and the batch results),
//! so that each is counted once.

use super::{Listed, ObjectStore, Reading, Source};
use crate::datajoint::hash::{Hash, Hasher};
use crate::error::Result;
use crate::stats::counters::{Answer, Op, StoreCounters};
use crate::stats::transfers::Transfer;
use crate::stats::{self, context};
use std::io::{self, Read, Seek, SeekFrom};
use std::time::Instant;

pub struct Counted {
    inner: Box<dyn ObjectStore>,
    name: String,
    counters: &'static StoreCounters,
}

impl Counted {
    pub fn new(name: &str, inner: Box<dyn ObjectStore>) -> Self {
        Counted { inner, name: name.to_string(), counters: stats::counters(stats::slot_of(name)) }
    }

    /// Runs a put listed as a transfer and counts it when it succeeds.
    fn put_counted<T>(&self, key: &str, total: Option<u64>, bytes: impl Fn(&T) -> u64, put: impl FnOnce(&Transfer) -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let transfer = Transfer::start(Op::Put, &self.name, key, total);
        let out = put(&transfer)?;
        self.counters.done(Op::Put, bytes(&out), started.elapsed());
        Ok(out)
    }
}

/// What this thread's reads are for.
fn read_op() -> Op {
    context::current().and_then(|c| c.reads_as).unwrap_or(Op::Read)
}

/// A stream that reports its bytes to its transfer.
struct Reported<'t, R> {
    inner: R,
    transfer: &'t Transfer,
}

impl<R: Read> Read for Reported<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transfer.add(n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Reported<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

impl Source for Reported<'_, &mut dyn Source> {
    fn file(&self) -> Option<&std::fs::File> {
        self.inner.file()
    }
}

/// An object being read: listed while it is open, counted at its end.
struct CountedRead {
    inner: Box<dyn Read>,
    transfer: Transfer,
    counters: &'static StoreCounters,
    op: Op,
    bytes: u64,
    started: Instant,
    ended: bool,
}

impl Read for CountedRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.ended {
            self.ended = true;
            self.counters.done(self.op, self.bytes, self.started.elapsed());
        }
        self.bytes += n as u64;
        self.transfer.add(n as u64);
        Ok(n)
    }
}

impl ObjectStore for Counted {
    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.inner.size(key)
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read>> {
        Ok(self.open_sized(key)?.0)
    }

    fn open_sized(&self, key: &str) -> Result<Reading> {
        let (started, op) = (Instant::now(), read_op());
        // Listed from the request on: a slow server shows before its answer does.
        let transfer = Transfer::start(op, &self.name, key, None);
        let (inner, size) = self.inner.open_sized(key)?;
        if let Some(n) = size {
            transfer.total(n);
        }
        Ok((Box::new(CountedRead { inner, transfer, counters: self.counters, op, bytes: 0, started, ended: false }), size))
    }

    fn put(&self, key: &str, src: &mut dyn Read, hasher: Hasher, expect: Option<Hash>, meta: &[(&str, &str)]) -> Result<(Hash, u64)> {
        self.put_counted(
            key,
            None,
            |r: &(Hash, u64)| r.1,
            |t| {
                let mut src = Reported { inner: src, transfer: t };
                self.inner.put(key, &mut src, hasher, expect, meta)
            },
        )
    }

    fn put_once(&self, key: &str, data: &[u8], hasher: Hasher, hash: Hash) -> Result<()> {
        let n = data.len() as u64;
        self.put_counted(
            key,
            Some(n),
            |_| n,
            |t| {
                self.inner.put_once(key, data, hasher, hash)?;
                t.add(n);
                Ok(())
            },
        )
    }

    fn put_by_hash(&self, scope: &str, src: &mut dyn Source, hasher: Hasher, key_of: &dyn Fn(&Hash) -> String) -> Result<(Hash, u64, bool)> {
        let at = src.stream_position().unwrap_or(0);
        let total = src.file().and_then(|f| f.metadata().ok()).map(|m| m.len().saturating_sub(at));
        // The key is known only once the source is hashed: its folder stands for it.
        self.put_counted(
            &format!("{scope}/…"),
            total,
            |r: &(Hash, u64, bool)| r.1,
            |t| {
                let mut src = Reported { inner: src, transfer: t };
                self.inner.put_by_hash(scope, &mut src, hasher, key_of)
            },
        )
    }

    fn list(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<Listed>> {
        self.inner.list(prefix, after, limit)
    }

    fn delete(&self, key: &str) -> Result<bool> {
        let started = Instant::now();
        let gone = self.inner.delete(key)?;
        if gone {
            self.counters.done(Op::Delete, 0, started.elapsed());
        }
        Ok(gone)
    }

    fn remove_leftovers(&self, min_age: u64) -> Result<u64> {
        self.inner.remove_leftovers(min_age)
    }

    /// Each object deleted counts with the time per object of the whole batch.
    fn delete_many(&self, keys: &[String], workers: usize) -> Vec<Result<bool>> {
        let started = Instant::now();
        let out = self.inner.delete_many(keys, workers);
        let each = started.elapsed() / (keys.len().max(1) as u32);
        for _ in out.iter().filter(|r| matches!(r, Ok(true))) {
            self.counters.done(Op::Delete, 0, each);
        }
        out
    }

    fn describe(&self, key: &str) -> String {
        self.inner.describe(key)
    }

    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
}

/// How an S3 request ended, as its counters see it: an answer's status
/// class, or no answer at all.
pub trait Outcome {
    fn answer(&self) -> Answer;
}

impl Outcome for ureq::http::Response<ureq::Body> {
    fn answer(&self) -> Answer {
        Answer::of_status(self.status().as_u16())
    }
}

impl Outcome for crate::error::Error {
    fn answer(&self) -> Answer {
        Answer::NoAnswer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that stores nothing, to time what the wrapper adds.
    struct Nothing;

    impl ObjectStore for Nothing {
        fn size(&self, _: &str) -> Result<Option<u64>> {
            Ok(None)
        }
        fn open(&self, _: &str) -> Result<Box<dyn Read>> {
            Ok(Box::new(io::empty()))
        }
        fn put(&self, _: &str, _: &mut dyn Read, h: Hasher, _: Option<Hash>, _: &[(&str, &str)]) -> Result<(Hash, u64)> {
            Ok((h.finish(), 0))
        }
        fn put_once(&self, _: &str, _: &[u8], _: Hasher, _: Hash) -> Result<()> {
            Ok(())
        }
        fn put_by_hash(&self, _: &str, _: &mut dyn Source, h: Hasher, _: &dyn Fn(&Hash) -> String) -> Result<(Hash, u64, bool)> {
            Ok((h.finish(), 0, false))
        }
        fn list(&self, _: &str, _: &str, _: usize) -> Result<Vec<Listed>> {
            Ok(Vec::new())
        }
        fn delete(&self, _: &str) -> Result<bool> {
            Ok(false)
        }
        fn remove_leftovers(&self, _: u64) -> Result<u64> {
            Ok(0)
        }
        fn describe(&self, key: &str) -> String {
            key.to_string()
        }
        fn local_path(&self, _: &str) -> Option<std::path::PathBuf> {
            None
        }
    }

    /// What counting adds to one put, as the UDF dispatch and the store
    /// layer do it (the call's context, the store's counters, the transfer
    /// slot, two clock reads): `cargo test --release -- --ignored --nocapture counting_costs`.
    #[test]
    #[ignore]
    fn counting_costs() {
        let key = "schema/ab/cd/0123456789abcdef0123456789abcdef.attachment.bin";
        let data = [0u8; 4096];
        let n = 1_000_000u32;
        let time = |st: &dyn ObjectStore, counted: bool| {
            let started = Instant::now();
            for _ in 0..n {
                let call = counted.then(|| context::Call {
                    function: "dj_attach_put",
                    reads_as: None,
                    store: Some(stats::slot_of("bench-store")),
                    connection: crate::ffi::server::connection_id(),
                });
                let _call = context::enter(call);
                st.put_once(std::hint::black_box(key), &data, Hasher::default(), [0; 16]).unwrap();
            }
            started.elapsed().as_nanos() as f64 / f64::from(n)
        };
        let (bare, counted) = (time(&Nothing, false), time(&Counted::new("bench-store", Box::new(Nothing)), true));
        println!("a put costs {bare:.0} ns bare and {counted:.0} ns counted: counting adds {:.0} ns", counted - bare);
    }
    use crate::config::Config;
    use crate::confine::tests::tmpdir;
    use crate::datajoint::hash;
    use std::path::Path;

    #[test]
    fn puts_reads_and_deletes_are_counted_and_listed() {
        let loc = tmpdir("counted");
        let text = format!(r#"{{"stores": {{"counted-test": {{"protocol": "file", "location": "{}"}}}}}}"#, loc.display());
        let cfg = Config::parse(Path::new("/etc/t.json"), &text).unwrap();
        let st = super::super::open(cfg.store("counted-test").unwrap()).unwrap();
        let counters = stats::counters(stats::slot_of("counted-test"));
        let shown = || {
            let mut m = serde_json::Map::new();
            counters.to_json(&mut m);
            m
        };
        let data = b"some bytes".to_vec();
        st.put_once("k/obj", &data, Hasher::default(), hash::digest(b"", &data)).unwrap();
        let mut src = data.as_slice();
        st.put("k/two", &mut src, Hasher::default(), None, &[]).unwrap();
        assert_eq!((shown()["objects_put"].as_u64(), shown()["bytes_put"].as_u64()), (Some(2), Some(20)));

        let _verifying = context::enter(Some(context::Call { function: "dj_verify", reads_as: Some(Op::Verify), store: None, connection: None }));
        let mut r = st.open("k/obj").unwrap();
        let listed = stats::transfers::list().into_iter().filter(|t| t["store"] == "counted-test").collect::<Vec<_>>();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0]["op"].as_str(), listed[0]["function"].as_str()), (Some("verify"), Some("dj_verify")));
        assert_eq!(listed[0]["bytes_total"], 10);
        assert_eq!(shown()["objects_verify"], 0, "counted at its end");
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        drop(r);
        assert_eq!((shown()["objects_verify"].as_u64(), shown()["bytes_verify"].as_u64()), (Some(1), Some(10)));
        assert!(stats::transfers::list().iter().all(|t| t["store"] != "counted-test"));

        assert!(st.delete("k/obj").unwrap());
        assert!(!st.delete("k/obj").unwrap());
        assert_eq!(shown()["objects_delete"], 1, "only what was there");
        assert!(st.open("k/obj").is_err());
        assert!(stats::transfers::list().iter().all(|t| t["store"] != "counted-test"), "a failed open is not left listed");
    }
}
