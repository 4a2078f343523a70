//! Moves a transfer's bytes while a second core hashes them, so that a
//! verified copy runs at the speed of MD5 alone, not of MD5 plus the copy.
//!
//! The calling (server) thread reads and hands each chunk to its sink (a
//! file being written, a growing buffer, nothing); one scoped worker hashes
//! the same chunks in order. The worker starts only once a source has
//! filled more than one chunk, so small objects cost no thread; it runs
//! inside `catch_unwind`, is joined before [`pump`] returns (on every path),
//! and at most [`IN_FLIGHT`] chunks of [`CHUNK`] bytes exist per transfer.
//! Where a thread cannot be started, the caller's thread hashes instead.

use crate::datajoint::hash::Hasher;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// One read's buffer: large enough that the hand-over costs under 1% of
/// hashing it, small enough that it stays in cache between the copy and
/// the hash.
pub const CHUNK: usize = 256 << 10;

/// Chunks per transfer, the memory bound: 1 MiB.
pub const IN_FLIGHT: usize = 4;

/// Why a transfer stopped.
#[derive(Debug)]
pub enum Failure<E> {
    Read(io::Error),
    Sink(E),
    /// The hashing worker panicked; it never happens unless there is a bug.
    Hashing,
}

/// Feeds everything `src` yields to `sink` and to `hasher`, in order, and
/// returns the byte count. On failure `hasher` holds no meaningful state.
pub fn pump<E>(src: &mut dyn Read, hasher: &mut Hasher, sink: &mut dyn FnMut(&[u8]) -> Result<(), E>) -> Result<u64, Failure<E>> {
    let mut buf = vec![0u8; CHUNK];
    let first = fill(src, &mut buf).map_err(Failure::Read)?;
    if first == 0 {
        return Ok(0);
    }
    sink(&buf[..first]).map_err(Failure::Sink)?;
    hasher.update(&buf[..first]);
    if first < CHUNK {
        return Ok(first as u64);
    }
    let second = fill(src, &mut buf).map_err(Failure::Read)?;
    if second == 0 {
        return Ok(first as u64);
    }
    sink(&buf[..second]).map_err(Failure::Sink)?;
    let rest = crate::ffi::threads::scope(|s| {
        let (to_worker, work) = sync_channel::<(Vec<u8>, usize)>(IN_FLIGHT);
        let (give_back, returned) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (hand_over, take_hasher) = sync_channel::<Hasher>(1);
        let spawned = s.spawn("dj_udf md5", move || hash_chunks(take_hasher, work, give_back));
        let Ok(worker) = spawned else {
            // No thread to be had (a process limit): hash here.
            hasher.update(&buf[..second]);
            return copy_inline(src, hasher, sink, buf);
        };
        let moved = std::mem::take(hasher);
        hand_over.send(moved).map_err(|_| Failure::Hashing)?;
        to_worker.send((buf, second)).map_err(|_| Failure::Hashing)?;
        let sent = feed(src, sink, &to_worker, &returned);
        // Closing the queue ends the worker, which hands the hasher back.
        drop(to_worker);
        let back = worker.join().flatten();
        let n = sent?;
        *hasher = back.ok_or(Failure::Hashing)?;
        Ok(n)
    })?;
    Ok(first as u64 + second as u64 + rest)
}

/// The calling thread's side: reads into free chunks, sinks them and
/// queues them for hashing; returns the bytes read after the first two chunks.
fn feed<E>(
    src: &mut dyn Read,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    to_worker: &SyncSender<(Vec<u8>, usize)>,
    returned: &Receiver<Vec<u8>>,
) -> Result<u64, Failure<E>> {
    // One chunk is already queued.
    let mut allocated = 1;
    let mut total = 0u64;
    loop {
        let mut buf = if allocated < IN_FLIGHT {
            allocated += 1;
            vec![0u8; CHUNK]
        } else {
            returned.recv().map_err(|_| Failure::Hashing)?
        };
        let n = fill(src, &mut buf).map_err(Failure::Read)?;
        if n == 0 {
            return Ok(total);
        }
        sink(&buf[..n]).map_err(Failure::Sink)?;
        to_worker.send((buf, n)).map_err(|_| Failure::Hashing)?;
        total += n as u64;
    }
}

/// The worker: hashes queued chunks until the queue closes, returning each
/// chunk for reuse, then gives the hasher back.
fn hash_chunks(take_hasher: Receiver<Hasher>, work: Receiver<(Vec<u8>, usize)>, give_back: SyncSender<Vec<u8>>) -> Option<Hasher> {
    let mut hasher = take_hasher.recv().ok()?;
    for (buf, n) in work {
        hasher.update(&buf[..n]);
        // The feeder may have stopped on an error; the chunk is then freed here.
        let _ = give_back.send(buf);
    }
    Some(hasher)
}

/// Everything on the calling thread, for when no worker could be started.
fn copy_inline<E>(
    src: &mut dyn Read,
    hasher: &mut Hasher,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    mut buf: Vec<u8>,
) -> Result<u64, Failure<E>> {
    let mut total = 0u64;
    loop {
        let n = fill(src, &mut buf).map_err(Failure::Read)?;
        if n == 0 {
            return Ok(total);
        }
        sink(&buf[..n]).map_err(Failure::Sink)?;
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// Reads until `buf` is full or the source ends (a network body comes in
/// small reads: whole chunks keep hand-overs few and tell a small object
/// by its first chunk); returns the bytes read, short only at the end.
/// Every read starts here, on the calling thread (the only one that can ask
/// the server), so a killed statement stops between chunks.
fn fill(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    crate::interrupt::check_io()?;
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datajoint::hash;

    /// Yields `data` in reads of at most `step` bytes, then an error if `fail`.
    struct Slow<'a> {
        data: &'a [u8],
        step: usize,
        fail: bool,
    }

    impl Read for Slow<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() && self.fail {
                return Err(io::Error::other("disk gone"));
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len as u64).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect()
    }

    #[test]
    fn copies_and_hashes_every_size_in_order() {
        for len in [0, 1, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, IN_FLIGHT * CHUNK + 12345, 11 * CHUNK + 7] {
            for step in [CHUNK, 100_000, 4096] {
                let src = data(len);
                let mut out = Vec::new();
                let mut h = Hasher::for_attachment("a.bin");
                let n = pump(&mut Slow { data: &src, step, fail: false }, &mut h, &mut |b: &[u8]| -> Result<(), ()> {
                    out.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
                assert_eq!(n, len as u64);
                assert!(out == src, "len {len} step {step}");
                assert_eq!(h.finish(), hash::attachment("a.bin", &src), "len {len} step {step}");
            }
        }
    }

    #[test]
    fn a_failing_source_or_sink_stops_the_transfer_and_the_worker() {
        let src = data(10 * CHUNK);
        let mut h = Hasher::default();
        let r = pump(&mut Slow { data: &src, step: CHUNK, fail: true }, &mut h, &mut |_: &[u8]| -> Result<(), ()> { Ok(()) });
        assert!(matches!(r, Err(Failure::Read(e)) if e.to_string() == "disk gone"));
        let mut seen = 0;
        let r = pump(&mut Slow { data: &src, step: CHUNK, fail: false }, &mut h, &mut |b: &[u8]| {
            seen += b.len();
            if seen > 5 * CHUNK {
                Err("disk full")
            } else {
                Ok(())
            }
        });
        assert!(matches!(r, Err(Failure::Sink("disk full"))));
        assert_eq!(seen, 6 * CHUNK, "nothing is sunk after the failure");
    }
}
