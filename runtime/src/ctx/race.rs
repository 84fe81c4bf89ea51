//! Durable select: which branch of a race may record its completion (the claim protocol).
//!
//! While a durable select ([`super::select`]) polls its branch `i`, a poll-scoped context
//! says "racing, branch `i` of race R" (a thread-local stack, set around each poll of a
//! branch: a workflow body never leaves its task's thread during one poll). Every recorded
//! thing that is about to record the *completion* of a wait (a sleep, a hook's timeout, a
//! receive) calls [`may_finish`] synchronously in the poll that would record: the first
//! branch to ask wins the race, and the select's record (`select#n`, its winner and which
//! branches had started) is written with the next durable append — the winner's own
//! completion — so a crash can never leave a consumed message or payload with no recorded
//! winner. A later asker gets `false`: it records nothing and stays pending (the select
//! drops it).
//!
//! Nested selects claim the whole chain of races they are polled in; a sub-workflow's body
//! is polled [`outside`] any race (the sub-workflow step is a live step of its branch: it
//! runs to completion and claims when it records its own outcome).

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde_json::{Value, json};

use super::RunState;
use super::recorder::{Call, Entry, Shape};

/// The callee the select's record carries.
pub(crate) const SELECT_CALLEE: &str = "select";

/// One durable select in flight.
pub(crate) struct Race {
    run: Arc<RunState>,
    /// The select's correlation id (`select#0`, `timeout#2`).
    id: String,
    inner: Mutex<RaceInner>,
}

struct RaceInner {
    winner: Option<usize>,
    /// The winner came from the log: nothing more is recorded.
    from_log: bool,
    branches: Vec<BranchNote>,
}

/// What one branch did before the race was decided.
#[derive(Clone, Debug, Default)]
struct BranchNote {
    /// It entered the recorder for something other than a recorded value (a step started,
    /// a wait began or was answered from the log).
    started: bool,
    /// The correlation ids it entered the recorder with, in order, after the ids it took
    /// when it was created (known before it is polled: a branch not polled yet in this
    /// execution may have started in an earlier one).
    ids: Vec<String>,
}

/// One frame of the poll-scoped context: a branch of a race, or a barrier (a sub-workflow
/// body, which races nothing of its caller's).
#[derive(Clone)]
enum Frame {
    Branch(Arc<Race>, usize),
    Barrier,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The races (innermost first) and branches the current poll runs in, up to the nearest
/// barrier. Empty outside any select (the common case: no allocation).
#[derive(Clone, Default)]
pub(crate) struct Chain(Vec<(Arc<Race>, usize)>);

impl Chain {
    /// The chain of the current poll.
    pub(crate) fn current() -> Chain {
        STACK.with(|stack| {
            let stack = stack.borrow();
            let mut chain = Vec::new();
            for frame in stack.iter().rev() {
                match frame {
                    Frame::Branch(race, branch) => chain.push((race.clone(), *branch)),
                    Frame::Barrier => break,
                }
            }
            Chain(chain)
        })
    }

    /// The race that decided against this chain's branch, with its winner: a live step
    /// dropped for that reason records its cancellation.
    pub(crate) fn lost(&self) -> Option<(String, usize)> {
        self.0.iter().find_map(|(race, branch)| {
            let inner = race.lock();
            match inner.winner {
                Some(winner) if winner != *branch => Some((race.id.clone(), winner)),
                _ => None,
            }
        })
    }
}

/// Whether the recorded thing being polled may record its completion now: `true` outside
/// a durable select, and for the first branch of a select to ask (which wins the select);
/// `false` for a branch that lost, which must record nothing and stay pending (the select
/// drops it). Call it synchronously, in the poll that would record, just before recording.
pub(crate) fn may_finish() -> bool {
    claim(&Chain::current()).is_some()
}

/// Claims every race of `chain` for its branch: `None` when one of them was won by another
/// branch (nothing is claimed then), else whether a new select record was queued.
fn claim(chain: &Chain) -> Option<bool> {
    if chain.0.is_empty() {
        return Some(false);
    }
    let mut guards: Vec<_> = chain.0.iter().map(|(race, _)| race.lock()).collect();
    let free = guards
        .iter()
        .zip(&chain.0)
        .all(|(inner, (_, branch))| inner.winner.is_none_or(|w| w == *branch));
    if !free {
        return None;
    }
    let mut records = Vec::new();
    for (inner, (race, branch)) in guards.iter_mut().zip(&chain.0) {
        if inner.winner.is_none() {
            inner.winner = Some(*branch);
            if !inner.from_log {
                records.push((race.clone(), record_of(inner, *branch)));
            }
        }
    }
    drop(guards);
    let queued = !records.is_empty();
    // Outermost first, so each select's record precedes the records of selects inside it.
    for (race, output) in records.into_iter().rev() {
        race.record(output);
    }
    Some(queued)
}

/// The select's recorded output: `{"winner": i, "branches": [{"started": bool, "steps":
/// [ids]}, …]}` (the losers' ids, so that a replay that polls only the winner still counts
/// their recorded entries as replayed).
fn record_of(inner: &RaceInner, winner: usize) -> Value {
    let branches: Vec<Value> = inner
        .branches
        .iter()
        .enumerate()
        .map(|(i, note)| {
            if i == winner {
                json!({ "started": true })
            } else {
                json!({ "started": note.started, "steps": note.ids })
            }
        })
        .collect();
    json!({ "winner": winner, "branches": branches })
}

/// Notes that the current poll entered the recorder for `id` (called by
/// `RunState::lookup`): each enclosing race up to the nearest barrier learns that its
/// branch started.
pub(crate) fn note_entry(id: &str, shape: Shape) {
    STACK.with(|stack| {
        let stack = stack.borrow();
        for frame in stack.iter().rev() {
            match frame {
                Frame::Branch(race, branch) => {
                    let mut inner = race.lock();
                    if inner.winner.is_some() {
                        continue;
                    }
                    if let Some(note) = inner.branches.get_mut(*branch) {
                        note.started |= shape != Shape::Value;
                        if !note.ids.iter().any(|known| known == id) {
                            note.ids.push(id.to_owned());
                        }
                    }
                }
                Frame::Barrier => break,
            }
        }
    });
}

/// Pushes `frame` for the duration of one synchronous call (popped on unwind too).
fn with_frame<R>(frame: Frame, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            STACK.with(|stack| {
                stack.borrow_mut().pop();
            });
        }
    }
    STACK.with(|stack| stack.borrow_mut().push(frame));
    let _pop = Pop;
    f()
}

/// Awaits `future` polled outside any race (a scope's body — sub-workflow, agent: its waits
/// are its own; the scope step claims its branch when it records its own outcome).
pub(crate) async fn outside<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| with_frame(Frame::Barrier, || future.as_mut().poll(cx))).await
}

impl Race {
    /// A race for select `id` of branches that took the correlation ids `created` when
    /// they were created; `winner` when the log recorded it. A branch whose ids the log
    /// holds started in an earlier execution.
    pub(crate) fn new(
        run: Arc<RunState>,
        id: String,
        created: Vec<Vec<String>>,
        winner: Option<usize>,
    ) -> Arc<Race> {
        let branches = created
            .into_iter()
            .map(|ids| BranchNote {
                started: ids.iter().any(|id| run.history.get(id).is_some()),
                ids,
            })
            .collect();
        Arc::new(Race {
            run,
            id,
            inner: Mutex::new(RaceInner {
                winner,
                from_log: winner.is_some(),
                branches,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RaceInner> {
        // Plain field updates only: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The winner, once decided.
    pub(crate) fn winner(&self) -> Option<usize> {
        self.lock().winner
    }

    /// The correlation ids the losers entered the recorder with, once decided.
    pub(crate) fn loser_ids(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .branches
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != inner.winner)
            .flat_map(|(_, note)| note.ids.iter().cloned())
            .collect()
    }

    /// Polls branch `branch`'s future inside the race context.
    pub(crate) fn poll_branch<F: Future + Unpin + ?Sized>(
        self: &Arc<Self>,
        branch: usize,
        future: &mut F,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        with_frame(Frame::Branch(self.clone(), branch), || {
            Pin::new(future).poll(cx)
        })
    }

    /// Claims the race (and those around it) for `branch`, whose future finished without
    /// asking (its outcome came from the log, or it records nothing of its own): `None`
    /// when another branch won, else whether a select record was queued (the caller then
    /// makes it durable before going on).
    pub(crate) fn claim_finished(self: &Arc<Self>, branch: usize) -> Option<bool> {
        with_frame(Frame::Branch(self.clone(), branch), || {
            claim(&Chain::current())
        })
    }

    /// Queues the select's record (written with the next durable append) through the
    /// recorder: a recorded value at the select's id.
    fn record(&self, output: Value) {
        let call = Call {
            id: &self.id,
            callee: SELECT_CALLEE,
            shape: Shape::Value,
            input: None,
            output: None,
        };
        // Outside the race: the record is the race's own, not an entry of a branch.
        let entry = with_frame(Frame::Barrier, || self.run.lookup(&call));
        if let Ok(Entry::Live(slot)) = entry {
            slot.finish_value(output);
        }
    }
}
