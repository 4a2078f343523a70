//! The first pass over a server file about to be uploaded: everything the
//! upload needs, from one read. The object's key hash (DataJoint's, which
//! names the object) and the MD5 of every part (each part's `Content-MD5`;
//! one part for an object sent in a single `PUT`) are two different MD5s of
//! the same bytes; for large files a second thread computes the part
//! digests while the calling thread reads and computes the key hash.

use super::upload::{PART_SIZE, SINGLE_PUT_MAX};
use crate::datajoint::hash::{Hash, Hasher};
use crate::store::pump::CHUNK;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Buffers in flight between the reader and the part hasher (1 MiB each).
const BUFFERS: usize = 3;

/// What the first pass learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Survey {
    /// The key hash.
    pub hash: Hash,
    pub size: u64,
    /// The MD5 of each [`PART_SIZE`] slice, the last one shorter.
    pub parts: Vec<[u8; 16]>,
}

impl Survey {
    /// The offset and length of part `i`.
    pub fn part(&self, i: usize) -> (u64, u64) {
        let at = i as u64 * PART_SIZE as u64;
        (at, (self.size - at).min(PART_SIZE as u64))
    }
}

/// MD5s of consecutive [`PART_SIZE`] slices of a stream fed in pieces.
#[derive(Default)]
struct PartDigests {
    current: Hasher,
    in_current: usize,
    done: Vec<[u8; 16]>,
}

impl PartDigests {
    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = data.len().min(PART_SIZE - self.in_current);
            self.current.update(&data[..take]);
            self.in_current += take;
            data = &data[take..];
            if self.in_current == PART_SIZE {
                self.done.push(std::mem::take(&mut self.current).finish());
                self.in_current = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<[u8; 16]> {
        if self.in_current > 0 || self.done.is_empty() {
            self.done.push(self.current.finish());
        }
        self.done
    }
}

/// Reads `src` to its end. `size_hint` (the file's size when known) decides
/// whether a second thread is worth starting: only for multipart objects.
pub(super) fn survey(src: &mut dyn Read, hasher: Hasher, size_hint: Option<u64>) -> io::Result<Survey> {
    if size_hint.is_some_and(|n| n > SINGLE_PUT_MAX as u64) {
        side_by_side(src, hasher)
    } else {
        one_thread(src, hasher)
    }
}

fn read_some(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn one_thread(src: &mut dyn Read, mut hasher: Hasher) -> io::Result<Survey> {
    let mut buf = vec![0u8; CHUNK];
    let (mut parts, mut size) = (PartDigests::default(), 0u64);
    loop {
        let n = read_some(src, &mut buf)?;
        if n == 0 {
            return Ok(Survey { hash: hasher.finish(), size, parts: parts.finish() });
        }
        hasher.update(&buf[..n]);
        parts.update(&buf[..n]);
        size += n as u64;
    }
}

/// The calling thread reads and computes the key hash; a scoped thread
/// computes the part digests of the same buffers, handed over and back
/// through two channels, so at most [`BUFFERS`] MiB are in use.
fn side_by_side(src: &mut dyn Read, mut hasher: Hasher) -> io::Result<Survey> {
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        empty_tx.send(vec![0u8; CHUNK]).expect("room for every buffer");
    }
    crate::ffi::threads::scope(|s| {
        let helper = s.spawn("dj_udf hash", move || part_digests(full_rx, empty_tx));
        let Ok(helper) = helper else {
            // No thread to be had: do both digests here.
            return one_thread(src, hasher);
        };
        let mut size = 0u64;
        let read = (|| loop {
            let Ok(mut buf) = empty_rx.recv() else { return Err(io::Error::other("the part hasher stopped")) };
            let n = read_some(src, &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            if full_tx.send((buf, n)).is_err() {
                return Err(io::Error::other("the part hasher stopped"));
            }
        })();
        // Ends the helper's loop, whether all was read or not.
        drop(full_tx);
        let parts = helper.join().ok_or_else(|| io::Error::other("the part hasher failed"))?;
        read?;
        Ok(Survey { hash: hasher.finish(), size, parts })
    })
}

fn part_digests(full: Receiver<(Vec<u8>, usize)>, empty: SyncSender<Vec<u8>>) -> Vec<[u8; 16]> {
    let mut parts = PartDigests::default();
    for (buf, n) in full {
        parts.update(&buf[..n]);
        // The reader may have stopped; then the buffer is just dropped.
        let _ = empty.send(buf);
    }
    parts.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    // An MD5 of its own, apart from the code under test.
    use md5::{Digest, Md5};

    fn expected(data: &[u8], name: &str) -> Survey {
        let parts = if data.is_empty() { vec![Md5::digest(b"").into()] } else { data.chunks(PART_SIZE).map(|c| Md5::digest(c).into()).collect() };
        Survey { hash: crate::datajoint::hash::attachment(name, data), size: data.len() as u64, parts }
    }

    /// A reader that hands out odd-sized pieces, as pipes and sockets do.
    struct Ragged<'a>(&'a [u8], usize);

    impl Read for Ragged<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 += 1;
            let n = buf.len().min(self.0.len()).min(1 + (self.1 * 7919) % (3 << 20));
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn both_ways_give_the_key_hash_and_every_part_digest() {
        let big: Vec<u8> = (0..2 * PART_SIZE + 12345).map(|i| (i % 253) as u8).collect();
        for data in [&b""[..], b"hello world\n", &big[..PART_SIZE], &big] {
            let want = expected(data, "a.bin");
            for hint in [None, Some(data.len() as u64), Some(u64::MAX)] {
                let got = survey(&mut Ragged(data, 0), Hasher::for_attachment("a.bin"), hint).unwrap();
                assert_eq!(got, want, "{} bytes, hint {hint:?}", data.len());
            }
        }
        let s = expected(&big, "x");
        assert_eq!(s.part(0), (0, PART_SIZE as u64));
        assert_eq!(s.part(2), (2 * PART_SIZE as u64, 12345));
    }

    #[test]
    fn a_read_error_is_reported_and_the_helper_joined() {
        struct Fails(usize);
        impl Read for Fails {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                self.0 -= 1;
                buf.fill(1);
                Ok(buf.len())
            }
        }
        let e = survey(&mut Fails(20), Hasher::default(), Some(1 << 30)).unwrap_err();
        assert_eq!(e.to_string(), "disk gone");
    }
}
