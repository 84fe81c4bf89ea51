//! The fingerprint of a workflow's step sites, recorded with every execution of a run
//! (`run_started`), so a `NonDeterminism` error can tell whether the code changed since the
//! run was recorded or the body is non-deterministic (DESIGN "Recorder").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::registry::{Registry, WorkflowEntry};

/// SHA-256 (first 16 hex digits) over the step-site manifest of `entry` and of every
/// sub-workflow it reaches through `.run(..)` sites, plus reprise's version.
///
/// Each site contributes its kind, callee as written, ordinal, pinned id and source line,
/// so adding, removing, reordering or moving a step call changes the fingerprint; an edit
/// that changes only an argument expression on the same line does not (the report then
/// says the sites did not change, and names that case).
///
/// A workflow file also contributes its whole text, so any edit of the file (or of a file
/// it calls as a sub-workflow) changes the fingerprint. A file's sites name their callee
/// by slug, so sub-workflows are found by slug.
pub(crate) fn fingerprint(registry: &Registry, entry: &WorkflowEntry) -> String {
    let mut hasher = Sha256::new();
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    let mut seen: Vec<&str> = Vec::new();
    let mut pending = vec![entry.registration.slug];
    while let Some(slug) = pending.pop() {
        if seen.contains(&slug) {
            continue;
        }
        seen.push(slug);
        let Some(workflow) = registry.workflow(slug) else {
            continue;
        };
        hasher.update(b"\0workflow\0");
        hasher.update(slug.as_bytes());
        if let Some(source) = workflow.source {
            hasher.update(b"\0file\0");
            hasher.update(source.as_bytes());
        }
        for site in workflow.sites {
            let line = format!(
                "\0{:?}\0{}\0{}\0{}\0{}",
                site.kind,
                site.callee,
                site.ordinal,
                site.pinned.unwrap_or(""),
                site.line
            );
            hasher.update(line.as_bytes());
            let sub = if workflow.origin.is_some() {
                registry.workflow(site.callee).map(|w| w.registration.slug)
            } else {
                registry.slug_of_callee(&workflow.registration, site.callee)
            };
            if let Some(sub) = sub
                && registry.workflow(sub).is_some()
            {
                pending.push(sub);
            }
        }
    }
    let hash = hasher.finalize();
    crate::hex::hex(&hash[..8])
}

/// Fingerprints by workflow slug, computed once per engine (the registry never changes).
#[derive(Default)]
pub(crate) struct Fingerprints(Mutex<HashMap<&'static str, Arc<str>>>);

impl Fingerprints {
    /// The fingerprint of `entry`, computed on first use.
    pub(crate) fn of(&self, registry: &Registry, entry: &WorkflowEntry) -> Arc<str> {
        let slug = entry.registration.slug;
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry(slug)
            .or_insert_with(|| Arc::from(fingerprint(registry, entry)))
            .clone()
    }
}
