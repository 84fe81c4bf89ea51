//! Lights a graph with one run's event log: every call-site node gets the status its steps
//! reached and how many times it ran.
//!
//! A step's correlation id is `<site-key>#<n>` at the top level of the run and
//! `<parent-id>/<site-key>#<n>` inside a sub-workflow or an agent; the top-level segment
//! names the node, so a sub-workflow's (or agent's) inner steps light its node. Recorded
//! values (`$now#0`, `$patch:…`, `hook#0$resume-url`) are not steps and light nothing.

use std::collections::BTreeMap;

use super::model::{Node, NodeKind, NodeStatus};
use crate::event::{Event, EventKind};

/// What one occurrence of a site (one top-level correlation id) went through.
#[derive(Default)]
struct Occurrence {
    /// From the occurrence's own events, the last one deciding.
    own: Option<NodeStatus>,
    /// From the events of the steps nested in it (sub-workflow, agent), by id.
    nested: BTreeMap<String, NodeStatus>,
    /// The `kind` of its `step_started` (`action`, `workflow`, `llm`, `agent`).
    started_kind: Option<String>,
}

impl Occurrence {
    /// The occurrence's status: its own, except that a running sub-workflow or agent shows
    /// what its inner steps are doing (waiting on a sleep, retrying a step).
    fn status(&self) -> Option<NodeStatus> {
        let inner = self
            .nested
            .values()
            .copied()
            .filter(|s| {
                matches!(
                    s,
                    NodeStatus::Retrying | NodeStatus::Waiting | NodeStatus::Running
                )
            })
            .max_by_key(|s| s.rank());
        match (self.own, inner) {
            (Some(NodeStatus::Running) | None, Some(inner)) => Some(inner),
            (None, None) if !self.nested.is_empty() => Some(NodeStatus::Completed),
            (own, _) => own,
        }
    }
}

/// The status an event moves a step to, if it is a step, sleep or hook event.
fn status_after(event: &Event) -> Option<NodeStatus> {
    Some(match event.event.kind {
        EventKind::StepStarted => NodeStatus::Running,
        EventKind::StepRetrying => NodeStatus::Retrying,
        EventKind::StepCompleted | EventKind::SleepCompleted => NodeStatus::Completed,
        EventKind::StepFailed => NodeStatus::Failed,
        EventKind::SleepStarted | EventKind::HookCreated => NodeStatus::Waiting,
        EventKind::HookReceived => {
            if event
                .event
                .payload
                .get("timed_out")
                .and_then(|v| v.as_bool())
                == Some(true)
            {
                NodeStatus::Failed
            } else {
                NodeStatus::Completed
            }
        }
        _ => return None,
    })
}

/// Sets `status` and `count` of every node of `nodes` from `events` (in `seq` order).
pub(crate) fn light(nodes: &mut [Node], events: &[Event]) {
    let mut occurrences: BTreeMap<&str, Occurrence> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut run_started = false;
    let mut run_end: Option<NodeStatus> = None;
    for event in events {
        match event.event.kind {
            EventKind::RunStarted => run_started = true,
            EventKind::RunCompleted => run_end = Some(NodeStatus::Completed),
            EventKind::RunFailed | EventKind::RunCanceled => run_end = Some(NodeStatus::Failed),
            EventKind::RunRetried | EventKind::RunUnpaused => run_end = None,
            _ => {}
        }
        let Some(id) = event.event.correlation_id.as_deref() else {
            continue;
        };
        let Some(status) = status_after(event) else {
            continue;
        };
        let (top, nested) = match id.split_once('/') {
            Some((top, _)) => (top, true),
            None => (id, false),
        };
        // Recorded values: `$now#0`, and those a step records under its own id
        // (`hook#0$resume-url`).
        if top.contains('$') {
            continue;
        }
        let occurrence = occurrences.entry(top).or_insert_with(|| {
            order.push(top);
            Occurrence::default()
        });
        if nested {
            // A recorded value inside (`…/$now#0`) is not a step.
            if !id.rsplit('/').next().is_some_and(|last| last.contains('$')) {
                occurrence.nested.insert(id.to_owned(), status);
            }
        } else {
            occurrence.own = Some(status);
            if event.event.kind == EventKind::StepStarted {
                occurrence.started_kind = event
                    .event
                    .payload
                    .get("kind")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
            }
        }
    }

    let by_key: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, node)| node.step.as_deref().map(|key| (key, i)))
        .collect();
    let agents: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.kind == NodeKind::Agent && node.step.is_none())
        .map(|(i, _)| i)
        .collect();
    let mut lit: Vec<(u32, Option<NodeStatus>)> = vec![(0, None); nodes.len()];
    for top in order {
        let Some(occurrence) = occurrences.get(top) else {
            continue;
        };
        let key = top.rsplit_once('#').map_or(top, |(key, _)| key);
        let node = by_key.get(key).copied().or_else(|| {
            // An agent's key is its runtime slug (`<slug>` or `<slug>@<ordinal>`): the
            // unpinned agent site of that ordinal.
            if occurrence.started_kind.as_deref() != Some("agent") {
                return None;
            }
            let ordinal: u32 = key
                .rsplit_once('@')
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(1);
            let matching: Vec<usize> = agents
                .iter()
                .copied()
                .filter(|&i| nodes[i].site.is_some() && agent_ordinal(&nodes[i]) == ordinal)
                .collect();
            matching.first().copied()
        });
        let Some(node) = node else {
            continue;
        };
        let Some(status) = occurrence.status() else {
            continue;
        };
        let (count, current) = &mut lit[node];
        *count += 1;
        *current = Some(match *current {
            Some(old) if old.rank() >= status.rank() => old,
            _ => status,
        });
    }

    for (node, (count, status)) in nodes.iter_mut().zip(lit) {
        node.count = count;
        node.status = match node.kind {
            kind if kind.is_site() => Some(status.unwrap_or(NodeStatus::NotReached)),
            NodeKind::Start => Some(if run_started {
                NodeStatus::Completed
            } else {
                NodeStatus::NotReached
            }),
            NodeKind::End => Some(run_end.unwrap_or(NodeStatus::NotReached)),
            _ => None,
        };
    }
}

/// The ordinal in an unpinned agent node's label (`reviewer@2` → 2, `reviewer` → 1).
fn agent_ordinal(node: &Node) -> u32 {
    node.label
        .rsplit_once('@')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}
