//! The static manifest of a workflow file: one [`Site`] per recording step (its key pinned
//! to the step's `id`) and the [`Shape`] of its control flow, as `#[workflow]` emits them
//! for a code workflow. They drive the graph, `workflows check` and the fingerprint.
//!
//! Sites and shapes are `'static` in the registry, so a loaded file's are leaked: a file
//! is loaded once per engine build, and its manifest lives as long as the process.

use std::collections::HashMap;

use super::program::{Step, StepKind, WorkflowFile};
use crate::step::{Shape, ShapeArm, Site, SiteKind};

/// The suffix of the site key of a step's `timeout` race (`<id>.timeout`): a step id
/// cannot hold a `.`, so it never collides with another step's.
pub(crate) const TIMEOUT_SUFFIX: &str = ".timeout";

/// A file's manifest.
pub(crate) struct Manifest {
    /// Every site, in file order (depth first).
    pub(crate) sites: &'static [Site],
    /// The body's control-flow shape.
    pub(crate) shape: &'static [Shape],
    /// Site key (`fetch`, `fetch.timeout`) → site.
    pub(crate) by_key: HashMap<String, &'static Site>,
}

impl Manifest {
    /// The site whose key is `key`: a step id, or `<id>.timeout`.
    pub(crate) fn site(&self, key: &str) -> Option<&'static Site> {
        self.by_key.get(key).copied()
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The site kind and callee of a step that records under its own id, or `None` for
/// control flow (which records nothing itself).
fn own_site(step: &Step) -> Option<(SiteKind, String)> {
    Some(match &step.kind {
        StepKind::Action { slug, .. } | StepKind::Workflow { slug, .. } => {
            (SiteKind::Run, slug.clone())
        }
        StepKind::Prompt { .. } => (SiteKind::Llm, "llm".to_owned()),
        StepKind::Agent { name, .. } => (SiteKind::Prompt, name.clone()),
        StepKind::Sleep(_) => (SiteKind::Sleep, "ctx".to_owned()),
        StepKind::SleepUntil(_) => (SiteKind::SleepUntil, "ctx".to_owned()),
        StepKind::Hook { .. } => (SiteKind::Hook, "ctx".to_owned()),
        StepKind::Signal { name, .. } => (SiteKind::Signal, name.clone()),
        StepKind::Event { name, .. } => (SiteKind::Event, name.clone()),
        StepKind::Select(_) => (SiteKind::Select, "select".to_owned()),
        StepKind::Parallel { wait, .. }
            if *wait != super::format::ParallelWait::Mode(super::format::WaitMode::All) =>
        {
            (SiteKind::Select, "parallel".to_owned())
        }
        _ => return None,
    })
}

struct Builder {
    sites: Vec<Site>,
    keys: Vec<String>,
}

impl Builder {
    fn push(&mut self, kind: SiteKind, callee: &str, key: String, line: u32) -> usize {
        self.sites.push(Site {
            kind,
            callee: leak(callee),
            ordinal: 1,
            pinned: Some(leak(&key)),
            line,
        });
        self.keys.push(key);
        self.sites.len() - 1
    }

    fn seq(&mut self, steps: &[Step]) -> Vec<Shape> {
        steps.iter().flat_map(|step| self.step(step)).collect()
    }

    fn arm(&mut self, label: String, steps: &[Step]) -> ShapeArm {
        ShapeArm {
            label: leak(&label),
            body: Box::leak(self.seq(steps).into_boxed_slice()),
        }
    }

    /// The shapes of one step (its own site, its nested lists, its timeout race).
    fn step(&mut self, step: &Step) -> Vec<Shape> {
        let mut out = Vec::new();
        let own = own_site(step)
            .map(|(kind, callee)| self.push(kind, &callee, step.id.clone(), step.at.line));
        // Action and prompt steps apply their timeout per attempt, a hook to its own
        // deadline: they race no timer. Every other step's timeout is a durable race.
        let times_itself = matches!(
            step.kind,
            StepKind::Action { .. } | StepKind::Prompt { .. } | StepKind::Hook { .. }
        );
        if step.timeout.is_some() && !times_itself {
            let index = self.push(
                SiteKind::Timeout,
                "timeout",
                format!("{}{TIMEOUT_SUFFIX}", step.id),
                step.at.line,
            );
            out.push(Shape::Site(index));
        }
        match &step.kind {
            StepKind::If {
                condition,
                then,
                otherwise,
            } => {
                let arms = vec![
                    self.arm(condition.source.clone(), then),
                    self.arm("else".to_owned(), otherwise),
                ];
                out.push(Shape::Branch {
                    label: "if",
                    arms: Box::leak(arms.into_boxed_slice()),
                });
            }
            StepKind::Switch {
                value,
                cases,
                default,
            } => {
                let mut arms: Vec<ShapeArm> = cases
                    .iter()
                    .map(|(case, steps)| self.arm(case.clone(), steps))
                    .collect();
                arms.push(self.arm("default".to_owned(), default));
                out.push(Shape::Branch {
                    label: leak(&format!("switch {}", value.source)),
                    arms: Box::leak(arms.into_boxed_slice()),
                });
            }
            StepKind::ForEach {
                items, item, steps, ..
            } => {
                let body = self.seq(steps);
                out.push(Shape::Loop {
                    label: leak(&format!("for {item} in {}", items.source)),
                    body: Box::leak(body.into_boxed_slice()),
                });
            }
            StepKind::While {
                condition, steps, ..
            } => {
                let body = self.seq(steps);
                out.push(Shape::Loop {
                    label: leak(&format!("while {}", condition.source)),
                    body: Box::leak(body.into_boxed_slice()),
                });
            }
            StepKind::Parallel { branches, .. } => {
                let lists: Vec<&'static [Shape]> = branches
                    .iter()
                    .map(|(_, steps)| &*Box::leak(self.seq(steps).into_boxed_slice()))
                    .collect();
                if let Some(index) = own {
                    out.push(Shape::Site(index));
                }
                out.push(Shape::Parallel {
                    label: "parallel",
                    branches: Box::leak(lists.into_boxed_slice()),
                });
            }
            StepKind::Select(steps) => {
                if let Some(index) = own {
                    out.push(Shape::Site(index));
                }
                let lists: Vec<&'static [Shape]> = steps
                    .iter()
                    .map(|s| &*Box::leak(self.step(s).into_boxed_slice()))
                    .collect();
                out.push(Shape::Parallel {
                    label: "select",
                    branches: Box::leak(lists.into_boxed_slice()),
                });
            }
            StepKind::Try {
                steps,
                catch,
                finally,
            } => {
                let arms = vec![
                    self.arm("try".to_owned(), steps),
                    self.arm("catch".to_owned(), catch),
                ];
                out.push(Shape::Branch {
                    label: "try",
                    arms: Box::leak(arms.into_boxed_slice()),
                });
                out.extend(self.seq(finally));
            }
            _ => {
                if let Some(index) = own {
                    out.push(Shape::Site(index));
                }
            }
        }
        if !step.fallback.is_empty() {
            let arms = vec![self.arm("fallback".to_owned(), &step.fallback)];
            out.push(Shape::Branch {
                label: "on error",
                arms: Box::leak(arms.into_boxed_slice()),
            });
        }
        if !step.compensate.is_empty() {
            let arms = vec![self.arm("compensate".to_owned(), &step.compensate)];
            out.push(Shape::Branch {
                label: "rollback",
                arms: Box::leak(arms.into_boxed_slice()),
            });
        }
        out
    }
}

/// Builds (and leaks) the manifest of `file`.
pub(crate) fn manifest(file: &WorkflowFile) -> Manifest {
    let mut builder = Builder {
        sites: Vec::new(),
        keys: Vec::new(),
    };
    let shape = builder.seq(&file.steps);
    let sites: &'static [Site] = Box::leak(builder.sites.into_boxed_slice());
    let by_key = builder.keys.into_iter().zip(sites.iter()).collect();
    Manifest {
        sites,
        shape: Box::leak(shape.into_boxed_slice()),
        by_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step's own site is keyed by its id; a `<id>.timeout` site exists only for the
    /// steps whose timeout is a durable race (not actions, prompts or hooks).
    #[test]
    fn timeout_sites_exist_only_where_a_timer_is_raced() -> Result<(), super::super::FileErrors> {
        let text = "steps:
  - id: call
    action: some-action
    input: {}
    timeout: 5s
  - id: ask
    prompt: hello
    timeout: 5s
  - id: approve
    hook: approval
    timeout: 1d
  - id: paid
    signal: paid
    timeout: 1h
  - id: guarded
    timeout: 1m
    try:
      - id: nap
        sleep: 1s
";
        let file = super::super::parse_file(std::path::Path::new("m.yaml"), text)?;
        let manifest = manifest(&file);
        let mut keys: Vec<&str> = manifest.by_key.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "approve",
                "ask",
                "call",
                "guarded.timeout",
                "nap",
                "paid",
                "paid.timeout"
            ]
        );
        assert_eq!(manifest.site("call").map(|s| s.kind), Some(SiteKind::Run));
        Ok(())
    }
}
