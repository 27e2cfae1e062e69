//! Worker threads: one single-threaded tokio runtime per CPU.
//!
//! Each worker accepts on its own listening socket with `SO_REUSEPORT`, so
//! the kernel spreads new connections over the workers, and
//! `server::balance` evens out what the kernel's hash leaves uneven. A
//! worker serves its connections from start to end on its own thread, with
//! its own upstream connection pools (see [`crate::routing::Route::client`]).
//! A request and the upstream exchange it causes then wake tasks on one
//! thread only: no cross-thread wakeups, no work stealing. nginx and Envoy are built the same
//! way. BENCHMARKS.md records the CPU per request this saves over tokio's
//! work-stealing runtime.
//!
//! The admin listener, the reloader and signal handling stay on the main
//! runtime.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::sync::watch;

thread_local! {
    /// The index of the worker running on this thread; 0 elsewhere.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The number of workers, set once at start; 1 until then.
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// Returns the index of the worker running on the calling thread, in
/// `0..count()`. Threads that are not workers get 0.
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Returns the number of workers this process runs.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Returns the default number of workers: one per CPU this process may use
/// (its affinity mask and cgroup quota count).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Records the number of workers before any state that depends on it (the
/// upstream pools) is built.
pub fn set_count(count: usize) {
    COUNT.store(count.max(1), Ordering::Relaxed);
}

/// Running worker threads.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// Starts `count()` workers. Worker `i` runs `work(i)` on its own
    /// runtime, and then keeps running the tasks that `work` spawned until
    /// [`Workers::stop`].
    pub fn start<W, F>(work: W) -> std::io::Result<Workers>
    where
        W: Fn(usize) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + 'static,
    {
        let work = std::sync::Arc::new(work);
        let (stop, stopped) = watch::channel(false);
        let mut threads = Vec::new();
        for index in 0..count() {
            let work = work.clone();
            let mut stopped = stopped.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let thread = std::thread::Builder::new()
                .name(format!("postern-worker-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(index));
                    runtime.block_on(async move {
                        work(index).await;
                        let _ = stopped.wait_for(|stop| *stop).await;
                    });
                    // Dropping the runtime cancels the tasks still running:
                    // connections the grace period cut short.
                    drop(runtime);
                })?;
            threads.push(thread);
        }
        Ok(Workers { threads, stop })
    }

    /// Stops every worker, cancelling the tasks it still runs, and waits for
    /// the threads to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("A worker thread panicked");
                }
            }
        });
        let _ = joined.await;
    }
}
