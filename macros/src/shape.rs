//! The control-flow shape of a workflow body, collected while `analyse` finds its step
//! sites: branches, loops and parallel groups around the sites, in source order. It only
//! describes the body for graphs (`reprise::graph`); it never takes part in a site key,
//! a correlation id or the fingerprint.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Expr, Pat};

use crate::parse::compact;

/// The longest label kept, in characters; longer ones end in `…`.
const LABEL_CHARS: usize = 48;

/// One element of a body's shape (mirrors `reprise::Shape`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShapeNode {
    /// The site at this index of the manifest.
    Site(usize),
    /// `if`/`else if`/`else` (label `if`) or `match <x>`: one arm per branch, labelled by
    /// its condition or pattern. An `if` without `else` has an empty `else` arm.
    Branch {
        label: String,
        arms: Vec<(String, Vec<ShapeNode>)>,
    },
    /// `for`/`while`/`loop`, labelled by its header.
    Loop { label: String, body: Vec<ShapeNode> },
    /// `join!`/`try_join!` (one branch per argument) or `join_all`/`try_join_all`/`fan_out`
    /// (one branch, run once per item).
    Parallel {
        label: String,
        branches: Vec<Vec<ShapeNode>>,
    },
}

/// Collects the shape: a stack of open sequences, the innermost last.
#[derive(Debug)]
pub(crate) struct ShapeBuilder {
    frames: Vec<Vec<ShapeNode>>,
}

impl Default for ShapeBuilder {
    fn default() -> Self {
        ShapeBuilder {
            frames: vec![Vec::new()],
        }
    }
}

impl ShapeBuilder {
    /// Opens a nested sequence (an arm, a loop body, a parallel branch).
    pub(crate) fn open(&mut self) {
        self.frames.push(Vec::new());
    }

    /// Closes the innermost sequence and returns it.
    pub(crate) fn close(&mut self) -> Vec<ShapeNode> {
        if self.frames.len() > 1 {
            self.frames.pop().unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// Appends `node` to the innermost sequence.
    pub(crate) fn push(&mut self, node: ShapeNode) {
        if let Some(frame) = self.frames.last_mut() {
            frame.push(node);
        }
    }

    /// Appends a branch, unless none of its arms has a site.
    pub(crate) fn branch(&mut self, label: String, arms: Vec<(String, Vec<ShapeNode>)>) {
        if arms.iter().any(|(_, body)| !body.is_empty()) {
            self.push(ShapeNode::Branch { label, arms });
        }
    }

    /// Appends a loop, unless its body has no site.
    pub(crate) fn looped(&mut self, label: String, body: Vec<ShapeNode>) {
        if !body.is_empty() {
            self.push(ShapeNode::Loop { label, body });
        }
    }

    /// Appends a parallel group, unless none of its branches has a site; a `join!` with
    /// a single branch that has sites is kept as a group (it still runs concurrently with
    /// the others, which only compute).
    pub(crate) fn parallel(&mut self, label: String, branches: Vec<Vec<ShapeNode>>) {
        if branches.iter().any(|body| !body.is_empty()) {
            let branches = branches.into_iter().filter(|b| !b.is_empty()).collect();
            self.push(ShapeNode::Parallel { label, branches });
        }
    }

    /// The whole body's shape.
    pub(crate) fn finish(mut self) -> Vec<ShapeNode> {
        self.frames.truncate(1);
        self.frames.pop().unwrap_or_default()
    }
}

/// A short label for a piece of source: compacted, cut at [`LABEL_CHARS`].
pub(crate) fn label(tokens: &impl ToTokens) -> String {
    cut(compact(tokens))
}

/// A short label for a condition or scrutinee, with spaces around binary operators
/// (`order.n > 10 && ok`).
pub(crate) fn expr_label(expr: &Expr) -> String {
    cut(expr_text(expr))
}

/// A short label for a match arm's pattern, with its guard (`Some(x) if x > 0`).
pub(crate) fn pat_label(pat: &Pat) -> String {
    cut(pat_text(pat))
}

fn expr_text(expr: &Expr) -> String {
    match expr {
        Expr::Binary(binary) => format!(
            "{} {} {}",
            expr_text(&binary.left),
            compact(&binary.op),
            expr_text(&binary.right)
        ),
        Expr::Unary(unary) => format!("{}{}", compact(&unary.op), expr_text(&unary.expr)),
        Expr::Paren(paren) => format!("({})", expr_text(&paren.expr)),
        Expr::Let(binding) => format!(
            "let {} = {}",
            pat_text(&binding.pat),
            expr_text(&binding.expr)
        ),
        other => compact(other),
    }
}

fn pat_text(pat: &Pat) -> String {
    match pat {
        Pat::Guard(guarded) => format!(
            "{} if {}",
            pat_text(&guarded.pat),
            expr_text(&guarded.guard)
        ),
        Pat::Or(or) => or
            .cases
            .iter()
            .map(pat_text)
            .collect::<Vec<_>>()
            .join(" | "),
        other => compact(other),
    }
}

fn cut(text: String) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The tokens of a shape sequence: `&[<private>::Shape::…, …]`.
pub(crate) fn tokens(nodes: &[ShapeNode], private: &TokenStream) -> TokenStream {
    let items = nodes.iter().map(|node| node_tokens(node, private));
    quote!(&[#(#items),*])
}

/// The elements of a shape sequence, for a `static [Shape; N]`.
pub(crate) fn elements(nodes: &[ShapeNode], private: &TokenStream) -> Vec<TokenStream> {
    nodes
        .iter()
        .map(|node| node_tokens(node, private))
        .collect()
}

fn node_tokens(node: &ShapeNode, private: &TokenStream) -> TokenStream {
    match node {
        ShapeNode::Site(index) => {
            let index = proc_macro2::Literal::usize_unsuffixed(*index);
            quote!(#private::Shape::Site(#index))
        }
        ShapeNode::Branch { label, arms } => {
            let arms = arms.iter().map(|(arm, body)| {
                let body = tokens(body, private);
                quote!(#private::ShapeArm { label: #arm, body: #body })
            });
            quote!(#private::Shape::Branch { label: #label, arms: &[#(#arms),*] })
        }
        ShapeNode::Loop { label, body } => {
            let body = tokens(body, private);
            quote!(#private::Shape::Loop { label: #label, body: #body })
        }
        ShapeNode::Parallel { label, branches } => {
            let branches = branches.iter().map(|b| tokens(b, private));
            quote!(#private::Shape::Parallel { label: #label, branches: &[#(#branches),*] })
        }
    }
}
