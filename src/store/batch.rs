//! Group commit for offline messages: one thread takes every store request that has queued up and writes
//! them all in one transaction, so a burst of messages for offline users costs one commit (one fsync)
//! per batch instead of one per message. Each caller still waits for its own result, so a success reply
//! is only sent once the message is committed.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{Offline, Result, Store, StoreError};

/// Most requests written in one transaction.
const MAX_BATCH: usize = 256;

struct Job {
    messages: Vec<Offline>,
    reply: Sender<Result<usize>>,
}

/// The handle through which the service stores offline messages.
pub struct OfflineWriter {
    jobs: Sender<Job>,
}

impl OfflineWriter {
    /// Starts the writer thread over `store`.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<OfflineWriter> {
        let (jobs, rx) = bounded(16 * 1024);
        std::thread::Builder::new()
            .name("offline-writer".into())
            .spawn(move || write_loop(store.as_ref(), &rx))?;
        Ok(OfflineWriter { jobs })
    }

    /// Stores `messages` (in one batch with whatever else is waiting) and returns how many were stored
    /// (frames for users that do not exist are skipped).
    pub fn store(&self, messages: Vec<Offline>) -> Result<usize> {
        if messages.is_empty() {
            return Ok(0);
        }
        let (reply, rx) = bounded(1);
        self.jobs
            .send(Job { messages, reply })
            .map_err(|_| StoreError::Unavailable("offline writer stopped".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Unavailable("offline writer stopped".into()))?
    }
}

fn write_loop(store: &dyn Store, jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
        let slices: Vec<&[Offline]> = batch.iter().map(|j| j.messages.as_slice()).collect();
        match store.store_offline_many(&slices) {
            Ok(counts) => {
                for (job, count) in batch.iter().zip(counts) {
                    let _ = job.reply.send(Ok(count));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for job in &batch {
                    let _ = job.reply.send(Err(StoreError::Unavailable(text.clone())));
                }
            }
        }
    }
}
