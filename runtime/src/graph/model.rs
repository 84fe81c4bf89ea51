//! The graph's model: nodes, edges and groups, serializable as JSON, plus the nesting tree
//! the SVG layout and the edges are derived from.

use serde::Serialize;

/// How far a node's steps got in the run that lights the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeStatus {
    /// The run never reached this site.
    NotReached,
    /// A step of this site is running.
    Running,
    /// A step of this site failed an attempt and will be retried.
    Retrying,
    /// A sleep or hook of this site is waiting.
    Waiting,
    /// Every step of this site completed.
    Completed,
    /// A step of this site failed for good (or its hook timed out).
    Failed,
}

impl NodeStatus {
    /// All statuses.
    pub const ALL: [NodeStatus; 6] = [
        NodeStatus::NotReached,
        NodeStatus::Running,
        NodeStatus::Retrying,
        NodeStatus::Waiting,
        NodeStatus::Completed,
        NodeStatus::Failed,
    ];

    /// The status as written in JSON, CSS classes and `data-status` attributes
    /// (`not_reached`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::NotReached => "not_reached",
            NodeStatus::Running => "running",
            NodeStatus::Retrying => "retrying",
            NodeStatus::Waiting => "waiting",
            NodeStatus::Completed => "completed",
            NodeStatus::Failed => "failed",
        }
    }

    /// Which of two statuses a node with occurrences in both shows: failed, then
    /// retrying, running, waiting, completed, not reached.
    pub(crate) fn rank(self) -> u8 {
        match self {
            NodeStatus::Failed => 5,
            NodeStatus::Retrying => 4,
            NodeStatus::Running => 3,
            NodeStatus::Waiting => 2,
            NodeStatus::Completed => 1,
            NodeStatus::NotReached => 0,
        }
    }

    /// Fill and stroke colours (SVG and Mermaid `classDef`s).
    pub(crate) fn colours(self) -> (&'static str, &'static str) {
        match self {
            NodeStatus::NotReached => ("#f3f4f6", "#9ca3af"),
            NodeStatus::Running => ("#dbeafe", "#2563eb"),
            NodeStatus::Retrying => ("#ffedd5", "#ea580c"),
            NodeStatus::Waiting => ("#fef9c3", "#ca8a04"),
            NodeStatus::Completed => ("#dcfce7", "#16a34a"),
            NodeStatus::Failed => ("#fee2e2", "#dc2626"),
        }
    }
}

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeKind {
    /// The workflow's entry.
    Start,
    /// The workflow's exit.
    End,
    /// `action.run(..)`.
    Action,
    /// `sub_workflow.run(..)`: a sub-workflow, drawn as one subroutine node (its steps
    /// light it; its own graph is the one of [`Node::workflow`]).
    Workflow,
    /// `ctx.sleep(..)` or `ctx.sleep_until(..)`.
    Sleep,
    /// `ctx.hook()`.
    Hook,
    /// `prompt_llm(..)`.
    Llm,
    /// `agent.prompt(..)`.
    Agent,
    /// Where a branch (`if`, `match`) chooses an arm.
    Decision,
    /// Where a branch's arms meet again.
    Merge,
    /// Where a parallel group starts its branches.
    Fork,
    /// Where a parallel group waits for its branches.
    Join,
}

impl NodeKind {
    /// The kind as written in JSON and CSS classes.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Start => "start",
            NodeKind::End => "end",
            NodeKind::Action => "action",
            NodeKind::Workflow => "workflow",
            NodeKind::Sleep => "sleep",
            NodeKind::Hook => "hook",
            NodeKind::Llm => "llm",
            NodeKind::Agent => "agent",
            NodeKind::Decision => "decision",
            NodeKind::Merge => "merge",
            NodeKind::Fork => "fork",
            NodeKind::Join => "join",
        }
    }

    /// Whether the node is a call site (it has a status when the graph is lit).
    pub fn is_site(self) -> bool {
        matches!(
            self,
            NodeKind::Action
                | NodeKind::Workflow
                | NodeKind::Sleep
                | NodeKind::Hook
                | NodeKind::Llm
                | NodeKind::Agent
        )
    }
}

/// One node of the graph.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// Its id in this graph (`n0`, `n1`, …), what edges and groups refer to.
    pub id: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// What it shows: the site key (`notify@2`), the branch (`if`, `match x`), the slug.
    pub label: String,
    /// For a call site: its site key, the `<site-key>` of its steps' correlation ids
    /// (`<site-key>#<n>`). `None` for structural nodes, and for an agent's site when the
    /// key is the agent's runtime slug (its label is then the receiver as written).
    pub step: Option<String>,
    /// For a call site: its index in the workflow's site manifest.
    pub site: Option<usize>,
    /// For a call site: the receiver as written (`hash_file`, `ctx`).
    pub callee: Option<String>,
    /// For a call site: its source line.
    pub line: Option<u32>,
    /// For a sub-workflow node: the sub-workflow's slug.
    pub workflow: Option<String>,
    /// The innermost group (an index into [`super::Graph::groups`]) the node is in.
    pub group: Option<usize>,
    /// When lit: how far the node's steps got (`None` for structural nodes and unlit graphs).
    pub status: Option<NodeStatus>,
    /// When lit: how many times the site ran in the run (loops, parallel groups; `0` when
    /// not reached or unlit).
    pub count: u32,
}

/// A directed edge, in the direction control flows.
#[derive(Clone, Debug, Serialize)]
pub struct Edge {
    /// The id of the node it leaves.
    pub from: String,
    /// The id of the node it enters.
    pub to: String,
    /// A branch arm's condition or pattern, on the edge into that arm.
    pub label: Option<String>,
}

/// What a group encloses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupKind {
    /// A loop body (`for`, `while`, `loop`).
    Loop,
    /// A parallel group (`join!`, `join_all`, `fan_out`, …).
    Parallel,
}

/// A group of nodes drawn in one box: a loop body or a parallel group.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// Its id (`g0`, `g1`, …).
    pub id: String,
    /// What it encloses.
    pub kind: GroupKind,
    /// The loop header (`for item in items`) or the parallel form (`join!`, `fan_out`).
    pub label: String,
    /// The group it is nested in, if any (an index into [`super::Graph::groups`]).
    pub parent: Option<usize>,
}

/// The nesting of the graph: what the edges and the SVG layout follow.
#[derive(Clone, Debug)]
pub(crate) enum Block {
    /// One node (an index into the nodes).
    Node(usize),
    /// Blocks one after the other.
    Seq(Vec<Block>),
    /// A branch or a parallel group: `open` leads into each arm, each arm into `close`.
    Split {
        open: usize,
        close: usize,
        arms: Vec<(Option<String>, Block)>,
    },
    /// A boxed group around a block.
    Group { group: usize, inner: Box<Block> },
}

/// One connection of the tree: an edge, with where an arm that has no node runs.
pub(crate) struct Connection<'a> {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) label: Option<&'a str>,
    /// For the edge of an empty arm: the split's open node and the arm's index.
    pub(crate) empty_arm: Option<(usize, usize)>,
}

impl Block {
    /// The node control enters the block by (`None` for an empty sequence).
    pub(crate) fn entry(&self) -> Option<usize> {
        match self {
            Block::Node(n) => Some(*n),
            Block::Seq(blocks) => blocks.iter().find_map(Block::entry),
            Block::Split { open, .. } => Some(*open),
            Block::Group { inner, .. } => inner.entry(),
        }
    }

    /// The node control leaves the block by (`None` for an empty sequence).
    pub(crate) fn exit(&self) -> Option<usize> {
        match self {
            Block::Node(n) => Some(*n),
            Block::Seq(blocks) => blocks.iter().rev().find_map(Block::exit),
            Block::Split { close, .. } => Some(*close),
            Block::Group { inner, .. } => inner.exit(),
        }
    }

    /// Calls `f` for every edge inside the block, in the order control reaches them.
    pub(crate) fn connections<'a>(&'a self, f: &mut impl FnMut(Connection<'a>)) {
        match self {
            Block::Node(_) => {}
            Block::Seq(blocks) => {
                let mut previous: Option<usize> = None;
                for block in blocks {
                    if let (Some(from), Some(to)) = (previous, block.entry()) {
                        f(Connection {
                            from,
                            to,
                            label: None,
                            empty_arm: None,
                        });
                    }
                    block.connections(f);
                    if let Some(exit) = block.exit() {
                        previous = Some(exit);
                    }
                }
            }
            Block::Split { open, close, arms } => {
                for (index, (label, arm)) in arms.iter().enumerate() {
                    let label = label.as_deref();
                    match (arm.entry(), arm.exit()) {
                        (Some(entry), Some(exit)) => {
                            f(Connection {
                                from: *open,
                                to: entry,
                                label,
                                empty_arm: None,
                            });
                            arm.connections(f);
                            f(Connection {
                                from: exit,
                                to: *close,
                                label: None,
                                empty_arm: None,
                            });
                        }
                        _ => f(Connection {
                            from: *open,
                            to: *close,
                            label,
                            empty_arm: Some((*open, index)),
                        }),
                    }
                }
            }
            Block::Group { inner, .. } => inner.connections(f),
        }
    }
}
