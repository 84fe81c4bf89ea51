//! A run's recorded history, indexed by correlation id for replay.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::ActionError;
use crate::event::{Event, EventKind, EventPayload, ForkedFrom, HookReceipt, NewEvent, field};
use crate::hook_token::RESUME_URL_SUFFIX;

/// What the log holds for one correlation id.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Recorded {
    /// The callee slug recorded at `step_started` (`ctx.now` etc. for recorded values).
    pub(crate) callee: String,
    /// The input digest recorded at `step_started`.
    pub(crate) digest: String,
    /// The input recorded at `step_started`, shown next to the requested one when they
    /// differ (moved out of the event, not copied).
    pub(crate) input: Option<Value>,
    /// The outcome, once it was recorded: `step_completed` / `step_failed` for steps and
    /// recorded values, `sleep_completed` (`Ok(null)`) for sleeps, `hook_received` for
    /// hooks (`Ok(payload)`, or the timeout error).
    pub(crate) outcome: Option<Result<Value, ActionError>>,
    /// For sleeps: the recorded wake-up time.
    pub(crate) wake_at: Option<DateTime<Utc>>,
    /// For hooks: when the hook times out, if it has a timeout.
    pub(crate) hook_timeout_at: Option<DateTime<Utc>>,
    /// The sequence number of the first event recorded for this id (a forked run's copied
    /// prefix is told apart by it).
    pub(crate) first_seq: u64,
}

/// Recorded steps by correlation id, built once per execution from the event log.
#[derive(Debug, Default)]
pub(crate) struct History {
    by_id: HashMap<String, Recorded, IdHash>,
    answerable: AtomicUsize,
    answerable_nested: AtomicUsize,
    /// For a forked run: its copied prefix (see [`ForkedFrom`]).
    fork: Option<ForkPrefix>,
    /// For a forked run with a new input that diverged in this execution: the first
    /// sequence number of the copied prefix that no longer answers (0: none diverged).
    diverged_from: AtomicU64,
    /// The step-site fingerprints recorded by earlier executions (`run_started`), oldest
    /// first; empty for runs recorded before fingerprints were.
    fingerprints: Vec<String>,
    /// Whether the log holds a hook (created, or its resume URL recorded): only then can
    /// its values hold hook-token placeholders to expand on replay.
    holds_hooks: bool,
    /// The W3C `traceparent` recorded in `run_created`: every execution joins that trace.
    traceparent: Option<std::sync::Arc<str>>,
    /// Who started the run and whom it acts for, from `run_created` (runs recorded before
    /// identities: [`RunIdentity::unrecorded`]).
    identity: std::sync::Arc<crate::identity::RunIdentity>,
}

/// The copied prefix of a forked run, read from its `run_created` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ForkPrefix {
    /// Events `1..prefix_len` are copies of the original's step events.
    prefix_len: u64,
    /// Whether the fork has a new input, so that copied steps may diverge.
    input_changed: bool,
}

/// The hasher of [`History`]'s index: a folded multiply over 8-byte words (the scheme of
/// `foldhash` and `ahash`'s fallback), much cheaper than SipHash on short keys.
///
/// The index is filled once per event and looked up once per replayed step, so SipHash
/// was a visible part of a resume. Its keys are correlation ids, which the workflow's own
/// code produces (call sites and occurrence counters), not an adversary, so a hash without
/// HashDoS resistance is fine here. The folded multiply carries every input bit into the
/// low bits too, which the table's bucket index uses: ids differ mostly in their trailing
/// digits, so a plain multiply (low bits depend only on low input bits) would collide.
type IdHash = BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    const SEED: u64 = 0x243f_6a88_85a3_08d3;

    fn add(&mut self, word: u64) {
        let full = u128::from(self.0 ^ word ^ Self::SEED) * u128::from(Self::K);
        self.0 = (full as u64) ^ ((full >> 64) as u64);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.add(u64::from_le_bytes(buf));
        }
        let rest = words.remainder();
        // The length keeps "a" and "a\0" apart.
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(buf) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a retry of a failed run (`run_retried`) does to the history: the recorded failure
/// of `step`, and those of the scopes around it (sub-workflows, agents: `a#0/b#0/step#0`
/// is inside `a#0/b#0`, inside `a#0`), no longer answer replay, so the step runs again
/// and its scopes go on around it. Every other recorded outcome still replays.
fn forget_failure(by_id: &mut HashMap<String, Recorded, IdHash>, step: &str) {
    let mut id = step;
    loop {
        if let Some(recorded) = by_id.get_mut(id)
            && matches!(recorded.outcome, Some(Err(_)))
        {
            recorded.outcome = None;
        }
        match id.rfind('/') {
            Some(end) => id = &id[..end],
            None => break,
        }
    }
}

impl History {
    /// Indexes `events`.
    ///
    /// # Errors
    /// A message naming the event when a payload lacks a field replay needs.
    pub(crate) fn from_events(events: Vec<Event>) -> Result<History, String> {
        let mut by_id: HashMap<String, Recorded, IdHash> =
            HashMap::with_capacity_and_hasher(events.len() / 2, IdHash::default());
        // The entry of `id`, allocating its key only when it is new (most ids have a
        // `step_started` and a `step_completed` event).
        fn slot<'a>(
            by_id: &'a mut HashMap<String, Recorded, IdHash>,
            id: &str,
            seq: u64,
        ) -> &'a mut Recorded {
            if !by_id.contains_key(id) {
                by_id.insert(
                    id.to_owned(),
                    Recorded {
                        first_seq: seq,
                        ..Recorded::default()
                    },
                );
            }
            by_id.get_mut(id).expect("inserted above")
        }
        let mut fingerprints: Vec<String> = Vec::new();
        let mut holds_hooks = false;
        let mut fork: Option<ForkPrefix> = None;
        let mut traceparent = None;
        let mut identity = None;
        for event in events {
            let Event { seq, event, .. } = event;
            let NewEvent {
                kind,
                correlation_id,
                payload,
                ..
            } = event;
            if kind == EventKind::RunStarted {
                if let Ok(EventPayload::RunStarted {
                    fingerprint: Some(fingerprint),
                }) = EventPayload::decode_owned(kind, payload)
                    && fingerprints.last() != Some(&fingerprint)
                {
                    fingerprints.push(fingerprint);
                }
                continue;
            }
            if kind == EventKind::RunCreated {
                // Only a fork's `run_created` says more than the run record: read that field.
                if let Some(forked_from) = payload.get(field::FORKED_FROM)
                    && let Ok(forked_from) = ForkedFrom::deserialize(forked_from)
                {
                    fork = Some(ForkPrefix {
                        prefix_len: forked_from.prefix_len,
                        input_changed: forked_from.input_changed,
                    });
                }
                traceparent = payload
                    .get(field::TRACEPARENT)
                    .and_then(Value::as_str)
                    .map(std::sync::Arc::from);
                identity = crate::event::recorded_identity(&payload);
                continue;
            }
            if kind == EventKind::ForkDiverged {
                // The copied entries from `from_seq` on no longer answer; events written
                // after this one (the diverging step running live) start fresh entries.
                if let (Some(fork), Ok(EventPayload::ForkDiverged { from_seq, .. })) =
                    (fork, EventPayload::decode_owned(kind, payload))
                {
                    by_id.retain(|_, r| !fork.voids(from_seq, r.first_seq));
                }
                continue;
            }
            if kind == EventKind::RunRetried || kind == EventKind::RunUnpaused {
                // A retried run, or an unpaused run that was parked when its attempts ran
                // out: the step that failed it runs again.
                if let Ok(
                    EventPayload::RunRetried {
                        step: Some(step), ..
                    }
                    | EventPayload::RunUnpaused {
                        step: Some(step), ..
                    },
                ) = EventPayload::decode_owned(kind, payload)
                {
                    forget_failure(&mut by_id, &step);
                }
                continue;
            }
            let Some(id) = correlation_id.as_deref() else {
                continue;
            };
            if kind == EventKind::RunTagged {
                // A tag (`ctx.tag`) answers its replay; its value is the index's business.
                let entry = slot(&mut by_id, id, seq);
                entry.callee = crate::ctx::tag::TAG_CALLEE.to_owned();
                entry.outcome = Some(Ok(Value::Null));
                continue;
            }
            if kind == EventKind::HookCreated || id.ends_with(RESUME_URL_SUFFIX) {
                holds_hooks = true;
            }
            if !matches!(
                kind,
                EventKind::StepStarted
                    | EventKind::StepCompleted
                    | EventKind::StepFailed
                    | EventKind::SleepStarted
                    | EventKind::SleepCompleted
                    | EventKind::HookCreated
                    | EventKind::HookReceived
            ) {
                continue; // replay needs nothing else (`step_retrying` is not even decoded)
            }
            // Inputs and outputs are moved out of the events, not copied.
            let payload = EventPayload::decode_owned(kind, payload)
                .map_err(|error| format!("event {seq} of step `{id}`: {error}"))?;
            match payload {
                EventPayload::StepStarted {
                    callee,
                    input,
                    digest,
                    ..
                } => {
                    let entry = slot(&mut by_id, id, seq);
                    entry.callee = callee;
                    entry.digest = digest;
                    entry.input = Some(input);
                }
                EventPayload::StepCompleted { output, callee, .. } => {
                    let entry = slot(&mut by_id, id, seq);
                    if let Some(callee) = callee {
                        entry.callee = callee;
                    }
                    entry.outcome = Some(Ok(output));
                }
                EventPayload::StepFailed { error } => {
                    slot(&mut by_id, id, seq).outcome = Some(Err(error));
                }
                EventPayload::SleepStarted { wake_at } => {
                    let entry = slot(&mut by_id, id, seq);
                    entry.callee = "sleep".to_owned();
                    entry.wake_at = Some(wake_at);
                }
                EventPayload::SleepCompleted => {
                    slot(&mut by_id, id, seq).outcome = Some(Ok(Value::Null));
                }
                EventPayload::HookCreated { timeout_at, .. } => {
                    let entry = slot(&mut by_id, id, seq);
                    entry.callee = "hook".to_owned();
                    entry.hook_timeout_at = timeout_at;
                }
                EventPayload::HookReceived(receipt) => {
                    let entry = slot(&mut by_id, id, seq);
                    entry.outcome = Some(match receipt {
                        HookReceipt::TimedOut { .. } => {
                            Err(hook_timed_out(id, entry.hook_timeout_at))
                        }
                        HookReceipt::Delivered(payload) => Ok(payload),
                    });
                }
                _ => {}
            }
        }
        let (answerable, answerable_nested) = count_answerable(&by_id, |_| false);
        Ok(History {
            by_id,
            answerable: AtomicUsize::new(answerable),
            answerable_nested: AtomicUsize::new(answerable_nested),
            fork,
            diverged_from: AtomicU64::new(0),
            fingerprints,
            holds_hooks,
            traceparent,
            identity: std::sync::Arc::new(
                identity.unwrap_or_else(crate::identity::RunIdentity::unrecorded),
            ),
        })
    }

    /// Who started the run and whom it acts for (see [`crate::identity`]).
    pub(crate) fn identity(&self) -> &std::sync::Arc<crate::identity::RunIdentity> {
        &self.identity
    }

    /// The W3C `traceparent` the run was started with, if any.
    pub(crate) fn traceparent(&self) -> Option<std::sync::Arc<str>> {
        self.traceparent.clone()
    }

    /// Whether `recorded` is a copied entry of a forked run with a new input, which the
    /// code's call may diverge from (see [`History::diverge`]) instead of failing the run
    /// with a non-determinism error.
    pub(crate) fn may_diverge(&self, recorded: &Recorded) -> bool {
        self.fork
            .is_some_and(|fork| fork.input_changed && recorded.first_seq < fork.prefix_len)
    }

    /// The forked run diverges at a copied entry whose first event is `from_seq`: from now
    /// on, every copied entry recorded at or after it no longer answers (the steps run
    /// live). The caller records this as `fork_diverged` with the live step's start.
    pub(crate) fn diverge(&self, from_seq: u64) {
        let Some(fork) = self.fork else {
            return;
        };
        let current = self.diverged_from.load(Ordering::Relaxed);
        if current != 0 && current <= from_seq {
            return;
        }
        self.diverged_from.store(from_seq, Ordering::Relaxed);
        let (answerable, nested) =
            count_answerable(&self.by_id, |r| fork.voids(from_seq, r.first_seq));
        self.answerable.store(answerable, Ordering::Relaxed);
        self.answerable_nested.store(nested, Ordering::Relaxed);
    }

    /// Whether a divergence of this execution voided `recorded`.
    fn voided(&self, recorded: &Recorded) -> bool {
        match self.fork {
            None => false,
            Some(fork) => fork.voids(
                self.diverged_from.load(Ordering::Relaxed),
                recorded.first_seq,
            ),
        }
    }

    /// Whether the log holds a hook, so that its values may hold hook-token placeholders
    /// (see [`crate::hook_token::token_placeholder`]).
    pub(crate) fn holds_hooks(&self) -> bool {
        self.holds_hooks
    }

    /// How many recorded outcomes a replay can answer (finished steps, recorded values,
    /// finished sleeps, received hooks), leaving out `ctx.patched` markers. With
    /// `nested`, also the inner steps of finished sub-workflows and agents (which a
    /// replay check re-enters to compare them).
    pub(crate) fn answerable(&self, nested: bool) -> usize {
        if nested {
            self.answerable_nested.load(Ordering::Relaxed)
        } else {
            self.answerable.load(Ordering::Relaxed)
        }
    }

    /// The step-site fingerprints earlier executions recorded, oldest first.
    pub(crate) fn fingerprints(&self) -> &[String] {
        &self.fingerprints
    }

    /// What the log holds for `id`.
    /// The inbox messages this log received (`seq`s of recorded receipts, see
    /// [`crate::message`]): each is taken by one receive only.
    pub(crate) fn received_messages(&self) -> std::collections::HashSet<u64> {
        self.by_id
            .values()
            .filter(|r| r.callee.starts_with(crate::ctx::inbox::RECEIPT_PREFIX))
            .filter_map(|r| match &r.outcome {
                Some(Ok(output)) => output.get("seq").and_then(Value::as_u64),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Recorded> {
        self.by_id.get(id).filter(|r| !self.voided(r))
    }
}

impl ForkPrefix {
    /// Whether a divergence at `from_seq` (0: none) voids an entry first recorded at
    /// `first_seq`: copied entries from there to the end of the prefix.
    fn voids(self, from_seq: u64, first_seq: u64) -> bool {
        from_seq != 0 && first_seq >= from_seq && first_seq < self.prefix_len
    }
}

/// How many recorded outcomes a replay can answer, leaving out `ctx.patched` markers and
/// the entries `skip` says no longer answer: (top-level and visited scopes, all nested).
fn count_answerable(
    by_id: &HashMap<String, Recorded, IdHash>,
    skip: impl Fn(&Recorded) -> bool,
) -> (usize, usize) {
    // Inner steps of a completed sub-workflow are never visited by a replay (the
    // sub-workflow step answers for them), so they are not counted.
    let visited = |id: &str| {
        id.match_indices('/').all(|(end, _)| {
            by_id
                .get(&id[..end])
                .is_none_or(|parent| parent.outcome.is_none() || skip(parent))
        })
    };
    let finished = by_id
        .iter()
        .filter(|(id, _)| !id.rsplit('/').next().unwrap_or(id).starts_with("$patch:"))
        .filter(|(_, r)| r.outcome.is_some() && !skip(r));
    let nested = finished.clone().count();
    let answerable = finished.filter(|(id, _)| visited(id)).count();
    (answerable, nested)
}

/// The error of a hook that received nothing before its deadline.
pub(crate) fn hook_timed_out(id: &str, deadline: Option<DateTime<Utc>>) -> ActionError {
    let at = deadline
        .map(|d| format!(" at {}", d.to_rfc3339()))
        .unwrap_or_default();
    ActionError::new(
        crate::error::kinds::TIMEOUT,
        format!("hook `{id}` received no payload before its timeout{at}"),
        false,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::IdHash;

    /// Correlation ids differ in their last characters; the bucket index (low bits) must
    /// still spread them.
    #[test]
    fn id_hash_spreads_similar_ids_over_buckets() {
        let hasher = IdHash::default();
        let n = 10_000u64;
        let buckets: HashSet<u64> = (0..n)
            .map(|i| hasher.hash_one(format!("bench-step#{i}")) & 0x3fff)
            .collect();
        // 10,000 ids into 16,384 buckets at random fill ~7,400 of them.
        assert!(buckets.len() > 7_000, "{} buckets used", buckets.len());
        let nested: HashSet<u64> = (0..n)
            .map(|i| hasher.hash_one(format!("parent#0/child@{}#{}", i % 7, i / 7)) & 0x3fff)
            .collect();
        assert!(nested.len() > 7_000, "{} buckets used", nested.len());
    }
}
