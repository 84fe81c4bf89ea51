//! In-process live notifications of single runs, for the streams of the HTTP API
//! (`GET /runs/{id}/stream`): "run X has new events" and the token deltas of its LLM steps.
//!
//! Nothing here is recorded, and nothing here is needed for correctness: a stream reads the
//! events themselves from the store, and polls it when it hears nothing (another process
//! may be the one writing). A notification only saves the wait. A run nobody watches costs
//! one relaxed atomic load per append.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use crate::event::RunId;

/// How many notifications of one run a watcher may fall behind before it skips ahead
/// (`RecvError::Lagged`: the stream then re-reads the store, so only token deltas can be
/// missed, and the stream says how many).
const CAPACITY: usize = 1024;

/// A live notification of one run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Live {
    /// Events were appended (or the status changed): read the store.
    Appended,
    /// A piece of an LLM reply arrived (not recorded; the step records the whole reply).
    Token {
        /// The correlation id of the model request (`llm#0/attempt#0`).
        step: String,
        /// The text of the delta.
        text: String,
    },
}

type Channels = HashMap<RunId, broadcast::Sender<Live>>;

/// The channels of watched runs, created by the first watcher of a run and dropped with
/// its last.
#[derive(Debug, Default)]
pub(crate) struct LiveHub {
    channels: Arc<Mutex<Channels>>,
    /// How many runs have a channel (a fast "nobody watches anything").
    watched: Arc<AtomicUsize>,
}

fn lock(channels: &Mutex<Channels>) -> MutexGuard<'_, Channels> {
    channels.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LiveHub {
    /// Starts watching `run`: every notification published from now on.
    pub(crate) fn watch(&self, run: &RunId) -> LiveWatch {
        let mut channels = lock(&self.channels);
        let receiver = match channels.get(run) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(CAPACITY);
                channels.insert(run.clone(), sender);
                self.watched.fetch_add(1, Ordering::Relaxed);
                receiver
            }
        };
        LiveWatch {
            receiver,
            run: run.clone(),
            channels: self.channels.clone(),
            watched: self.watched.clone(),
        }
    }

    /// Whether anyone in this process watches `run` (so LLM steps stream their tokens).
    pub(crate) fn is_watched(&self, run: &RunId) -> bool {
        self.watched.load(Ordering::Relaxed) > 0 && lock(&self.channels).contains_key(run)
    }

    /// Tells the watchers of `run`, if any.
    pub(crate) fn publish(&self, run: &RunId, live: Live) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(sender) = lock(&self.channels).get(run) {
            let _ = sender.send(live);
        }
    }
}

/// A watcher of one run's notifications; the run's channel goes when its last watcher does.
#[derive(Debug)]
pub(crate) struct LiveWatch {
    receiver: broadcast::Receiver<Live>,
    run: RunId,
    channels: Arc<Mutex<Channels>>,
    watched: Arc<AtomicUsize>,
}

impl LiveWatch {
    /// The next notification; `Err(Lagged(n))` when `n` were skipped.
    pub(crate) async fn recv(&mut self) -> Result<Live, broadcast::error::RecvError> {
        self.receiver.recv().await
    }
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        let mut channels = lock(&self.channels);
        // This watcher's receiver is still alive here: it is the last when the count is 1.
        if channels
            .get(&self.run)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            channels.remove(&self.run);
            self.watched.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watchers_hear_their_run_and_the_channel_goes_with_the_last() {
        let hub = LiveHub::default();
        let a = RunId("a".into());
        let b = RunId("b".into());
        hub.publish(&a, Live::Appended); // nobody watches: dropped, no channel made
        assert!(!hub.is_watched(&a));
        let mut first = hub.watch(&a);
        let second = hub.watch(&a);
        assert!(hub.is_watched(&a) && !hub.is_watched(&b));
        hub.publish(&b, Live::Appended);
        hub.publish(&a, Live::Appended);
        assert_eq!(first.recv().await.expect("published"), Live::Appended);
        drop(first);
        assert!(hub.is_watched(&a), "the second watcher still watches");
        drop(second);
        assert!(!hub.is_watched(&a));
        assert_eq!(hub.watched.load(Ordering::Relaxed), 0);
    }
}
