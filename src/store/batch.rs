//! Group commit for offline messages: one thread takes every store request that has queued up and writes
//! them all in one transaction, so a burst of messages for offline users costs one commit (one fsync)
//! per batch instead of one per message. Each caller still waits for its own result, so a success reply
//! is only sent once the message is committed.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{Offline, Result, Store, StoreError};

/// Messages at which the writer stops adding waiting jobs to a transaction (one job may take it past
/// this), so that one commit does not hold the database for long.
const MAX_MESSAGES: usize = 4096;

/// One caller's batches, stored in the same transaction as everything else waiting.
struct Job {
    batches: Vec<Vec<Offline>>,
    reply: Sender<Result<Vec<usize>>>,
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

    /// Stores `messages` (in one transaction with whatever else is waiting) and returns how many were
    /// stored (frames for users that do not exist are skipped).
    pub fn store(&self, messages: Vec<Offline>) -> Result<usize> {
        Ok(self.store_many(vec![messages])?.iter().sum())
    }

    /// Stores several batches in order, all in one transaction, and returns how many of each were stored.
    /// A connection hands over the offline messages of everything it read at once this way, so a client
    /// sending many messages costs one commit per read rather than one per message.
    pub fn store_many(&self, batches: Vec<Vec<Offline>>) -> Result<Vec<usize>> {
        if batches.iter().all(Vec::is_empty) {
            return Ok(vec![0; batches.len()]);
        }
        let (reply, rx) = bounded(1);
        self.jobs
            .send(Job { batches, reply })
            .map_err(|_| StoreError::Unavailable("offline writer stopped".into()))?;
        rx.recv()
            .map_err(|_| StoreError::Unavailable("offline writer stopped".into()))?
    }
}

fn write_loop(store: &dyn Store, jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let size = |job: &Job| job.batches.iter().map(Vec::len).sum::<usize>();
        let mut messages = size(&first);
        let mut batch = vec![first];
        while messages < MAX_MESSAGES {
            let Ok(job) = jobs.try_recv() else { break };
            messages += size(&job);
            batch.push(job);
        }
        let slices: Vec<&[Offline]> = batch
            .iter()
            .flat_map(|j| j.batches.iter().map(Vec::as_slice))
            .collect();
        let stored = store.store_offline_many(&slices).and_then(|counts| {
            if counts.len() == slices.len() {
                Ok(counts)
            } else {
                Err(StoreError::Unavailable(format!(
                    "the store counted {} of {} batches",
                    counts.len(),
                    slices.len()
                )))
            }
        });
        match stored {
            Ok(counts) => {
                let mut counts = counts.into_iter();
                for job in &batch {
                    let mine = counts.by_ref().take(job.batches.len()).collect();
                    let _ = job.reply.send(Ok(mine));
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
