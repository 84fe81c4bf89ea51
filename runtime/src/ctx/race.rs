#![allow(dead_code)] // TODO(issue14): used by the signal, event, child-run and select adapters
//! Durable select: which branch of a race may record its completion.
//!
//! TODO(issue14-select): the select itself. Until it lands every recorded thing may finish.

/// Whether the recorded thing being polled may record its completion now: `true` outside
/// a durable select, and for the first branch of a select to ask (which wins the select);
/// `false` for a branch that lost, which must record nothing and stay pending (the select
/// drops it). Call it synchronously, in the poll that would record, just before recording.
pub(crate) fn may_finish() -> bool {
    true
}
