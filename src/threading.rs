//! The worker pool: persistent helper threads, as many as the largest thread count a call
//! has used (`set_num_threads` / `CONVRS_NUM_THREADS`) minus the calling thread, rebuilt
//! lazily after a `fork()` (the child inherits the pool's bookkeeping but none of its
//! threads).
//!
//! Work is split into independent tasks that each own a disjoint part of the output, and
//! each task reduces in a fixed order, so results are bit-identical for any thread count.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{ConvError, Result};

/// Upper bound accepted by `set_num_threads`; far above any sane machine, low enough that
/// a typo cannot ask the OS for millions of threads.
pub const MAX_THREADS: usize = 1024;

/// 0 until first read; then the thread count each call may use.
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The helper threads and the one job they may be working on. The caller of
/// [`for_each_task`] posts a job and works on it too; helpers spin for a while after each
/// job before they sleep, because waking a sleeping thread takes tens of microseconds on
/// a virtual machine (measured: 35 µs median, 160-320 µs when the vCPU had gone idle),
/// as much as a whole small convolution.
struct Shared {
    /// The posted job, or null; read and written only under `lock`. It points to the
    /// caller's stack frame, which outlives it: the caller retracts it, then waits until
    /// every helper that joined has left.
    job: AtomicPtr<Job<'static>>,
    /// Bumped after every post, so a helper tells a new job from the one it finished.
    epoch: AtomicU64,
    /// Guards posting and retracting jobs; holds the number of helpers asleep on `wake`
    /// (or about to be).
    lock: Mutex<usize>,
    wake: Condvar,
    /// Whether helpers spin before sleeping: only while the pool does not hold more
    /// threads than the machine has cores, or spinning helpers would steal them.
    spin: AtomicBool,
}

/// How long an idle helper spins before it sleeps: long enough to cover the Python code
/// between two calls of a model's layers, short enough not to keep a core busy long.
const SPIN: Duration = Duration::from_millis(2);

/// One call's work: the worker loop every participating thread runs, the helpers that
/// may still join and those running it, and the first panic any of them hit.
struct Job<'a> {
    work: &'a (dyn Fn() + Sync),
    seats: AtomicUsize,
    joined: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job<'_> {
    fn run(&self) {
        if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(self.work)) {
            self.panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(p);
        }
    }
}

impl Shared {
    /// A helper's life: wait for a new job, join it if a seat is left, repeat.
    fn helper(&self) {
        let mut seen = self.epoch.load(Ordering::SeqCst);
        loop {
            seen = self.wait_for_post(seen);
            let job = {
                let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                let job = self.job.load(Ordering::SeqCst);
                // SAFETY: a posted job stays alive until its caller has retracted it
                // (under `lock`, which this thread holds) and seen `joined` back at 0.
                match unsafe { job.as_ref() } {
                    Some(j) if take_seat(j) => job,
                    _ => continue,
                }
            };
            // SAFETY: this thread counts in `joined` until the `fetch_sub` below, its
            // last access to the job, so the caller keeps the job alive until then.
            let job = unsafe { &*job };
            job.run();
            job.joined.fetch_sub(1, Ordering::Release);
        }
    }

    /// Returns the epoch once it differs from `seen`: spinning for `SPIN`, then asleep.
    fn wait_for_post(&self, seen: u64) -> u64 {
        if self.spin.load(Ordering::Relaxed) {
            let start = Instant::now();
            let mut spins = 0u32;
            loop {
                let e = self.epoch.load(Ordering::SeqCst);
                if e != seen {
                    return e;
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        *guard += 1;
        // Posts happen under `lock`, which this thread holds until `wait` releases it,
        // and notify when a helper sleeps: no wake-up is lost.
        let e = loop {
            let e = self.epoch.load(Ordering::SeqCst);
            if e != seen {
                break e;
            }
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        };
        *guard -= 1;
        e
    }

    /// Runs `job` on the calling thread and up to its `seats` helpers. Returns false,
    /// running nothing, when another job is posted (a concurrent or nested call).
    fn run(&self, job: &Job<'_>) -> bool {
        {
            let sleepers = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            if !self.job.load(Ordering::SeqCst).is_null() {
                return false;
            }
            let ptr = job as *const Job<'_> as *mut Job<'static>;
            self.job.store(ptr, Ordering::SeqCst);
            self.epoch.fetch_add(1, Ordering::SeqCst);
            if *sleepers > 0 {
                self.wake.notify_all();
            }
        }
        job.run();
        {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.job.store(std::ptr::null_mut(), Ordering::SeqCst);
        }
        // Helpers still finishing a last task; no new one can join any more.
        let mut spins = 0u32;
        while job.joined.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        true
    }
}

/// Takes one of `job`'s seats, if any is left, and counts the taker in `joined`.
fn take_seat(job: &Job<'_>) -> bool {
    let seated = job
        .seats
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| s.checked_sub(1))
        .is_ok();
    if seated {
        job.joined.fetch_add(1, Ordering::SeqCst);
    }
    seated
}

struct Pool {
    pid: u32,
    helpers: usize,
    shared: Arc<Shared>,
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

/// The pool, with at least `helpers` helper threads: created on first use, again after
/// `fork()`, and grown (never shrunk) when a call needs more: calls that use fewer threads
/// share it, so alternating thread counts never rebuild it.
fn pool(helpers: usize) -> Result<Arc<Shared>> {
    #[cfg(unix)]
    fork_guard::install();
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = slot.take_if(|p| p.pid != pid) {
        // Forked child: the old pool's threads do not exist here and its job slot may
        // hold a job of a thread that does not exist either. Leak it.
        std::mem::forget(old);
    }
    let p = slot.get_or_insert_with(|| Pool {
        pid,
        helpers: 0,
        shared: Arc::new(Shared {
            job: AtomicPtr::new(std::ptr::null_mut()),
            epoch: AtomicU64::new(0),
            lock: Mutex::new(0),
            wake: Condvar::new(),
            spin: AtomicBool::new(false),
        }),
    });
    if p.helpers < helpers {
        while p.helpers < helpers {
            let shared = p.shared.clone();
            std::thread::Builder::new()
                .name(format!("convrs-{}", p.helpers + 1))
                .spawn(move || shared.helper())
                .map_err(|e| {
                    ConvError::Memory(format!("cannot start {helpers} worker threads: {e}"))
                })?;
            p.helpers += 1;
        }
        // Read once per growth: it reads cgroup files, tens of microseconds.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        p.shared.spin.store(p.helpers < cores, Ordering::Relaxed);
    }
    Ok(p.shared.clone())
}

/// Runs `task(i)` for every `i < n_tasks`, on up to `threads` threads. Returns the first
/// error any task reported. One thread (or one task) runs inline on the caller, and so
/// does a call made while another call holds the pool (from another thread, or from
/// inside a task).
pub fn for_each_task<F>(n_tasks: usize, threads: usize, task: F) -> Result<()>
where
    F: Fn(usize) -> Result<()> + Sync + Send,
{
    let threads = threads.min(n_tasks).max(1);
    if threads == 1 {
        return (0..n_tasks).try_for_each(task);
    }
    let shared = pool(threads - 1)?;
    // Every participating thread claims tasks in order from a shared counter, so a thread
    // that was preempted or joined late simply claims fewer tasks. The caller is one of
    // them: a call never uses more than `threads` threads even when the pool is larger.
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<ConvError>> = Mutex::new(None);
    let work = || loop {
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
    let job = Job {
        work: &work,
        seats: AtomicUsize::new(threads - 1),
        joined: AtomicUsize::new(0),
        panic: Mutex::new(None),
    };
    if !shared.run(&job) {
        return (0..n_tasks).try_for_each(task);
    }
    if let Some(p) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        std::panic::resume_unwind(p);
    }
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether `holds` is true of every part of `v`, cut into one chunk per thread and scanned
/// on up to `threads` threads (the scans that decide a path before any work starts read
/// the whole input, serially a few % of a call). False if the pool cannot run them.
pub fn holds_for_chunks<T, F>(v: &[T], threads: usize, holds: F) -> bool
where
    T: Sync,
    F: Fn(&[T]) -> bool + Sync + Send,
{
    let chunk = v.len().div_ceil(threads.max(1)).max(1);
    let all = AtomicBool::new(true);
    let scanned = for_each_task(v.len().div_ceil(chunk), threads, |t| {
        if !holds(&v[t * chunk..((t + 1) * chunk).min(v.len())]) {
            all.store(false, Ordering::Relaxed);
        }
        Ok(())
    });
    scanned.is_ok() && all.into_inner()
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

    /// A pointer to element `start`, for a writer that touches scattered elements of
    /// `start..start + extent` (a slice over the range would also cover other tasks'
    /// elements in between).
    pub fn ptr_at(&self, start: usize, extent: usize) -> *mut T {
        assert!(start + extent <= self.len);
        // SAFETY: in bounds (checked above); the pointer is only dereferenced under its
        // user's contract.
        unsafe { self.ptr.add(start) }
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
    fn a_panicking_task_reaches_the_caller_and_the_pool_still_works() {
        for at in [0, 5, 9] {
            let r = std::panic::catch_unwind(|| {
                for_each_task(10, 2, |i| {
                    assert!(i != at, "task {i} fails");
                    Ok(())
                })
            });
            assert!(r.is_err());
        }
        let count = AtomicU64::new(0);
        for_each_task(10, 2, |_| {
            count.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn nested_and_concurrent_calls_each_run_every_task() {
        let total = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        for_each_task(6, 2, |_| {
                            for_each_task(5, 2, |_| {
                                total.fetch_add(1, Ordering::Relaxed);
                                Ok(())
                            })
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 6 * 5);
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
