//! The worker pool: a persistent rayon pool sized by `set_num_threads` /
//! `CONVRS_NUM_THREADS`, rebuilt lazily after a `fork()` (the child inherits the pool's
//! bookkeeping but none of its threads) or after the size changes.
//!
//! Work is split into independent tasks that each own a disjoint part of the output, and
//! each task reduces in a fixed order, so results are bit-identical for any thread count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{ConvError, Result};

/// Upper bound accepted by `set_num_threads`; far above any sane machine, low enough that
/// a typo cannot ask the OS for millions of threads.
pub const MAX_THREADS: usize = 1024;

/// 0 until first read; then the thread count each call may use.
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

struct Pool {
    pid: u32,
    threads: usize,
    pool: Arc<rayon::ThreadPool>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// Parse `CONVRS_NUM_THREADS`; `None` when unset or empty.
pub fn threads_from_env() -> Result<Option<usize>> {
    match std::env::var("CONVRS_NUM_THREADS") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(Some(n)),
            _ => Err(ConvError::Value(format!(
                "CONVRS_NUM_THREADS must be an integer between 1 and {MAX_THREADS}; got {v:?}"
            ))),
        },
        Err(_) => Ok(None),
    }
}

fn default_threads() -> usize {
    threads_from_env()
        .ok()
        .flatten()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, MAX_THREADS)
}

pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = default_threads();
            // Another thread may race us here; both store the same default.
            NUM_THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

pub fn set_num_threads(n: i64) -> Result<()> {
    if n < 1 || n as u64 > MAX_THREADS as u64 {
        return Err(ConvError::Value(format!(
            "n must be an integer between 1 and {MAX_THREADS}; got {n}"
        )));
    }
    NUM_THREADS.store(n as usize, Ordering::Relaxed);
    Ok(())
}

/// Makes `fork()` wait until no thread holds `POOL`. Without it, a fork while another
/// thread is (re)building the pool leaves the child a `POOL` locked by a thread that does
/// not exist there, and the child's first multi-threaded call blocks forever.
#[cfg(unix)]
mod fork_guard {
    use std::cell::RefCell;
    use std::sync::{MutexGuard, Once};

    use super::{Pool, POOL};

    thread_local! {
        /// The lock taken by `prepare`, on the forking thread (and its copy in the child).
        static HELD: RefCell<Option<MutexGuard<'static, Option<Pool>>>> =
            const { RefCell::new(None) };
    }

    extern "C" fn prepare() {
        let guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
        HELD.with(|h| *h.borrow_mut() = Some(guard));
    }

    extern "C" fn release() {
        HELD.with(|h| drop(h.borrow_mut().take()));
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: the handlers are functions of this library, which stays loaded for
            // the life of the process; they only lock and unlock `POOL`, and `prepare` runs
            // on a thread that cannot hold it (callers of `pool` never fork inside it).
            unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
        });
    }
}

/// A pool of at least `threads` workers, created on first use, again after `fork()`, and
/// grown (never shrunk) when a call needs more workers than it has: calls that use fewer
/// threads share it, so alternating thread counts never rebuild it.
fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    #[cfg(unix)]
    fork_guard::install();
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = slot.as_ref() {
        if p.pid == pid && p.threads >= threads {
            return Ok(p.pool.clone());
        }
    }
    if let Some(old) = slot.take() {
        if old.pid != pid {
            // Forked child: the old pool's threads do not exist here, so dropping it could
            // wait on them forever. Leaking it is the only safe choice.
            std::mem::forget(old);
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("convrs-{i}"))
        .build()
        .map_err(|e| ConvError::Memory(format!("cannot start {threads} worker threads: {e}")))?;
    let pool = Arc::new(pool);
    *slot = Some(Pool {
        pid,
        threads,
        pool: pool.clone(),
    });
    Ok(pool)
}

/// Runs `task(i)` for every `i < n_tasks`, on up to `threads` threads. Returns the first
/// error any task reported. One thread (or one task) runs inline on the caller.
pub fn for_each_task<F>(n_tasks: usize, threads: usize, task: F) -> Result<()>
where
    F: Fn(usize) -> Result<()> + Sync + Send,
{
    let threads = threads.min(n_tasks).max(1);
    if threads == 1 {
        return (0..n_tasks).try_for_each(task);
    }
    let pool = pool(threads)?;
    // Exactly `threads` workers claim tasks in order from a shared counter, so a call
    // never uses more threads than asked even when the pool is larger, and a worker that
    // was preempted simply claims fewer tasks. The caller is one of the workers: only
    // `threads - 1` pool threads need waking, which is most of the latency of a short call.
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<ConvError>> = Mutex::new(None);
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n_tasks {
            return;
        }
        if let Err(e) = task(i) {
            // Stop every worker from claiming more.
            next.store(n_tasks, Ordering::Relaxed);
            first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
            return;
        }
    };
    pool.in_place_scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| worker());
        }
        worker();
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How many threads a job of `flops` floating-point operations should use: waking a
/// worker costs microseconds, so small jobs stay on the caller's thread.
pub fn threads_for_work(flops: f64) -> usize {
    const MIN_FLOPS_PER_THREAD: f64 = 2.0e6;
    let useful = (flops / MIN_FLOPS_PER_THREAD) as usize;
    num_threads().min(useful.max(1))
}

/// The result array, written by several tasks at once. Each task writes a disjoint set
/// of elements, which is what makes sharing the raw pointer sound.
pub struct SharedOut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks only write disjoint elements (see `write_row`'s contract), and the
// buffer outlives every task because `for_each_task` returns before its owner is used.
unsafe impl<T: Send> Sync for SharedOut<T> {}
unsafe impl<T: Send> Send for SharedOut<T> {}

impl<T: Copy> SharedOut<T> {
    pub fn new(out: &mut [T]) -> Self {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }

    /// Writes `src[j] + add` at `start + j`.
    ///
    /// # Safety
    /// No other task may access `start..start + src.len()` concurrently.
    pub unsafe fn write_row(&self, start: usize, src: &[T], add: T)
    where
        T: std::ops::Add<Output = T>,
    {
        assert!(start + src.len() <= self.len);
        for (j, &v) in src.iter().enumerate() {
            // SAFETY: in bounds (checked above) and exclusive (caller's contract).
            unsafe { *self.ptr.add(start + j) = v + add };
        }
    }
}

impl<T> SharedOut<T> {
    /// The elements `start..start + len` as a slice.
    ///
    /// # Safety
    /// No other task may access that range while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len);
        // SAFETY: in bounds (checked above) and exclusive (caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once_for_any_thread_count() {
        for threads in [1, 2, 3, 8] {
            let seen: Vec<AtomicU64> = (0..100).map(|_| AtomicU64::new(0)).collect();
            for_each_task(100, threads, |i| {
                seen[i].fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn a_call_never_uses_more_threads_than_asked() {
        for_each_task(8, 3, |_| Ok(())).unwrap(); // the pool now has at least 3 workers
        for threads in [2, 3] {
            let ids = Mutex::new(std::collections::HashSet::new());
            for_each_task(64, threads, |_| {
                ids.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(std::time::Duration::from_millis(1));
                Ok(())
            })
            .unwrap();
            let used = ids.lock().unwrap().len();
            assert!(
                (1..=threads).contains(&used),
                "{used} threads for {threads}"
            );
        }
    }

    #[test]
    fn errors_propagate() {
        let r = for_each_task(10, 2, |i| {
            if i == 7 {
                Err(ConvError::Value("x".into()))
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(ConvError::Value("x".into())));
    }
}
