//! Work on many items at once inside one call: scoped worker threads that
//! are all joined before the call returns, each item run under
//! `catch_unwind`.
//!
//! The server may unload the library as soon as its last function is
//! dropped, and a thread still running then would crash it; a panic that
//! escapes a thread would abort it. So no thread here outlives
//! [`map`], a panic becomes that item's error, and the number of threads is
//! bounded by the caller (a store's `max_parallel`). With one worker, or one
//! item, no thread is started at all.

use crate::error::{Error, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The most threads one call may use, whatever the config says.
pub const MAX_WORKERS: usize = 64;

/// Runs `f` on every item with up to `workers` items in progress at once
/// (the calling thread is one of them) and returns the results in the
/// order of `items`. Returns only when every item has finished or failed.
/// Once the statement is killed, items not yet started fail instead of
/// running.
pub fn map<T, R, F>(items: &[T], workers: usize, f: F) -> Vec<Result<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    run(items, workers, false, f)
}

/// As [`map`], for items that are worth nothing unless all succeed (the
/// parts of one upload): after the first failure no further item starts,
/// and that failure is the answer, with the index of its item.
pub fn all_or_none<T, R, F>(items: &[T], workers: usize, f: F) -> std::result::Result<Vec<R>, (usize, Error)>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    let first = Mutex::new(None);
    let indices: Vec<usize> = (0..items.len()).collect();
    let out = run(&indices, workers, true, |&i| {
        f(&items[i]).inspect_err(|_| {
            first.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(i);
        })
    });
    let first = first.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut values = Vec::with_capacity(out.len());
    let mut skipped = None;
    for (i, r) in out.into_iter().enumerate() {
        match r {
            Ok(v) => values.push(v),
            Err(e) if Some(i) == first => return Err((i, e)),
            Err(e) => skipped = skipped.or(Some((i, e))),
        }
    }
    match skipped {
        Some(failure) => Err(failure),
        None => Ok(values),
    }
}

fn run<T, R, F>(items: &[T], workers: usize, stop_on_failure: bool, f: F) -> Vec<Result<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    let workers = workers.clamp(1, MAX_WORKERS).min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    // Worker bodies: take the next item until none is left.
    let work = |caller: bool| loop {
        // Only the calling thread belongs to the statement's connection, so
        // only it can see a kill; it tells the others through `stop`.
        if caller && crate::ffi::server::killed() {
            stop.store(true, Ordering::Relaxed);
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = items.get(i) else { return };
        let r = if failed.load(Ordering::Relaxed) {
            Err(Error::Stopped { why: "another part of the same transfer failed".into() })
        } else if stop.load(Ordering::Relaxed) {
            Err(Error::Stopped { why: "the statement was killed before this object's turn".into() })
        } else {
            guarded(|| f(item))
        };
        if stop_on_failure && r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    };
    if workers == 1 {
        work(true);
    } else {
        crate::ffi::threads::scope(|s| {
            for _ in 1..workers {
                // A thread that cannot start leaves its share to the others.
                let _ = s.spawn("dj_udf worker", || work(false));
            }
            work(true);
        });
    }
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(|| Err(Error::Stopped { why: "not run".into() })))
        .collect()
}

/// Runs `f`, turning a panic into an error.
pub fn guarded<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
        Err(Error::Stopped { why: format!("internal error (a bug, please report it): {what}") })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_keep_their_order_and_failures_stay_per_item() {
        let items: Vec<u32> = (0..100).collect();
        let out = map(&items, 8, |&i| {
            std::thread::sleep(Duration::from_micros(((i * 37) % 11) as u64 * 100));
            if i == 42 {
                panic!("item {i} broke");
            }
            if i % 10 == 3 {
                return Err(Error::Denied { msg: format!("no {i}") });
            }
            Ok(i * 2)
        });
        assert_eq!(out.len(), 100);
        for (i, r) in out.iter().enumerate() {
            match (i, r) {
                (42, Err(e)) => assert!(e.to_string().contains("item 42 broke"), "{e}"),
                (i, Err(e)) if i % 10 == 3 => assert_eq!(e.to_string(), format!("no {i}")),
                (i, Ok(v)) => assert_eq!(*v, i as u32 * 2),
                (i, r) => panic!("{i}: {:?}", r.as_ref().err()),
            }
        }
    }

    #[test]
    fn at_most_the_given_number_at_once_and_no_thread_for_one() {
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items = vec![(); 40];
        let caller = std::thread::current().id();
        let out = map(&items, 3, |_| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
        assert!(out.iter().all(|r| r.is_ok()));
        assert!(most.load(Ordering::SeqCst) <= 3 && most.load(Ordering::SeqCst) >= 2, "{most:?}");
        let stopped = all_or_none(&items, 3, |_| {
            let n = now.fetch_add(1, Ordering::SeqCst);
            if n == 5 {
                return Err(Error::Denied { msg: "fifth".into() });
            }
            Ok(())
        });
        assert_eq!(stopped.unwrap_err().1.to_string(), "fifth");
        assert!(now.load(Ordering::SeqCst) < 12, "items after a failure do not start");
        let threads = map(&items, 1, |_| Ok(std::thread::current().id()));
        assert!(threads.iter().all(|t| *t.as_ref().unwrap() == caller));
        let one = map(&[()], 8, |_| Ok(std::thread::current().id()));
        assert_eq!(*one[0].as_ref().unwrap(), caller);
        assert!(map(&Vec::<u8>::new(), 8, |_| Ok(())).is_empty());
    }
}
