//! A batching writer for the access log on stdout.
//!
//! Request handlers append lines to one shared buffer, which costs no system
//! call and wakes no thread. A writer thread writes the buffer out every
//! 100 ms, or as soon as it contains 64 KiB. tracing-appender's non-blocking
//! writer was the first choice, but it sends each line through a channel and
//! wakes its thread per line, which under load cost more than the rest of the
//! logging. No line is dropped: a handler that fills the buffer while the
//! writer is behind waits for it.

use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Size at which a handler hands the buffer to the writer at once.
const BATCH_BYTES: usize = 64 * 1024;
/// Maximum time a line waits in the buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Full buffers that may queue for the writer before handlers wait.
const QUEUED_BATCHES: usize = 16;

struct Batcher {
    buffer: Mutex<Vec<u8>>,
    full: SyncSender<Vec<u8>>,
}

static BATCHER: OnceLock<Batcher> = OnceLock::new();

/// Writes what is still buffered when dropped, at exit.
pub struct FlushGuard {
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Starts the writer thread. Calling it again keeps the first writer.
pub fn init() -> FlushGuard {
    let (full, batches) = sync_channel(QUEUED_BATCHES);
    let batcher = Batcher {
        buffer: Mutex::new(Vec::with_capacity(BATCH_BYTES)),
        full,
    };
    let mut writer = None;
    if BATCHER.set(batcher).is_ok() {
        let spawned = std::thread::Builder::new()
            .name("postern-access-log".into())
            .spawn(move || write_batches(batches));
        match spawned {
            Ok(handle) => writer = Some(handle),
            Err(error) => {
                tracing::error!(%error, "The access log writer thread could not start")
            }
        }
    }
    FlushGuard { writer }
}

/// Appends to the shared buffer with `write`, which must add whole lines.
pub fn append(write: impl FnOnce(&mut Vec<u8>)) {
    let Some(batcher) = BATCHER.get() else {
        return;
    };
    let full = {
        let mut buffer = batcher.buffer.lock().unwrap_or_else(|e| e.into_inner());
        write(&mut buffer);
        (buffer.len() >= BATCH_BYTES)
            .then(|| std::mem::replace(&mut *buffer, Vec::with_capacity(BATCH_BYTES)))
    };
    if let Some(batch) = full {
        let _ = batcher.full.send(batch);
    }
}

/// Takes what the buffer holds.
fn take_buffered() -> Vec<u8> {
    match BATCHER.get() {
        Some(batcher) => {
            let mut buffer = batcher.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.is_empty() {
                return Vec::new();
            }
            // A full-size buffer in its place, so that the lines that follow
            // do not grow one from empty, copying it at each step.
            std::mem::replace(&mut *buffer, Vec::with_capacity(BATCH_BYTES))
        }
        None => Vec::new(),
    }
}

/// Writes batches until an empty one arrives through the channel, which is
/// the guard's signal to write the rest and stop.
fn write_batches(batches: Receiver<Vec<u8>>) {
    let mut stdout = std::io::stdout();
    loop {
        let (batch, last) = match batches.recv_timeout(FLUSH_INTERVAL) {
            Ok(batch) if batch.is_empty() => (take_buffered(), true),
            Ok(batch) => (batch, false),
            Err(RecvTimeoutError::Timeout) => (take_buffered(), false),
            Err(RecvTimeoutError::Disconnected) => (take_buffered(), true),
        };
        if !batch.is_empty()
            && let Err(error) = stdout.write_all(&batch).and_then(|()| stdout.flush())
        {
            eprintln!("postern: writing the access log failed: {error}");
        }
        if last {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let (Some(writer), Some(batcher)) = (self.writer.take(), BATCHER.get()) else {
            return;
        };
        // Batches queued before the signal are written first.
        if batcher.full.send(Vec::new()).is_ok() {
            let _ = writer.join();
        }
    }
}
