//! `workflows graph`: a Mermaid flowchart of a workflow's static manifest of call sites.

use std::fmt::Write;

use crate::registry::{Registry, WorkflowEntry};
use crate::step::SiteKind;

/// Renders the sites of `workflow` in source order as a Mermaid `flowchart TD`: actions as
/// boxes, sub-workflows as subroutine boxes, sleeps as stadiums and hooks as hexagons,
/// labelled with their site keys. (Control flow — loops, branches — is not drawn: the
/// manifest records where steps are called, not how often.)
pub(crate) fn mermaid(registry: &Registry, workflow: &WorkflowEntry) -> String {
    let mut out = String::from("flowchart TD\n");
    let slug = workflow.registration.slug;
    let _ = writeln!(out, "    start([{slug}])");
    let mut previous = "start".to_owned();
    for (index, site) in workflow.sites.iter().enumerate() {
        let node = format!("s{index}");
        let fn_name = site
            .callee
            .rsplit("::")
            .next()
            .unwrap_or(site.callee)
            .trim();
        let (base, sub_workflow) = match site.kind {
            SiteKind::Run => {
                let slug = registry
                    .slug_of_callee(&workflow.registration, site.callee)
                    .unwrap_or(fn_name);
                (slug.to_owned(), registry.workflow(slug).is_some())
            }
            SiteKind::Sleep => ("sleep".to_owned(), false),
            SiteKind::SleepUntil => ("sleep-until".to_owned(), false),
            SiteKind::Hook => ("hook".to_owned(), false),
            SiteKind::Llm => ("llm".to_owned(), false),
            // The agent's slug is a runtime value: show the receiver.
            SiteKind::Prompt => (fn_name.to_owned(), false),
        };
        let key = site.key(&base);
        let shape = match (site.kind, sub_workflow) {
            (SiteKind::Run, true) => format!("[[\"{key}\"]]"),
            (SiteKind::Run, false) => format!("[\"{key}\"]"),
            (SiteKind::Sleep | SiteKind::SleepUntil, _) => format!("([\"{key}\"])"),
            (SiteKind::Hook, _) => format!("{{{{\"{key}\"}}}}"),
            (SiteKind::Llm | SiteKind::Prompt, _) => format!("[/\"{key}\"/]"),
        };
        let _ = writeln!(out, "    {node}{shape}");
        let _ = writeln!(out, "    {previous} --> {node}");
        previous = node;
    }
    let _ = writeln!(out, "    {previous} --> done([end])");
    out
}
