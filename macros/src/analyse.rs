//! The workflow body pass: finds every step call site, rewrites it into a recorded step,
//! reads `#[step(id = "…")]` pins and rejects sources of non-determinism. All problems
//! are collected into [`Errors`] so the user sees them together.

use std::collections::BTreeMap;

use proc_macro2::{Delimiter, Ident, Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Block, Expr, ExprMethodCall, ExprPath, Item, ItemUse, LitStr, Macro, Path, Stmt,
    Token, UseTree,
};

use crate::errors::Errors;
use crate::parse::compact;
use crate::shape::{ShapeBuilder, ShapeNode, expr_label, label, pat_label};

/// What a call site does (mirrors `reprise::SiteKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SiteKind {
    /// `x.run(input)`.
    Run,
    /// `ctx.sleep(d)`.
    Sleep,
    /// `ctx.sleep_until(t)`.
    SleepUntil,
    /// `ctx.hook()`.
    Hook,
    /// `prompt_llm(prompt)`.
    Llm,
    /// `agent.prompt(message)`.
    Prompt,
    /// `wf.start(input)`: a child run.
    Start,
    /// `wf.start_after(delay, input)`: a delayed child run.
    StartAfter,
    /// `reprise::select! { .. }`.
    Select,
    /// `<expr>.timeout(d)`.
    Timeout,
}

impl SiteKind {
    /// The fixed key name of a site (as the runtime derives it); `None` for `Run` and
    /// `Prompt`, whose key is the callee's slug.
    fn wait_name(self) -> Option<&'static str> {
        match self {
            SiteKind::Run | SiteKind::Prompt => None,
            // Keyed `start:<slug>` by the runtime: never the key of a wait.
            SiteKind::Start | SiteKind::StartAfter => None,
            SiteKind::Sleep => Some("sleep"),
            SiteKind::SleepUntil => Some("sleep-until"),
            SiteKind::Hook => Some("hook"),
            SiteKind::Llm => Some("llm"),
            SiteKind::Select => Some("select"),
            SiteKind::Timeout => Some("timeout"),
        }
    }

    /// The variant name in `reprise::__private::SiteKind`.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            SiteKind::Run => "Run",
            SiteKind::Sleep => "Sleep",
            SiteKind::SleepUntil => "SleepUntil",
            SiteKind::Hook => "Hook",
            SiteKind::Llm => "Llm",
            SiteKind::Prompt => "Prompt",
            SiteKind::Start => "Start",
            SiteKind::StartAfter => "StartAfter",
            SiteKind::Select => "Select",
            SiteKind::Timeout => "Timeout",
        }
    }
}

/// One call site found in a workflow body.
#[derive(Debug)]
pub(crate) struct SiteRecord {
    /// What it does.
    pub(crate) kind: SiteKind,
    /// The receiver as written (`research_signup`, `ctx`).
    pub(crate) callee: String,
    /// The key sites are numbered under: the last path segment of a `.run` receiver
    /// (so `notify` and `crate::notify` share ordinals), empty for waits.
    pub(crate) group: String,
    /// 1-based rank among the sites of the same kind and group, in source order.
    pub(crate) ordinal: u32,
    /// A key pinned with `#[step(id = "…")]`.
    pub(crate) pinned: Option<String>,
    /// Source line of the receiver, for display.
    pub(crate) line: u32,
}

/// The ident of the generated `&Ctx` local every rewritten call uses.
pub(crate) fn ctx_ref_ident(span: Span) -> Ident {
    Ident::new("__reprise_ctx", Span::mixed_site().located_at(span))
}

/// The ident of the generated static site manifest.
pub(crate) fn sites_ident() -> Ident {
    Ident::new("__REPRISE_SITES", Span::mixed_site())
}

/// Rewrites the step calls of a workflow body in place and returns its site manifest and
/// its control-flow shape (the sites inside branches, loops and parallel groups).
///
/// `ctx` is the identifier the user bound the `Ctx` parameter to, if any: only
/// `<ctx>.sleep(..)`, `<ctx>.sleep_until(..)` and `<ctx>.hook()` are waits.
pub(crate) fn rewrite_body(
    block: &mut Block,
    ctx: Option<Ident>,
    private: &TokenStream,
    errors: &Errors,
) -> (Vec<SiteRecord>, Vec<ShapeNode>) {
    let mut rewriter = Rewriter {
        errors,
        private,
        ctx,
        sites: Vec::new(),
        pinned: BTreeMap::new(),
        imports: Vec::new(),
        shape: ShapeBuilder::default(),
    };
    rewriter.visit_block_mut(block);
    let Rewriter {
        mut sites,
        pinned,
        shape,
        ..
    } = rewriter;
    let mut counters: BTreeMap<(SiteKind, String), u32> = BTreeMap::new();
    for site in &mut sites {
        // `.start` and `.start_after` sites of one callee share ordinals (one key space).
        let kind = match site.kind {
            SiteKind::StartAfter => SiteKind::Start,
            kind => kind,
        };
        let n = counters.entry((kind, site.group.clone())).or_insert(0);
        *n += 1;
        site.ordinal = *n;
    }
    // The keys of waits are known here (`sleep`, `hook@2`, …): a pinned id must not take one.
    for site in sites.iter().filter(|s| s.pinned.is_none()) {
        let Some(name) = site.kind.wait_name() else {
            continue;
        };
        let key = match site.ordinal {
            0 | 1 => name.to_owned(),
            n => format!("{name}@{n}"),
        };
        if let Some(span) = pinned.get(&key) {
            errors.error(
                *span,
                format!(
                    "step id {key:?} is already the id of the `{}` on line {}: pin another id",
                    site_label(site),
                    site.line
                ),
            );
        }
    }
    (sites, shape.finish())
}

struct Rewriter<'a> {
    errors: &'a Errors,
    /// `<crate>::__private`.
    private: &'a TokenStream,
    /// The user's name for the `Ctx` parameter.
    ctx: Option<Ident>,
    sites: Vec<SiteRecord>,
    /// Pinned ids seen so far, with the span of their `#[step]`.
    pinned: BTreeMap<String, Span>,
    /// The `use` items of the blocks being visited, outermost first.
    imports: Vec<Imports>,
    /// The control-flow shape around the sites.
    shape: ShapeBuilder,
}

/// What the `use` items of one block bring into scope.
#[derive(Default)]
struct Imports {
    /// Local name → the full path it stands for (`Wall` → `std::time::SystemTime`).
    names: Vec<(String, Vec<String>)>,
    /// The prefixes of glob imports (`use rand::prelude::*;` → `rand::prelude`).
    globs: Vec<Vec<String>>,
}

/// One name (or glob) a `use` item brings into scope.
struct UseLeaf {
    /// The full path as written, `self` resolved (`std::time::SystemTime`).
    path: Vec<String>,
    /// The local name (`Wall`), `None` for a glob.
    local: Option<String>,
    /// The leaf's tokens, for an error span.
    tokens: TokenStream,
}

/// Macros whose arguments are comma-separated expressions: rewritten inside.
const EXPR_MACROS: &[&str] = &[
    "join",
    "try_join",
    "vec",
    "format",
    "format_args",
    "print",
    "println",
    "eprint",
    "eprintln",
    "write",
    "writeln",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "panic",
    "unreachable",
    "todo",
    "unimplemented",
    "dbg",
    // tracing / log: their `?x`, `%x` and `target: ".."` forms fall back to the token scan.
    "trace",
    "debug",
    "info",
    "warn",
    "error",
];

const REWRITTEN_MACROS: &str = "`join!`, `try_join!`, `vec!`, `format!`, `println!`, `write!`, `assert!`, `panic!`, `dbg!`, `matches!` and tracing's `info!`-style macros";

impl Rewriter<'_> {
    fn is_ctx(&self, expr: &Expr) -> bool {
        let Some(ctx) = &self.ctx else { return false };
        match expr {
            Expr::Path(p) => p.qself.is_none() && p.path.is_ident(ctx),
            _ => false,
        }
    }

    fn push_site(&mut self, kind: SiteKind, receiver: &Expr) -> usize {
        let callee = compact(receiver);
        let group = match (kind, receiver) {
            (
                SiteKind::Run | SiteKind::Prompt | SiteKind::Start | SiteKind::StartAfter,
                Expr::Path(p),
            ) if p.qself.is_none() => p
                .path
                .segments
                .last()
                .map_or_else(|| callee.clone(), |s| s.ident.to_string()),
            (SiteKind::Run | SiteKind::Prompt | SiteKind::Start | SiteKind::StartAfter, _) => {
                callee.clone()
            }
            _ => String::new(),
        };
        let line = first_span(receiver).start().line;
        self.sites.push(SiteRecord {
            kind,
            callee,
            group,
            ordinal: 0,
            pinned: None,
            line: u32::try_from(line).unwrap_or(0),
        });
        let index = self.sites.len() - 1;
        self.shape.push(ShapeNode::Site(index));
        index
    }

    /// Rewrites a step method call, or returns `None` to leave it alone.
    fn method_call(&mut self, call: &mut ExprMethodCall) -> Option<Expr> {
        let method = call.method.to_string();
        let kind = match method.as_str() {
            // `ctx.run("name", || async { .. })`: an inline step, the `Ctx` method.
            "run" if self.is_ctx(&call.receiver) && call.args.len() == 2 => return None,
            "run" => SiteKind::Run,
            "prompt" => SiteKind::Prompt,
            "sleep" if self.is_ctx(&call.receiver) => SiteKind::Sleep,
            "sleep_until" if self.is_ctx(&call.receiver) => SiteKind::SleepUntil,
            "hook" if self.is_ctx(&call.receiver) => SiteKind::Hook,
            // `ctx.start(..)` is not a child run (the receiver must be a workflow).
            "start" if !self.is_ctx(&call.receiver) => SiteKind::Start,
            "start_after" if !self.is_ctx(&call.receiver) => SiteKind::StartAfter,
            _ => return None,
        };
        let expected_args = match kind {
            SiteKind::Hook => 0,
            SiteKind::StartAfter => 2,
            _ => 1,
        };
        if call.args.len() != expected_args {
            let message = match kind {
                SiteKind::Run => format!(
                    "a step's `.run(..)` takes exactly one input value, found {}: pass several values as one struct or tuple, `step.run((a, b))`; if `{}` is not a step but has its own `run` method, call it as a path so reprise leaves it alone: `Type::run(&value, ..)`",
                    call.args.len(),
                    compact(&call.receiver)
                ),
                SiteKind::Sleep => "`ctx.sleep(..)` takes exactly one duration, e.g. `ctx.sleep(Duration::from_secs(60))` or `ctx.sleep(\"1h\")`".to_owned(),
                SiteKind::SleepUntil => "`ctx.sleep_until(..)` takes exactly one point in time, e.g. `ctx.sleep_until(deadline)`".to_owned(),
                SiteKind::Hook => "`ctx.hook()` takes no arguments: name the payload type with `ctx.hook::<T>()` or a type annotation, `let x: T = ctx.hook().await?;`".to_owned(),
                SiteKind::Prompt => format!(
                    "an agent's `.prompt(..)` takes exactly one message, found {}; if `{}` is not an agent but has its own `prompt` method, call it as a path so reprise leaves it alone: `Type::prompt(&value, ..)`",
                    call.args.len(),
                    compact(&call.receiver)
                ),
                SiteKind::Start => format!(
                    "a child run's `.start(..)` takes exactly one input value, found {}: pass several values as one struct or tuple, `workflow.start((a, b))`; if `{}` is not a workflow but has its own `start` method, call it as a path so reprise leaves it alone: `Type::start(&value, ..)`",
                    call.args.len(),
                    compact(&call.receiver)
                ),
                SiteKind::StartAfter => format!(
                    "a child run's `.start_after(..)` takes a delay and one input value, found {} arguments: `workflow.start_after(Duration::from_secs(60), input)`; if `{}` is not a workflow but has its own `start_after` method, call it as a path: `Type::start_after(&value, ..)`",
                    call.args.len(),
                    compact(&call.receiver)
                ),
                SiteKind::Llm | SiteKind::Select | SiteKind::Timeout => unreachable_kind(),
            };
            self.errors.error(call.method.span(), message);
            return None;
        }
        if let Some(turbofish) = &call.turbofish
            && kind != SiteKind::Hook
        {
            self.errors.error_spanned_by(
                turbofish,
                format!(
                    "`.{method}` takes no generic arguments in a workflow body: the step's types come from its receiver"
                ),
            );
            return None;
        }

        let index = self.push_site(kind, &call.receiver);
        // Nested calls (a step call inside the input expression) get their own sites.
        self.visit_expr_mut(&mut call.receiver);
        for arg in call.args.iter_mut() {
            self.visit_expr_mut(arg);
        }

        // Generated tokens keep the macro's hygiene but point at the user's `.run`, so a
        // type error in the call is reported there and not at the attribute.
        let span = Span::call_site().located_at(call.method.span());
        let private = respan(self.private.clone(), span);
        let ctx = ctx_ref_ident(span);
        let sites = sites_ident();
        let index = Literal::usize_unsuffixed(index);
        let site = quote_spanned!(span=> &#sites[#index]);
        let receiver = &call.receiver;
        let tokens = match kind {
            SiteKind::Run => {
                let arg = &call.args[0];
                let receiver_span = Span::call_site().located_at(receiver.span());
                let step = quote_spanned!(receiver_span=> &#receiver);
                quote_spanned!(span=> #private::run_step(#ctx, #site, #step, #arg))
            }
            SiteKind::Sleep => {
                let arg = &call.args[0];
                quote_spanned!(span=> #private::sleep(#ctx, #site, #arg))
            }
            SiteKind::SleepUntil => {
                let arg = &call.args[0];
                quote_spanned!(span=> #private::sleep_until(#ctx, #site, #arg))
            }
            SiteKind::Hook => {
                let turbofish = match &call.turbofish {
                    Some(turbofish) => turbofish.to_token_stream(),
                    None => quote!(::<_>),
                };
                quote_spanned!(span=> #private::hook #turbofish (#ctx, #site))
            }
            SiteKind::Prompt => {
                let arg = &call.args[0];
                let receiver_span = Span::call_site().located_at(receiver.span());
                let agent = quote_spanned!(receiver_span=> &#receiver);
                quote_spanned!(span=> #private::bind_agent_prompt(#ctx, #site, #agent, #arg))
            }
            SiteKind::Start => {
                let arg = &call.args[0];
                let receiver_span = Span::call_site().located_at(receiver.span());
                let workflow = quote_spanned!(receiver_span=> &#receiver);
                quote_spanned!(span=> #private::start_child(#ctx, #site, #workflow, #arg))
            }
            SiteKind::StartAfter => {
                let delay = &call.args[0];
                let arg = &call.args[1];
                let receiver_span = Span::call_site().located_at(receiver.span());
                let workflow = quote_spanned!(receiver_span=> &#receiver);
                quote_spanned!(span=> #private::start_child_after(#ctx, #site, #workflow, #delay, #arg))
            }
            SiteKind::Llm | SiteKind::Select | SiteKind::Timeout => return None,
        };
        match syn::parse2::<Expr>(tokens) {
            Ok(expr) => Some(expr),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// Rewrites `<awaitable>.timeout(d)` (a step call, `agent.prompt(..)`, `prompt_llm(..)`,
    /// an inline step, a signal's `recv()`, a child run, an event wait) into a durable
    /// timeout, or returns `None` to leave the call alone (`ctx.hook::<T>().timeout(d)`
    /// keeps the hook's own recorded deadline; other types' `timeout` methods are theirs).
    fn timeout_call(&mut self, call: &mut ExprMethodCall) -> Option<Expr> {
        if call.method != "timeout"
            || call.args.len() != 1
            || call.turbofish.is_some()
            || !self.is_awaitable(&call.receiver)
        {
            return None;
        }
        let index = self.push_site(SiteKind::Timeout, &call.receiver);
        self.visit_expr_mut(&mut call.receiver);
        for arg in call.args.iter_mut() {
            self.visit_expr_mut(arg);
        }
        let span = Span::call_site().located_at(call.method.span());
        let private = respan(self.private.clone(), span);
        let ctx = ctx_ref_ident(span);
        let sites = sites_ident();
        let index = Literal::usize_unsuffixed(index);
        let receiver = &call.receiver;
        let arg = &call.args[0];
        let tokens =
            quote_spanned!(span=> #private::timeout(#ctx, &#sites[#index], #receiver, #arg));
        match syn::parse2::<Expr>(tokens) {
            Ok(expr) => Some(expr),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// Whether `.timeout(..)` on `expr` is a durable timeout: `expr` is a step call or
    /// another recorded awaitable (not `ctx.hook()`, whose `.timeout` is its own).
    fn is_awaitable(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Paren(e) => self.is_awaitable(&e.expr),
            Expr::MethodCall(call) => {
                let method = call.method.to_string();
                is_step_call(expr)
                    || matches!(
                        method.as_str(),
                        "recv" | "wait_for_event" | "matching" | "start" | "start_after"
                    )
            }
            _ => is_step_call(expr),
        }
    }

    /// Whether `call` is an inline step: `<ctx>.run(name, f)` or `<ctx>.run_with(name,
    /// options, f)`.
    fn is_inline_step(&self, call: &ExprMethodCall) -> bool {
        self.is_ctx(&call.receiver)
            && matches!(
                (call.method.to_string().as_str(), call.args.len()),
                ("run", 2) | ("run_with", 3)
            )
    }

    /// Whether `path` names reprise's durable `select!` (`reprise::select`, the `crate = ..`
    /// override's `select`, or `select` imported from either in the body).
    fn is_durable_select(&self, path: &Path) -> bool {
        let names: Vec<String> = match self.resolve(path) {
            Some(resolved) => resolved,
            None => path.segments.iter().map(|s| s.ident.to_string()).collect(),
        };
        let Some((last, prefix)) = names.split_last() else {
            return false;
        };
        if last != "select" || prefix.is_empty() {
            return false;
        }
        let prefix = prefix.join("::");
        let krate = self
            .private
            .to_string()
            .replace(' ', "")
            .trim_start_matches("::")
            .trim_end_matches("::__private")
            .to_owned();
        prefix == "reprise" || prefix == krate
    }

    /// Rewrites `reprise::select! { pat = awaitable => body, .. }` into a durable select:
    /// every awaitable is created first (taking its step id, in source order), then each is
    /// boxed into a future of a generated enum, raced by `__private::select` and matched.
    fn rewrite_select(&mut self, mac: &Macro) -> Option<Expr> {
        let mut arms = match parse_select_arms.parse2(mac.tokens.clone()) {
            Ok(arms) => arms,
            Err(error) => {
                self.errors.push(error);
                return None;
            }
        };
        if arms.is_empty() {
            self.errors.error_spanned_by(
                &mac.path,
                "`reprise::select!` needs at least one arm: `pattern = awaitable => body`",
            );
            return None;
        }
        let receiver = Expr::Path(ExprPath {
            attrs: Vec::new(),
            qself: None,
            path: mac.path.clone(),
        });
        let index = self.push_site(SiteKind::Select, &receiver);
        let mut shape_arms = Vec::new();
        for arm in &mut arms {
            let text = pat_label(&arm.pat);
            self.shape.open();
            self.visit_expr_mut(&mut arm.future);
            self.visit_pat_mut(&mut arm.pat);
            self.visit_expr_mut(&mut arm.body);
            shape_arms.push((text, self.shape.close()));
        }
        self.shape.branch("select!".to_owned(), shape_arms);

        let span = Span::call_site().located_at(first_span(&mac.path));
        let private = respan(self.private.clone(), span);
        let ctx = ctx_ref_ident(span);
        let sites = sites_ident();
        let index = Literal::usize_unsuffixed(index);
        let hidden = |name: String| Ident::new(&name, Span::mixed_site().located_at(span));
        let out = hidden("__RepriseSelect".to_owned());
        let branches = hidden("__reprise_branches".to_owned());
        let created = hidden("__reprise_created".to_owned());
        let capture = hidden("__reprise_capture".to_owned());
        let params: Vec<Ident> = (0..arms.len()).map(|i| hidden(format!("__T{i}"))).collect();
        let variants: Vec<Ident> = (0..arms.len()).map(|i| hidden(format!("B{i}"))).collect();
        let locals: Vec<Ident> = (0..arms.len())
            .map(|i| hidden(format!("__reprise_branch_{i}")))
            .collect();
        let futures = arms.iter().map(|arm| &arm.future);
        let pats = arms.iter().map(|arm| &arm.pat);
        let bodies = arms.iter().map(|arm| &arm.body);
        let infer = arms.iter().map(|_| quote!(_));
        let tokens = quote_spanned! {span=>
            {
                #[allow(non_camel_case_types, clippy::large_enum_variant)]
                enum #out<#(#params),*> { #(#variants(#params)),* }
                let mut #created = ::std::vec::Vec::new();
                #(
                    let #capture = #private::IdCapture::start(#ctx);
                    let #locals = #futures;
                    #created.push(#capture.finish());
                )*
                let #branches: ::std::vec::Vec<#private::Branch<'_, #out<#(#infer),*>>> = ::std::vec![
                    #(#private::Box::pin(async move { #out::#variants(#locals.await) })),*
                ];
                match #private::select(#ctx, &#sites[#index], #branches, #created).await? {
                    #(#out::#variants(#pats) => #bodies,)*
                }
            }
        };
        match syn::parse2::<Expr>(tokens) {
            Ok(expr) => Some(expr),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// Rewrites `prompt_llm(prompt)` (by any path ending in `prompt_llm`) into an LLM step
    /// bound to the run, or returns `None` to leave the call alone.
    fn llm_call(&mut self, call: &mut syn::ExprCall) -> Option<Expr> {
        let Expr::Path(func) = &*call.func else {
            return None;
        };
        let last = func.path.segments.last()?;
        if last.ident != "prompt_llm" || func.qself.is_some() {
            return None;
        }
        if call.args.len() != 1 {
            self.errors.error_spanned_by(
                &call.func,
                format!(
                    "`prompt_llm(..)` takes exactly one prompt, found {}: build it first, e.g. `prompt_llm(format!(\"…{{x}}\"))`, and set the rest with `.model(..)`, `.system(..)`, `.output::<T>()`",
                    call.args.len()
                ),
            );
            return None;
        }
        let index = self.push_site(SiteKind::Llm, &call.func);
        for arg in call.args.iter_mut() {
            self.visit_expr_mut(arg);
        }
        let span = Span::call_site().located_at(last.ident.span());
        let private = respan(self.private.clone(), span);
        let ctx = ctx_ref_ident(span);
        let sites = sites_ident();
        let index = Literal::usize_unsuffixed(index);
        let arg = &call.args[0];
        let tokens = quote_spanned!(span=> #private::bind_prompt_llm(#ctx, &#sites[#index], #arg));
        match syn::parse2::<Expr>(tokens) {
            Ok(expr) => Some(expr),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// Rewrites inside a known macro whose arguments are expressions, or rejects a step
    /// call hidden in any other macro.
    fn rewrite_macro(&mut self, mac: &mut Macro) {
        let name = mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        // Any `select!` races, whether the steps are inside it or made before it; the
        // path is resolved through the body's `use` items (`use tokio::select as race;`).
        let resolved = self.resolve(&mac.path);
        let real_name = resolved
            .as_ref()
            .and_then(|path| path.last().cloned())
            .unwrap_or_else(|| name.clone());
        if matches!(real_name.as_str(), "select" | "select_biased") {
            let subject = subject(&mac.path, resolved.as_deref(), "!");
            let message = problem_message(Problem::Race, &subject, "");
            self.errors.error_spanned_by(&mac.path, message);
            return;
        }
        if EXPR_MACROS.contains(&name.as_str()) {
            let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
            if let Ok(mut args) = parser.parse2(mac.tokens.clone()) {
                let parallel = matches!(name.as_str(), "join" | "try_join");
                let mut branches = Vec::new();
                for arg in args.iter_mut() {
                    if parallel {
                        self.shape.open();
                    }
                    self.visit_expr_mut(arg);
                    if parallel {
                        branches.push(self.shape.close());
                    }
                }
                if parallel {
                    self.shape.parallel(format!("{name}!"), branches);
                }
                mac.tokens = args.into_token_stream();
                return;
            }
            if name == "vec" {
                let parser = |input: ParseStream| {
                    let elem: Expr = input.parse()?;
                    let semi: Token![;] = input.parse()?;
                    let len: Expr = input.parse()?;
                    Ok((elem, semi, len))
                };
                if let Ok((mut elem, semi, mut len)) = parser.parse2(mac.tokens.clone()) {
                    self.visit_expr_mut(&mut elem);
                    self.visit_expr_mut(&mut len);
                    mac.tokens = quote!(#elem #semi #len);
                    return;
                }
            }
        } else if matches!(
            name.as_str(),
            "matches" | "assert_matches" | "debug_assert_matches"
        ) {
            let parser = |input: ParseStream| {
                let scrutinee: Expr = input.parse()?;
                let rest: TokenStream = input.parse()?;
                Ok((scrutinee, rest))
            };
            if let Ok((mut scrutinee, rest)) = parser.parse2(mac.tokens.clone()) {
                self.visit_expr_mut(&mut scrutinee);
                if let Some(method) = find_step_call(rest.clone(), self.ctx.as_ref()) {
                    self.reject_macro(mac, &name, &method);
                }
                mac.tokens = quote!(#scrutinee #rest);
                return;
            }
        }
        if let Some(method) = find_step_call(mac.tokens.clone(), self.ctx.as_ref()) {
            self.reject_macro(mac, &name, &method);
        }
    }

    /// Rejects a step call hidden in a macro reprise cannot rewrite (`select!` is rejected
    /// earlier, in [`Rewriter::rewrite_macro`], with or without step calls).
    fn reject_macro(&self, mac: &Macro, name: &str, method: &str) {
        let example = match method {
            "run" => "`let x = step.run(..).await?;`",
            "prompt" => "`let reply = agent.prompt(..).await?;`",
            "prompt_llm" => "`let text = prompt_llm(..).await?;`",
            _ => "`ctx.sleep(..).await?;`",
        };
        let call = if method == "prompt_llm" {
            "prompt_llm(..)".to_owned()
        } else {
            format!(".{method}(..)")
        };
        let message = format!(
            "step call `{call}` inside `{name}!` cannot be recorded: reprise only rewrites step calls inside {REWRITTEN_MACROS}, whose arguments are plain expressions; move the call out of the macro, e.g. {example}, and pass the result in"
        );
        self.errors.error_spanned_by(&mac.path, message);
    }

    /// Rejects a path to a well-known source of non-determinism (resolved through the
    /// body's `use` items). Returns the expression to put in its place when the path only
    /// warns (an environment read): the path with a deprecation warning attached.
    fn lint_path(&self, expr: &ExprPath) -> Option<Expr> {
        if expr.qself.is_some() {
            return None;
        }
        let resolved = self.resolve(&expr.path);
        let problem = match &resolved {
            Some(full) => classify(&strs(full)),
            None => nondeterministic(&expr.path),
        }?;
        let subject = subject(&expr.path, resolved.as_deref(), "");
        let message = problem_message(problem, &subject, self.ctx_hint());
        if problem.is_warning() {
            return Some(warning_expr(expr, &message));
        }
        self.errors.error_spanned_by(&expr.path, message);
        None
    }

    /// Rejects method-call forms: `.race(..)`, `.timeout(..)` right on a step call and
    /// `UNIX_EPOCH.elapsed()`.
    fn lint_method(&self, call: &ExprMethodCall) {
        let method = call.method.to_string();
        match method.as_str() {
            "race" | "race_ok" => {
                let subject = format!("`.{method}(..)`");
                let message = format!(
                    "{} (if `{}` has its own method named `{method}`, call it as a path so reprise leaves it alone: `Type::{method}(&value, ..)`)",
                    problem_message(Problem::Race, &subject, ""),
                    compact(&call.receiver)
                );
                self.errors.error(call.method.span(), message);
            }
            "timeout" | "timeout_at" if is_step_call(&call.receiver) => {
                let subject = format!("`.{method}(..)` on a step");
                let message = problem_message(Problem::Timeout, &subject, "");
                self.errors.error(call.method.span(), message);
            }
            "elapsed"
                if call.args.is_empty()
                    && matches!(
                        &*call.receiver,
                        Expr::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "UNIX_EPOCH")
                    ) =>
            {
                let subject = format!("`{}.elapsed()`", compact(&call.receiver));
                let message = problem_message(Problem::Now, &subject, self.ctx_hint());
                self.errors.error_spanned_by(call, message);
            }
            _ => {}
        }
    }

    /// The hint appended to a recorded replacement when the workflow has no `Ctx`.
    fn ctx_hint(&self) -> &'static str {
        if self.ctx.is_some() {
            ""
        } else {
            " (give the workflow a first parameter `ctx: Ctx` for it)"
        }
    }

    /// The full path `path` stands for through the `use` items of the enclosing blocks, or
    /// `None` when no `use` in the body applies (the path is then taken as written).
    fn resolve(&self, path: &Path) -> Option<Vec<String>> {
        if path.leading_colon.is_some() {
            return None;
        }
        let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve_names(&names)
    }

    fn resolve_names(&self, names: &[String]) -> Option<Vec<String>> {
        let (first, rest) = names.split_first()?;
        for scope in self.imports.iter().rev() {
            if let Some((_, full)) = scope.names.iter().rev().find(|(local, _)| local == first) {
                let mut resolved = full.clone();
                resolved.extend(rest.iter().cloned());
                return Some(resolved);
            }
        }
        // A bare name may come from a glob import: taken only when that makes it a
        // known source (`use tokio::time::*;` + `timeout(..)`).
        if rest.is_empty() {
            for scope in self.imports.iter().rev() {
                for glob in scope.globs.iter().rev() {
                    let mut candidate = glob.clone();
                    candidate.push(first.clone());
                    if classify(&strs(&candidate)).is_some() {
                        return Some(candidate);
                    }
                }
            }
        }
        None
    }

    /// Records what a `use` item in the body brings into scope, and rejects it when it
    /// imports a rejected item (the calls through it are rejected too).
    fn collect_use(&self, item: &ItemUse, imports: &mut Imports) {
        let mut leaves = Vec::new();
        use_leaves(&item.tree, &mut Vec::new(), &mut leaves);
        for leaf in leaves {
            let path = if item.leading_colon.is_some() {
                leaf.path.clone()
            } else {
                self.resolve_names(&leaf.path)
                    .unwrap_or_else(|| leaf.path.clone())
            };
            let names = strs(&path);
            let problem = match leaf.local {
                Some(_) => classify(&names).or_else(|| rejected_module(&names)),
                None => rejected_module(&names),
            };
            if let Some(problem) = problem.filter(|p| !p.is_warning()) {
                let glob = if leaf.local.is_none() { "::*" } else { "" };
                let subject = format!("`{}{glob}` (imported here)", path.join("::"));
                let message = problem_message(problem, &subject, self.ctx_hint());
                self.errors.error_spanned_by(&leaf.tokens, message);
            }
            match leaf.local {
                Some(local) => imports.names.push((local, path)),
                None => imports.globs.push(path),
            }
        }
    }

    /// Handles `#[step(id = "…")]` on a statement: strips it and pins the statement's site.
    fn visit_pinned_stmt(&mut self, stmt: &mut Stmt, attr: Attribute) {
        let before = self.sites.len();
        self.visit_stmt_inner(stmt);
        let Some(id) = parse_step_attr(&attr, self.errors) else {
            return;
        };
        let new: Vec<usize> = (before..self.sites.len()).collect();
        match new.as_slice() {
            [] => self.errors.error_spanned_by(
                &attr,
                format!(
                    "`#[step(id = {:?})]` pins the id of the step call in its statement, but this statement has none: put it on a statement that calls `.run(..)`, `ctx.sleep(..)` or `ctx.hook()`",
                    id.value()
                ),
            ),
            [index] => {
                let value = id.value();
                if self.sites[*index].pinned.is_some() {
                    self.errors.error_spanned_by(
                        &attr,
                        "this step call is already pinned by an inner `#[step]`: keep only one",
                    );
                } else if let Some(first) = self.pinned.get(&value) {
                    self.errors.error(
                        id.span(),
                        format!(
                            "duplicate step id {value:?}: step ids must be unique within a workflow, and {value:?} is already pinned above; choose another id"
                        ),
                    );
                    self.errors
                        .error(*first, format!("step id {value:?} is first pinned here"));
                } else {
                    self.pinned.insert(value.clone(), id.span());
                    self.sites[*index].pinned = Some(value);
                }
            }
            several => {
                let calls: Vec<String> = several
                    .iter()
                    .map(|i| {
                        let site = &self.sites[*i];
                        format!("`{}`", site_label(site))
                    })
                    .collect();
                self.errors.error_spanned_by(
                    &attr,
                    format!(
                        "`#[step(id = {:?})]` pins the id of one step call, but this statement has {} ({}): put each call into its own statement and pin them one by one",
                        id.value(),
                        several.len(),
                        calls.join(", ")
                    ),
                );
            }
        }
    }

    fn visit_stmt_inner(&mut self, stmt: &mut Stmt) {
        match stmt {
            // Items nested in the body (fns, impls) are not part of the workflow.
            Stmt::Item(_) => {}
            _ => visit_mut::visit_stmt_mut(self, stmt),
        }
    }
}

fn site_label(site: &SiteRecord) -> String {
    match site.kind {
        SiteKind::Run => format!("{}.run(..)", site.callee),
        SiteKind::Sleep => format!("{}.sleep(..)", site.callee),
        SiteKind::SleepUntil => format!("{}.sleep_until(..)", site.callee),
        SiteKind::Hook => format!("{}.hook()", site.callee),
        SiteKind::Llm => "prompt_llm(..)".to_owned(),
        SiteKind::Prompt => format!("{}.prompt(..)", site.callee),
        SiteKind::Start => format!("{}.start(..)", site.callee),
        SiteKind::StartAfter => format!("{}.start_after(..)", site.callee),
        SiteKind::Select => "reprise::select! { .. }".to_owned(),
        SiteKind::Timeout => format!("{}.timeout(..)", site.callee),
    }
}

/// `SiteKind::Llm` sites are calls, never method calls.
fn unreachable_kind() -> String {
    "internal error: an LLM site reached the method-call path".to_owned()
}

impl VisitMut for Rewriter<'_> {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        match expr {
            Expr::MethodCall(call) => {
                if let Some(rewritten) = self.timeout_call(call) {
                    *expr = rewritten;
                    return;
                }
                if self.is_inline_step(call) {
                    // The closure of an inline step is the step's own code, recorded by the
                    // step: neither rewritten nor linted (it may read the clock or do I/O).
                    let last = call.args.len() - 1;
                    for arg in call.args.iter_mut().take(last) {
                        self.visit_expr_mut(arg);
                    }
                    return;
                }
                self.lint_method(call);
                if let Some(rewritten) = self.method_call(call) {
                    *expr = rewritten;
                    return;
                }
            }
            Expr::Call(call) => {
                if let Some(rewritten) = self.llm_call(call) {
                    *expr = rewritten;
                    return;
                }
            }
            Expr::Path(path) => {
                if let Some(warned) = self.lint_path(path) {
                    *expr = warned;
                    return;
                }
            }
            Expr::Macro(mac) if self.is_durable_select(&mac.mac.path) => {
                // On an error (reported already) a stand-in, so the select's fallback macro
                // does not report a second one.
                *expr = self
                    .rewrite_select(&mac.mac)
                    .unwrap_or_else(|| syn::parse_quote!(::core::option::Option::None.unwrap()));
                return;
            }
            _ => {}
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_block_mut(&mut self, block: &mut Block) {
        // Items are in scope in their whole block, also above their `use`.
        let mut imports = Imports::default();
        for stmt in &block.stmts {
            if let Stmt::Item(Item::Use(item)) = stmt {
                self.collect_use(item, &mut imports);
            }
        }
        self.imports.push(imports);
        visit_mut::visit_block_mut(self, block);
        self.imports.pop();
    }

    fn visit_macro_mut(&mut self, mac: &mut Macro) {
        self.rewrite_macro(mac);
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        // `reprise::select! { .. }` as a statement: rewritten as the expression it is.
        if let Stmt::Macro(mac) = stmt
            && self.is_durable_select(&mac.mac.path)
        {
            let expr = Expr::Macro(syn::ExprMacro {
                attrs: std::mem::take(&mut mac.attrs),
                mac: mac.mac.clone(),
            });
            *stmt = Stmt::Expr(expr, mac.semi_token);
        }
        match take_step_attr(stmt, self.errors) {
            Some(attr) => self.visit_pinned_stmt(stmt, attr),
            None => self.visit_stmt_inner(stmt),
        }
    }

    fn visit_item_mut(&mut self, _item: &mut syn::Item) {}

    // The shape: each control-flow construct opens a sequence per arm, body or branch
    // around the default visit, in the default visit's order, so sites are numbered
    // exactly as without it.

    fn visit_expr_if_mut(&mut self, expr: &mut syn::ExprIf) {
        let condition = expr_label(&expr.cond);
        self.visit_expr_mut(&mut expr.cond);
        let mut arms = Vec::new();
        self.shape.open();
        self.visit_block_mut(&mut expr.then_branch);
        arms.push((condition, self.shape.close()));
        match &mut expr.else_branch {
            Some((_, otherwise)) => {
                let else_if = matches!(**otherwise, Expr::If(_));
                self.shape.open();
                self.visit_expr_mut(otherwise);
                let mut body = self.shape.close();
                match body.as_mut_slice() {
                    // `else if`: one branch with the chain's arms.
                    [ShapeNode::Branch { label, arms: inner }] if else_if && label == "if" => {
                        arms.append(inner);
                    }
                    // An `else if` without sites: its arms are empty.
                    [] if else_if => arms.push(("else".to_owned(), Vec::new())),
                    _ => arms.push(("else".to_owned(), body)),
                }
            }
            None => arms.push(("else".to_owned(), Vec::new())),
        }
        self.shape.branch("if".to_owned(), arms);
    }

    fn visit_expr_match_mut(&mut self, expr: &mut syn::ExprMatch) {
        let subject = format!("match {}", expr_label(&expr.expr));
        self.visit_expr_mut(&mut expr.expr);
        let mut arms = Vec::new();
        for arm in &mut expr.arms {
            // The pattern, with its guard (`Some(x) if x > 0`).
            let text = pat_label(&arm.pat);
            self.shape.open();
            self.visit_pat_mut(&mut arm.pat);
            self.visit_expr_mut(&mut arm.body);
            arms.push((text, self.shape.close()));
        }
        self.shape.branch(subject, arms);
    }

    fn visit_expr_for_loop_mut(&mut self, expr: &mut syn::ExprForLoop) {
        let header = format!("for {} in {}", label(&expr.pat), expr_label(&expr.expr));
        self.visit_expr_mut(&mut expr.expr);
        self.shape.open();
        self.visit_block_mut(&mut expr.body);
        let body = self.shape.close();
        self.shape.looped(header, body);
    }

    fn visit_expr_while_mut(&mut self, expr: &mut syn::ExprWhile) {
        let header = format!("while {}", expr_label(&expr.cond));
        self.shape.open();
        self.visit_expr_mut(&mut expr.cond);
        self.visit_block_mut(&mut expr.body);
        let body = self.shape.close();
        self.shape.looped(header, body);
    }

    fn visit_expr_loop_mut(&mut self, expr: &mut syn::ExprLoop) {
        self.shape.open();
        self.visit_block_mut(&mut expr.body);
        let body = self.shape.close();
        self.shape.looped("loop".to_owned(), body);
    }

    fn visit_expr_call_mut(&mut self, call: &mut syn::ExprCall) {
        let parallel = match &*call.func {
            Expr::Path(path) => path
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .filter(|name| matches!(name.as_str(), "join_all" | "try_join_all" | "fan_out")),
            _ => None,
        };
        let Some(name) = parallel else {
            visit_mut::visit_expr_call_mut(self, call);
            return;
        };
        self.shape.open();
        visit_mut::visit_expr_call_mut(self, call);
        let body = self.shape.close();
        self.shape.parallel(name, vec![body]);
    }
}

/// Removes `#[step(..)]` attributes from a statement and returns the first one.
fn take_step_attr(stmt: &mut Stmt, errors: &Errors) -> Option<Attribute> {
    let attrs = stmt_attrs_mut(stmt)?;
    let mut found = None;
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        if attr.path().is_ident("step") {
            if found.is_some() {
                errors.error_spanned_by(
                    &attr,
                    "a statement takes one `#[step(id = \"…\")]`: remove the others",
                );
            } else {
                found = Some(attr);
            }
        } else {
            kept.push(attr);
        }
    }
    *attrs = kept;
    found
}

/// The outer attributes of a statement (`None` for items, which are left alone).
fn stmt_attrs_mut(stmt: &mut Stmt) -> Option<&mut Vec<Attribute>> {
    match stmt {
        Stmt::Local(local) => Some(&mut local.attrs),
        Stmt::Macro(mac) => Some(&mut mac.attrs),
        Stmt::Expr(expr, _) => expr_attrs_mut(expr),
        Stmt::Item(_) => None,
    }
}

/// Removes every `#[step]` attribute from the statements of `block`, for re-emitting a
/// workflow fn that could not be expanded (the compiler does not know the attribute).
///
/// A `reprise::select!` in it becomes `unreachable!()`: the body's own errors are reported,
/// not a second one from the select's stand-in macro (which only fires outside workflows).
pub(crate) fn strip_step_attrs(block: &mut Block) {
    struct Strip;
    fn is_select(mac: &Macro) -> bool {
        let segments: Vec<String> = mac
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        segments.len() >= 2
            && segments.last().is_some_and(|s| s == "select")
            && segments[0] == "reprise"
    }
    impl VisitMut for Strip {
        fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
            if let Some(attrs) = stmt_attrs_mut(stmt) {
                attrs.retain(|attr| !attr.path().is_ident("step"));
            }
            if let Stmt::Macro(mac) = stmt
                && is_select(&mac.mac)
            {
                *stmt = Stmt::Expr(syn::parse_quote!(::core::unreachable!()), mac.semi_token);
                return;
            }
            visit_mut::visit_stmt_mut(self, stmt);
        }
        fn visit_expr_mut(&mut self, expr: &mut Expr) {
            if let Expr::Macro(mac) = expr
                && is_select(&mac.mac)
            {
                *expr = syn::parse_quote!(::core::unreachable!());
                return;
            }
            visit_mut::visit_expr_mut(self, expr);
        }
    }
    Strip.visit_block_mut(block);
}

/// The attributes of an expression statement, where syn puts them: on the leftmost
/// operand of an assignment, binary operation or cast, else on the expression itself.
fn expr_attrs_mut(expr: &mut Expr) -> Option<&mut Vec<Attribute>> {
    Some(match expr {
        Expr::Assign(e) => return expr_attrs_mut(&mut e.left),
        Expr::Binary(e) => return expr_attrs_mut(&mut e.left),
        Expr::Cast(e) => return expr_attrs_mut(&mut e.expr),
        Expr::Array(e) => &mut e.attrs,
        Expr::Async(e) => &mut e.attrs,
        Expr::Await(e) => &mut e.attrs,
        Expr::Block(e) => &mut e.attrs,
        Expr::Break(e) => &mut e.attrs,
        Expr::Call(e) => &mut e.attrs,
        Expr::Closure(e) => &mut e.attrs,
        Expr::Const(e) => &mut e.attrs,
        Expr::Continue(e) => &mut e.attrs,
        Expr::Field(e) => &mut e.attrs,
        Expr::ForLoop(e) => &mut e.attrs,
        Expr::Group(e) => &mut e.attrs,
        Expr::If(e) => &mut e.attrs,
        Expr::Index(e) => &mut e.attrs,
        Expr::Infer(e) => &mut e.attrs,
        Expr::Let(e) => &mut e.attrs,
        Expr::Lit(e) => &mut e.attrs,
        Expr::Loop(e) => &mut e.attrs,
        Expr::Macro(e) => &mut e.attrs,
        Expr::Match(e) => &mut e.attrs,
        Expr::MethodCall(e) => &mut e.attrs,
        Expr::Paren(e) => &mut e.attrs,
        Expr::Path(e) => &mut e.attrs,
        Expr::Range(e) => &mut e.attrs,
        Expr::RawAddr(e) => &mut e.attrs,
        Expr::Reference(e) => &mut e.attrs,
        Expr::Repeat(e) => &mut e.attrs,
        Expr::Return(e) => &mut e.attrs,
        Expr::Struct(e) => &mut e.attrs,
        Expr::Try(e) => &mut e.attrs,
        Expr::TryBlock(e) => &mut e.attrs,
        Expr::Tuple(e) => &mut e.attrs,
        Expr::Unary(e) => &mut e.attrs,
        Expr::Unsafe(e) => &mut e.attrs,
        Expr::While(e) => &mut e.attrs,
        Expr::Yield(e) => &mut e.attrs,
        _ => return None,
    })
}

/// `#[step(id = "…")]` → the id literal, validated.
fn parse_step_attr(attr: &Attribute, errors: &Errors) -> Option<LitStr> {
    const USAGE: &str = "expected `#[step(id = \"…\")]`, e.g. `#[step(id = \"notify-owner\")]`";
    let parsed = attr.parse_args_with(|input: ParseStream| {
        let key: Ident = input.parse()?;
        if key != "id" {
            return Err(syn::Error::new(
                key.span(),
                format!("unknown `#[step]` option `{key}`: {USAGE}"),
            ));
        }
        input.parse::<Token![=]>()?;
        let id: LitStr = input.parse()?;
        input.parse::<Option<Token![,]>>()?;
        if !input.is_empty() {
            return Err(input.error(format!("unexpected tokens: {USAGE}")));
        }
        Ok(id)
    });
    let id = match parsed {
        Ok(id) => id,
        Err(error) => {
            let message = if error.to_string().contains("#[step(") {
                error.to_string()
            } else {
                format!("{error}: {USAGE}")
            };
            errors.error(error.span(), message);
            return None;
        }
    };
    let value = id.value();
    if value.is_empty() {
        errors.error(id.span(), "a step id must not be empty");
        return None;
    }
    if let Some(bad) = value
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '#' | '/'))
    {
        errors.error(
            id.span(),
            format!(
                "a step id cannot contain {bad:?}: correlation ids are `<parent>/<id>#<n>`; use letters, digits, `-`, `_`, `.` or `@`"
            ),
        );
        return None;
    }
    Some(id)
}

/// `tokens` with every span (recursively) replaced by `span`.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut new =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                tree = TokenTree::Group(new);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// The span of the first token of `tokens`.
fn first_span(tokens: &impl ToTokens) -> Span {
    tokens
        .to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

/// Finds `. run (`, `. run ::`, and `<ctx> . sleep|sleep_until|hook (` in raw macro tokens.
fn find_step_call(tokens: TokenStream, ctx: Option<&Ident>) -> Option<String> {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        if let TokenTree::Group(group) = tree
            && let Some(found) = find_step_call(group.stream(), ctx)
        {
            return Some(found);
        }
        let TokenTree::Punct(dot) = tree else {
            continue;
        };
        if dot.as_char() != '.' {
            continue;
        }
        let Some(TokenTree::Ident(method)) = trees.get(i + 1) else {
            continue;
        };
        let called = match trees.get(i + 2) {
            Some(TokenTree::Group(g)) => g.delimiter() == Delimiter::Parenthesis,
            Some(TokenTree::Punct(p)) => p.as_char() == ':',
            _ => false,
        };
        if !called {
            continue;
        }
        let method = method.to_string();
        let on_ctx = match (i.checked_sub(1).and_then(|j| trees.get(j)), ctx) {
            (Some(TokenTree::Ident(receiver)), Some(ctx)) => receiver == ctx,
            _ => false,
        };
        if method == "run"
            || method == "prompt"
            || (!on_ctx && matches!(method.as_str(), "start" | "start_after"))
            || (on_ctx && matches!(method.as_str(), "sleep" | "sleep_until" | "hook"))
        {
            return Some(method);
        }
    }
    // `prompt_llm(..)` hidden in a macro.
    trees
        .windows(2)
        .any(|pair| {
            matches!(
                pair,
                [TokenTree::Ident(name), TokenTree::Group(args)]
                    if name == "prompt_llm" && args.delimiter() == Delimiter::Parenthesis
            )
        })
        .then(|| "prompt_llm".to_owned())
}

// The rejected list. Sources: DESIGN's list (std clocks, rand, uuid, tokio spawn and
// sleep), then the crates that Rust services commonly use for the same things: chrono,
// time and jiff (clocks, time zones); rand, fastrand, getrandom, uuid and ulid (random
// values and ids); tokio, async-std, smol, rayon and std::thread (tasks, threads,
// timers); futures, futures-lite and tokio (races); std::env and dotenvy (environment);
// std/tokio/async-std fs, fs-err, std::net, std::process and reqwest (I/O). A path is
// matched by its last two segments, plus its crate where the last two alone are too
// generic (`time::sleep` with two segments is taken as tokio's, `crate::time::sleep` is
// not). Seeded and pure `rand` items (`StdRng::seed_from_u64`, `Rng`, `distr`, `seq`)
// are allowed: seeded from `ctx.random()` they replay identically.
//
// Errors vs warnings: everything that makes a replay compute something else, or does an
// effect again on replay, is an error with its recorded replacement. Reading the process
// environment (`std::env::var`, the time zone) is only a warning: configuration is
// legitimately read, and usually the same on every worker, but it is not recorded, so
// the warning says how to make it so. `HashMap` iteration order is not checked (the macro
// cannot see types); the guide says so.

/// A well-known source of non-determinism, or a racing form, in a workflow body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Problem {
    /// Reads the clock (`SystemTime::now`, `Utc::now`, …).
    Now,
    /// Reads this machine's time zone (a warning).
    TimeZone,
    /// Draws random values (`rand::random`, `fastrand::*`, …).
    Random,
    /// Makes a random or time-based id (`Uuid::new_v4`, `Ulid::new`).
    Uuid,
    /// Starts a task or thread the log cannot track.
    Spawn,
    /// Blocks the worker thread on a future.
    Blocking,
    /// A sleep that is not durable.
    Sleep,
    /// A ticking timer (`tokio::time::interval`).
    Interval,
    /// Reads the process environment (a warning).
    Env,
    /// File system, network or process I/O.
    Io,
    /// Races futures without recording the winner (`select!`, `future::select`, …).
    Race,
    /// Races a future against a timer (`tokio::time::timeout`).
    Timeout,
}

impl Problem {
    /// A warning (the code compiles) rather than an error.
    fn is_warning(self) -> bool {
        matches!(self, Problem::Env | Problem::TimeZone)
    }
}

/// Classifies an expression path (`SystemTime::now`, `rand::random`, `tokio::spawn`, …) as
/// written.
fn nondeterministic(path: &Path) -> Option<Problem> {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    classify(&strs(&segments))
}

/// Classifies a path given by its segments (see the comment above [`Problem`]).
fn classify(names: &[&str]) -> Option<Problem> {
    use Problem::*;
    let (&last, init) = names.split_last()?;
    let prev = init.last().copied();
    let first = names[0];
    let len = names.len();
    // `module::item` (the module imported by a `use` the macro cannot see), or a path
    // into one of `crates`.
    let under = |crates: &[&str]| len == 2 || crates.contains(&first);
    let problem = match (prev, last) {
        // Clocks.
        (
            Some(
                "SystemTime" | "Instant" | "Utc" | "Local" | "Timestamp" | "Zoned" | "UtcDateTime",
            ),
            "now",
        )
        | (Some("Utc" | "Local"), "today")
        | (Some("OffsetDateTime"), "now_utc" | "now_local") => Now,
        // Time zones (configuration: a warning).
        (Some("TimeZone"), "system" | "try_system")
        | (Some("UtcOffset"), "current_local_offset" | "local_offset_at")
        | (Some("iana_time_zone"), "get_timezone") => TimeZone,
        // Ids.
        (Some("Uuid"), "new_v4" | "new_v7" | "now_v1" | "now_v6" | "now_v7")
        | (Some("Ulid"), "new" | "from_datetime") => Uuid,
        // Random numbers.
        (_, "thread_rng" | "ThreadRng" | "OsRng" | "from_entropy" | "from_os_rng") => Random,
        _ if matches!(first, "rand" | "rand_core" | "fastrand" | "getrandom")
            && len > 1
            && !seeded_rand_item(names) =>
        {
            Random
        }
        // Tasks and threads.
        (Some("tokio" | "smol" | "rayon" | "async_global_executor"), name)
            if name.starts_with("spawn") =>
        {
            Spawn
        }
        (Some("task"), name) if name.contains("spawn") && under(&["tokio", "async_std"]) => Spawn,
        (Some("thread"), "spawn" | "scope") => Spawn,
        (_, "block_on") if len >= 2 => Blocking,
        (_, "block_in_place") => Blocking,
        // Timers.
        (Some("time"), "sleep" | "sleep_until") if under(&["tokio"]) => Sleep,
        (Some("thread"), "sleep" | "sleep_ms") => Sleep,
        (Some("task"), "sleep") if under(&["async_std"]) => Sleep,
        (Some("Timer"), "after" | "at") if under(&["smol", "async_io"]) => Sleep,
        (Some("Delay"), "new") if first == "futures_timer" => Sleep,
        (Some("time"), "interval" | "interval_at") if under(&["tokio"]) => Interval,
        (Some("Timer"), "interval") if under(&["smol", "async_io"]) => Interval,
        // Races.
        (
            Some("future" | "stream"),
            "select" | "select_all" | "select_ok" | "try_select" | "select_with_strategy",
        ) if under(&["futures", "futures_util"]) => Race,
        (Some("futures" | "futures_util" | "tokio"), "select" | "select_biased") => Race,
        (Some("future"), "race" | "or") if under(&["futures_lite", "smol"]) => Race,
        (Some("time"), "timeout" | "timeout_at") if under(&["tokio"]) => Timeout,
        (Some("future"), "timeout") if under(&["async_std"]) => Timeout,
        // The process environment (configuration: a warning).
        (
            Some("env"),
            "var" | "var_os" | "vars" | "vars_os" | "args" | "args_os" | "current_dir"
            | "current_exe" | "home_dir" | "temp_dir",
        ) if under(&["std"]) => Env,
        (Some("dotenvy" | "dotenv"), "var" | "vars") => Env,
        (Some("process"), "id") if under(&["std"]) => Env,
        // I/O.
        _ if is_fs_path(names) => Io,
        (Some("File"), "open" | "create" | "create_new" | "options")
        | (Some("OpenOptions"), "new")
        | (Some("TcpStream" | "UnixStream"), "connect")
        | (Some("TcpListener" | "UdpSocket" | "UnixListener"), "bind") => Io,
        (Some("io"), "stdin") if under(&["std", "tokio"]) => Io,
        (Some("reqwest"), "get") => Io,
        (Some("blocking"), "get") if first == "reqwest" => Io,
        (Some("Command"), "new") if names.contains(&"process") => Io,
        _ => return None,
    };
    Some(problem)
}

/// `rand` items that are deterministic once seeded: seeded constructors, the traits and
/// the distribution and sequence helpers.
fn seeded_rand_item(names: &[&str]) -> bool {
    let last = names.last().copied().unwrap_or_default();
    matches!(
        last,
        "seed_from_u64"
            | "from_seed"
            | "with_seed"
            | "Rng"
            | "RngCore"
            | "TryRngCore"
            | "RngExt"
            | "SeedableRng"
            | "CryptoRng"
            | "StdRng"
            | "SmallRng"
            | "distr"
            | "distributions"
            | "seq"
            | "rngs"
    ) || names[..names.len() - 1]
        .iter()
        .any(|s| matches!(*s, "distr" | "distributions" | "seq"))
}

/// `std::fs::…`, `tokio::fs::…`, `async_std::fs::…`, `fs::…`, `fs_err::…`.
fn is_fs_path(names: &[&str]) -> bool {
    matches!(
        names,
        ["fs" | "fs_err", _, ..] | ["std" | "tokio" | "async_std", "fs", _, ..]
    )
}

/// A module every item of which is rejected: a `use` of it (or a glob of it) is rejected.
fn rejected_module(names: &[&str]) -> Option<Problem> {
    match names {
        ["std" | "tokio" | "async_std", "fs"] | ["fs_err"] => Some(Problem::Io),
        ["fastrand" | "getrandom"] => Some(Problem::Random),
        _ => None,
    }
}

fn strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// How a message names a rejected path: as written, plus what it stands for when a `use`
/// in the body renamed it (`` `Wall::now` (`std::time::SystemTime::now`) ``).
fn subject(path: &Path, resolved: Option<&[String]>, bang: &str) -> String {
    let written = compact(path);
    match resolved {
        Some(full) if full.join("::") != written => {
            format!("`{written}{bang}` (`{}{bang}`)", full.join("::"))
        }
        _ => format!("`{written}{bang}`"),
    }
}

/// One arm of `reprise::select!`: `pattern = awaitable => body`.
struct SelectArm {
    pat: syn::Pat,
    future: Expr,
    body: Expr,
}

/// Parses the arms of `reprise::select!` (`pattern = awaitable => body`, a comma after a
/// body that is not a block); `else`, `biased;` and `if` preconditions are rejected.
fn parse_select_arms(input: ParseStream) -> syn::Result<Vec<SelectArm>> {
    let mut arms = Vec::new();
    while !input.is_empty() {
        if input.peek(Token![else]) {
            return Err(input.error(
                "`reprise::select!` has no `else` arm: a durable select always waits for its first branch; to give up after a while, add a branch `_ = ctx.sleep(\"1h\") => { .. }`",
            ));
        }
        if input.peek(syn::Ident) && input.peek2(Token![;]) {
            return Err(input.error(
                "`reprise::select!` takes no `biased;`: its branches are always polled in source order, and the winner is recorded",
            ));
        }
        let pat = syn::Pat::parse_multi_with_leading_vert(input)?;
        if input.peek(Token![if]) {
            return Err(input.error(
                "`reprise::select!` arms take no `if` precondition: build the list of branches conditionally, or match inside the arm's body",
            ));
        }
        input.parse::<Token![=]>()?;
        let future: Expr = input.parse()?;
        input.parse::<Token![=>]>()?;
        let body = if input.peek(syn::token::Brace) {
            let block: Block = input.parse()?;
            let _ = input.parse::<Option<Token![,]>>()?;
            Expr::Block(syn::ExprBlock {
                attrs: Vec::new(),
                label: None,
                block,
            })
        } else {
            let body: Expr = input.parse()?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            body
        };
        arms.push(SelectArm { pat, future, body });
    }
    Ok(arms)
}

/// The fix shared by every racing form.
const RACE_FIX: &str = "use reprise's durable select, which records the winner so every replay takes the same branch: `reprise::select! { x = step.run(input) => { .. } _ = ctx.sleep(\"2d\") => { .. } }`; for a deadline on one step, hook, signal or child run write `.timeout(\"10m\")` right on the call (`step.run(input).timeout(\"10m\").await`), which fails with an error of kind `timeout`";

/// The message for `problem` found at `subject` (already quoted).
fn problem_message(problem: Problem, subject: &str, ctx_hint: &str) -> String {
    match problem {
        Problem::Now => format!(
            "{subject} is not deterministic: a replay of this workflow would see a different time; use `ctx.now()`{ctx_hint}, which records the time once and returns the recorded value on every replay"
        ),
        Problem::TimeZone => format!(
            "{subject} reads this machine's time zone, and the value is not recorded: a replay on a worker in another zone would compute other local times; pass the zone in through the workflow input (an IANA name such as \"Europe/Paris\"), or compute local times in an `#[action]` (allow it with `#[allow(deprecated)]` on the statement if every worker has the same zone)"
        ),
        Problem::Random => format!(
            "{subject} is not deterministic: a replay of this workflow would draw different values; use `ctx.random::<T>()`{ctx_hint}, which records the value once and returns it on every replay (for many values, seed an RNG with one recorded value: `StdRng::seed_from_u64(ctx.random())`)"
        ),
        Problem::Uuid => format!(
            "{subject} is not deterministic: a replay of this workflow would make a different id; use `ctx.uuid()`{ctx_hint} (a v4 UUID), which records the id once and returns it on every replay; for a time-ordered id (UUID v7, ULID) make it in an `#[action]`, whose output is recorded"
        ),
        Problem::Spawn => format!(
            "{subject} in a workflow body starts work the event log cannot track: steps must be awaited in the body; to run steps concurrently use `join!` / `try_join!`, `futures::future::join_all` or `reprise::fan_out`; blocking or CPU-heavy work goes in an `#[action]`"
        ),
        Problem::Blocking => format!(
            "{subject} in a workflow body blocks the worker thread, and a step awaited inside it would run outside the workflow's recording; `.await` the future in the body instead, and put blocking work in an `#[action]`"
        ),
        Problem::Sleep => format!(
            "{subject} in a workflow body is not durable: it holds the worker and is lost on a restart; use `ctx.sleep(..)`{ctx_hint}, which suspends the run and wakes it on time, also after a restart"
        ),
        Problem::Interval => format!(
            "{subject} in a workflow body is not durable: its ticks hold the worker and are lost on a restart; call `ctx.sleep(..)`{ctx_hint} in a loop, which suspends the run between iterations and wakes it on time, also after a restart"
        ),
        Problem::Env => format!(
            "{subject} in a workflow body reads the process environment, and the value is not recorded: a replay on another worker, or after the configuration changed, may see another value and take another path; pass it in through the workflow input, or read it in an `#[action]` (where engine resources are at hand too), whose output is recorded (allow it with `#[allow(deprecated)]` on the statement if the value never changes)"
        ),
        Problem::Io => format!(
            "{subject} does I/O in a workflow body: it runs again on every replay, and its result is not recorded, so a replay may see other data; do I/O in an `#[action]` and call it as a step, whose output is recorded"
        ),
        Problem::Race => format!(
            "{subject} races futures and does not record which one won: a replay of this workflow may take the other branch; {RACE_FIX}"
        ),
        Problem::Timeout => format!(
            "{subject} races a future against a timer and does not record which one finished first: a replay may time out where the first run did not, or the other way round; {RACE_FIX}"
        ),
    }
}

/// `path` with a deprecation warning attached: `({ #[deprecated] fn f() {} f(); path })`.
/// The warning is the only compile-time warning a proc macro can emit on stable; the
/// tokens carry the user's spans (not the macro's), or rustc would hide the lint as coming
/// from an external macro.
fn warning_expr(expr: &ExprPath, message: &str) -> Expr {
    let span = expr
        .path
        .segments
        .last()
        .map_or_else(|| first_span(expr), |s| s.ident.span());
    let name = Ident::new("reprise_unrecorded_read", span);
    let note = LitStr::new(message, span);
    syn::parse_quote_spanned! {span=>
        ({
            #[deprecated(note = #note)]
            fn #name() {}
            #name();
            #expr
        })
    }
}

/// `x.run(..)`, `agent.prompt(..)` or `prompt_llm(..)` (through parentheses).
fn is_step_call(expr: &Expr) -> bool {
    match expr {
        Expr::Paren(e) => is_step_call(&e.expr),
        Expr::MethodCall(call) => matches!(call.method.to_string().as_str(), "run" | "prompt"),
        Expr::Call(call) => matches!(
            &*call.func,
            Expr::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "prompt_llm")
        ),
        _ => false,
    }
}

/// The names a `use` tree brings into scope.
fn use_leaves(tree: &UseTree, prefix: &mut Vec<Ident>, out: &mut Vec<UseLeaf>) {
    let path_of = |prefix: &[Ident], ident: Option<&Ident>| -> Vec<String> {
        prefix
            .iter()
            .chain(ident)
            .map(ToString::to_string)
            .collect()
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.clone());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(name) => {
            let (path, local) = if name.ident == "self" {
                (
                    path_of(prefix, None),
                    prefix.last().map(ToString::to_string),
                )
            } else {
                (
                    path_of(prefix, Some(&name.ident)),
                    Some(name.ident.to_string()),
                )
            };
            if let Some(local) = local {
                out.push(UseLeaf {
                    path,
                    local: Some(local),
                    tokens: quote!(#(#prefix ::)* #name),
                });
            }
        }
        UseTree::Rename(rename) => {
            if rename.rename == "_" {
                return;
            }
            let ident = (rename.ident != "self").then_some(&rename.ident);
            out.push(UseLeaf {
                path: path_of(prefix, ident),
                local: Some(rename.rename.to_string()),
                tokens: quote!(#(#prefix ::)* #rename),
            });
        }
        UseTree::Glob(glob) => out.push(UseLeaf {
            path: path_of(prefix, None),
            local: None,
            tokens: quote!(#(#prefix ::)* #glob),
        }),
        UseTree::Group(group) => {
            for tree in &group.items {
                use_leaves(tree, prefix, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(path: &str) -> Option<Problem> {
        nondeterministic(&syn::parse_str::<Path>(path).expect("a path"))
    }

    #[test]
    fn classifies_nondeterministic_paths() {
        assert_eq!(classify("SystemTime::now"), Some(Problem::Now));
        assert_eq!(classify("std::time::Instant::now"), Some(Problem::Now));
        assert_eq!(classify("chrono::Utc::now"), Some(Problem::Now));
        assert_eq!(classify("rand::random"), Some(Problem::Random));
        assert_eq!(classify("rand::rng"), Some(Problem::Random));
        assert_eq!(classify("thread_rng"), Some(Problem::Random));
        assert_eq!(classify("rand::rngs::OsRng"), Some(Problem::Random));
        assert_eq!(classify("Uuid::new_v4"), Some(Problem::Uuid));
        assert_eq!(classify("uuid::Uuid::now_v7"), Some(Problem::Uuid));
        assert_eq!(classify("tokio::spawn"), Some(Problem::Spawn));
        assert_eq!(classify("tokio::task::spawn"), Some(Problem::Spawn));
        assert_eq!(classify("std::thread::spawn"), Some(Problem::Spawn));
        assert_eq!(classify("tokio::time::sleep"), Some(Problem::Sleep));
        assert_eq!(classify("thread::sleep"), Some(Problem::Sleep));
        assert_eq!(classify("time::sleep"), Some(Problem::Sleep));
        assert_eq!(classify("ctx"), None);
        assert_eq!(classify("rand"), None);
        assert_eq!(classify("Duration::from_secs"), None);
        assert_eq!(classify("my::time::sleep"), None);
        assert_eq!(classify("Instant"), None);
    }

    #[test]
    fn classifies_the_wider_list() {
        use Problem::*;
        let cases: &[(&str, Option<Problem>)] = &[
            // Clocks and time zones.
            ("chrono::Local::now", Some(Now)),
            ("chrono::Local::today", Some(Now)),
            ("time::OffsetDateTime::now_utc", Some(Now)),
            ("OffsetDateTime::now_local", Some(Now)),
            ("jiff::Timestamp::now", Some(Now)),
            ("jiff::Zoned::now", Some(Now)),
            ("tokio::time::Instant::now", Some(Now)),
            ("jiff::tz::TimeZone::system", Some(TimeZone)),
            ("time::UtcOffset::current_local_offset", Some(TimeZone)),
            ("iana_time_zone::get_timezone", Some(TimeZone)),
            ("Duration::from_secs", None),
            ("chrono::DateTime::parse_from_rfc3339", None),
            ("jiff::Timestamp::from_second", None),
            // Random values and ids.
            ("rand::rng", Some(Random)),
            ("rand::random_range", Some(Random)),
            ("rand::rngs::StdRng::from_os_rng", Some(Random)),
            ("ChaCha8Rng::from_entropy", Some(Random)),
            ("fastrand::u32", Some(Random)),
            ("fastrand::Rng::new", Some(Random)),
            ("getrandom::fill", Some(Random)),
            ("rand::rngs::StdRng::seed_from_u64", None),
            ("rand::SeedableRng", None),
            ("rand::Rng", None),
            ("rand::seq::SliceRandom", None),
            ("rand::distr::Uniform::new", None),
            ("fastrand::Rng::with_seed", None),
            ("Uuid::new_v7", Some(Uuid)),
            ("uuid::Uuid::now_v1", Some(Uuid)),
            ("ulid::Ulid::new", Some(Uuid)),
            ("Uuid::parse_str", None),
            ("Uuid::new_v5", None),
            // Tasks, threads, blocking.
            ("tokio::task::spawn_blocking", Some(Spawn)),
            ("task::spawn_local", Some(Spawn)),
            ("rayon::spawn", Some(Spawn)),
            ("rayon::spawn_fifo", Some(Spawn)),
            ("smol::spawn", Some(Spawn)),
            ("std::thread::scope", Some(Spawn)),
            ("my::task::spawn", None),
            ("futures::executor::block_on", Some(Blocking)),
            ("pollster::block_on", Some(Blocking)),
            ("tokio::task::block_in_place", Some(Blocking)),
            ("block_on", None),
            // Timers.
            ("tokio::time::sleep_until", Some(Sleep)),
            ("std::thread::sleep", Some(Sleep)),
            ("tokio::time::interval", Some(Interval)),
            ("time::interval_at", Some(Interval)),
            ("tokio::time::Duration::from_secs", None),
            // Races.
            ("futures::future::select", Some(Race)),
            ("future::select", Some(Race)),
            ("futures::future::select_all", Some(Race)),
            ("futures_util::future::select_ok", Some(Race)),
            ("futures::stream::select", Some(Race)),
            ("futures::select", Some(Race)),
            ("futures::select_biased", Some(Race)),
            ("tokio::select", Some(Race)),
            ("futures_lite::future::race", Some(Race)),
            ("tokio::time::timeout", Some(Timeout)),
            ("time::timeout", Some(Timeout)),
            ("tokio::time::timeout_at", Some(Timeout)),
            ("async_std::future::timeout", Some(Timeout)),
            ("futures::future::join_all", None),
            ("futures::future::try_join", None),
            ("select", None),
            ("timeout", None),
            ("my::time::timeout", None),
            // The environment.
            ("std::env::var", Some(Env)),
            ("env::var_os", Some(Env)),
            ("std::env::args", Some(Env)),
            ("std::env::current_dir", Some(Env)),
            ("dotenvy::var", Some(Env)),
            ("std::process::id", Some(Env)),
            ("my::env::var", None),
            // I/O.
            ("std::fs::read_to_string", Some(Io)),
            ("tokio::fs::write", Some(Io)),
            ("fs::remove_file", Some(Io)),
            ("std::fs::File::open", Some(Io)),
            ("File::create", Some(Io)),
            ("tokio::fs::OpenOptions::new", Some(Io)),
            ("std::net::TcpStream::connect", Some(Io)),
            ("reqwest::get", Some(Io)),
            ("std::process::Command::new", Some(Io)),
            ("std::io::stdin", Some(Io)),
            ("std::fs", None),
            ("clap::Command::new", None),
            ("serde_json::from_str", None),
        ];
        for (path, expected) in cases {
            assert_eq!(classify(path), *expected, "{path}");
        }
        assert_eq!(rejected_module(&["std", "fs"]), Some(Io));
        assert_eq!(rejected_module(&["fastrand"]), Some(Random));
        assert_eq!(rejected_module(&["std", "time"]), None);
        assert!(Env.is_warning() && TimeZone.is_warning());
        assert!(!Now.is_warning() && !Race.is_warning() && !Io.is_warning());
    }

    fn leaves(item: &str) -> Vec<(String, Option<String>)> {
        let item: ItemUse = syn::parse_str(item).expect("a use item");
        let mut out = Vec::new();
        use_leaves(&item.tree, &mut Vec::new(), &mut out);
        out.into_iter()
            .map(|leaf| (leaf.path.join("::"), leaf.local))
            .collect()
    }

    #[test]
    fn reads_use_trees() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            leaves("use std::time::SystemTime as Wall;"),
            [("std::time::SystemTime".to_owned(), some("Wall"))]
        );
        assert_eq!(
            leaves("use futures::future::{self, select, select_all as any};"),
            [
                ("futures::future".to_owned(), some("future")),
                ("futures::future::select".to_owned(), some("select")),
                ("futures::future::select_all".to_owned(), some("any")),
            ]
        );
        assert_eq!(
            leaves("use tokio::time::*;"),
            [("tokio::time".to_owned(), None)]
        );
        assert_eq!(leaves("use rand::Rng as _;"), []);
    }

    /// Runs the rewriter on a workflow body and returns the error messages.
    fn lint(body: &str) -> Vec<String> {
        let mut block: Block = syn::parse_str(body).expect("a block");
        let errors = Errors::new();
        let ctx = Some(Ident::new("ctx", Span::call_site()));
        rewrite_body(&mut block, ctx, &quote!(::reprise::__private), &errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    /// `.start(..)` and `.start_after(..)` are child-run sites numbered together, apart from
    /// `.run(..)` (their keys get `start:`, so they never collide with it); a
    /// wrong argument count says what to write; `ctx.start(..)` is left alone.
    #[test]
    fn start_sites_are_child_runs() {
        let mut block: Block = syn::parse_str(
            "{ ship.run(a); ship.start(a); crate::ship.start_after(d, b); ctx.start(c); }",
        )
        .expect("a block");
        let errors = Errors::new();
        let ctx = Some(Ident::new("ctx", Span::call_site()));
        let (sites, _) = rewrite_body(&mut block, ctx, &quote!(::reprise::__private), &errors);
        assert!(errors.finish().is_ok());
        let kinds: Vec<_> = sites.iter().map(|s| (s.kind, s.ordinal)).collect();
        assert_eq!(
            kinds,
            vec![
                (SiteKind::Run, 1),
                (SiteKind::Start, 1),
                (SiteKind::StartAfter, 2)
            ]
        );
        let text = block.to_token_stream().to_string();
        assert!(text.contains("start_child ("), "{text}");
        assert!(text.contains("start_child_after ("), "{text}");
        let errors = lint("{ ship.start(a, b); }");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("takes exactly one input value")),
            "{errors:?}"
        );
        let errors = lint("{ ship.start_after(a); }");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("takes a delay and one input value")),
            "{errors:?}"
        );
    }

    #[test]
    fn resolves_uses_in_the_body() {
        let errors = lint(
            "{ use std::time::SystemTime as Wall; let t = Wall::now(); { use rand::random as dice; let x: u8 = dice(); } }",
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0]
                .starts_with("`Wall::now` (`std::time::SystemTime::now`) is not deterministic")
        );
        assert!(errors[1].starts_with("`rand::random` (imported here) is not deterministic"));
        assert!(errors[2].starts_with("`dice` (`rand::random`) is not deterministic"));

        // A `use` counts in its whole block, also above it, and not outside it.
        let errors =
            lint("{ { let f = timeout(d, x); use tokio::time::timeout; } timeout(d, x); }");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("`tokio::time::timeout` (imported here) races a future"));
        assert!(errors[1].starts_with("`timeout` (`tokio::time::timeout`) races a future"));

        // Globs only make a bare name a known source.
        let errors = lint(
            "{ use tokio::time::*; let d = Duration::from_secs(1); select(a, b); timeout(d, x); }",
        );
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("`timeout` (`tokio::time::timeout`)"));

        // Imported modules and renamed macros.
        let errors = lint("{ use std::fs; use tokio::select as race; race! { _ = a => {} } }");
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("`std::fs` (imported here) does I/O"));
        assert!(errors[1].starts_with("`tokio::select` (imported here) races futures"));
        assert!(errors[2].starts_with("`race!` (`tokio::select!`) races futures"));

        // Harmless imports stay quiet.
        assert_eq!(
            lint(
                "{ use std::time::Duration; use rand::{Rng, SeedableRng}; use std::collections::HashMap as Map; let m: Map<u8, u8> = Map::new(); }"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn rejects_racing_forms() {
        let errors = lint(
            "{ let a = x.run(1).fuse(); futures::select! { _ = a => {} }; let b = x.run(2).timeout_at(d); let c = (a, b).race(); ctx.hook::<u8>().timeout(\"2d\"); }",
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("`futures::select!` races futures"));
        assert!(errors[1].starts_with("`.timeout_at(..)` on a step races a future"));
        assert!(errors[2].starts_with("`.race(..)` races futures"));
        // Each names the durable forms.
        for error in &errors {
            assert!(error.contains("reprise::select! {"), "{error}");
            assert!(error.contains(".timeout(\"10m\")"), "{error}");
        }
    }

    /// The rewritten body as text (spaces removed), with the sites found.
    fn rewritten(body: &str) -> (String, Vec<(SiteKind, String, u32)>) {
        let mut block: Block = syn::parse_str(body).expect("a block");
        let errors = Errors::new();
        let ctx = Some(Ident::new("ctx", Span::call_site()));
        let (sites, _) = rewrite_body(&mut block, ctx, &quote!(::reprise::__private), &errors);
        assert!(errors.finish().is_ok());
        let sites = sites
            .iter()
            .map(|s| (s.kind, s.callee.clone(), s.ordinal))
            .collect();
        (block.to_token_stream().to_string().replace(' ', ""), sites)
    }

    #[test]
    fn rewrites_durable_select_timeout_and_leaves_inline_steps() {
        let (text, sites) = rewritten(
            "{ let x = reprise::select! { a = ship.run(1) => a?, _ = ctx.sleep(d) => { 0 } }; reprise::select! { b = ship.run(2) => {} } let t = ship.run(3).timeout(\"1h\").await; let h = ctx.hook::<u8>().timeout(\"2d\"); let i = ctx.run(\"charge\", || async { Ok(1) }).timeout(\"5s\").await; let o = Options::new().timeout(d); }",
        );
        assert!(
            text.contains("::reprise::__private::select(__reprise_ctx,&__REPRISE_SITES[0]"),
            "{text}"
        );
        assert!(
            text.contains("::reprise::__private::IdCapture::start"),
            "{text}"
        );
        assert!(
            text.contains("::reprise::__private::timeout(__reprise_ctx,&__REPRISE_SITES[5]"),
            "{text}"
        );
        // The hook keeps its own recorded deadline; other types' `timeout` are theirs.
        assert!(text.contains(".timeout(\"2d\")"), "{text}");
        assert!(text.contains("Options::new().timeout(d)"), "{text}");
        // `ctx.run(name, f)` is the `Ctx` method, raced by a timeout.
        assert!(text.contains("ctx.run(\"charge\""), "{text}");
        let kinds: Vec<(SiteKind, u32)> = sites.iter().map(|(k, _, n)| (*k, *n)).collect();
        assert_eq!(
            kinds,
            [
                (SiteKind::Select, 1),
                (SiteKind::Run, 1),
                (SiteKind::Sleep, 1),
                (SiteKind::Select, 2),
                (SiteKind::Run, 2),
                (SiteKind::Timeout, 1),
                (SiteKind::Run, 3),
                (SiteKind::Hook, 1),
                (SiteKind::Timeout, 2),
            ]
        );
    }

    #[test]
    fn rejects_select_forms_it_cannot_record() {
        let errors = lint("{ reprise::select! { _ = a => {}, else => {} } }");
        assert!(errors[0].contains("has no `else` arm"), "{errors:?}");
        let errors = lint("{ reprise::select! { biased; _ = a => {} } }");
        assert!(errors[0].contains("takes no `biased;`"), "{errors:?}");
        let errors = lint("{ reprise::select! { Some(x) = a, if ok => {} } }");
        assert!(!errors.is_empty());
        let errors = lint("{ reprise::select! {} }");
        assert!(errors[0].contains("needs at least one arm"), "{errors:?}");
        let errors = lint("{ tokio::select! { _ = a => {} } }");
        assert!(
            errors[0].starts_with("`tokio::select!` races futures"),
            "{errors:?}"
        );
    }

    #[test]
    fn inline_step_closures_are_not_linted() {
        assert_eq!(
            lint(
                "{ ctx.run(\"t\", || async { Ok(std::time::SystemTime::now()) }); ctx.run_with(\"u\", o, || async { tokio::time::sleep(d).await; Ok(1) }); }"
            ),
            Vec::<String>::new()
        );
        // Anywhere else the same calls are errors.
        assert_eq!(
            lint("{ let f = || async { Ok(std::time::SystemTime::now()) }; }").len(),
            1
        );
    }

    #[test]
    fn env_reads_warn_instead_of_failing() {
        let mut block: Block =
            syn::parse_str("{ let url = std::env::var(\"URL\"); }").expect("a block");
        let errors = Errors::new();
        rewrite_body(&mut block, None, &quote!(::reprise::__private), &errors);
        assert!(errors.finish().is_ok());
        let tokens = block.to_token_stream().to_string();
        assert!(tokens.contains("deprecated"), "{tokens}");
        assert!(tokens.contains("std :: env :: var"), "{tokens}");
    }

    #[test]
    fn unix_epoch_elapsed_is_a_clock_read() {
        let errors =
            lint("{ let t = std::time::UNIX_EPOCH.elapsed(); let u = SystemTime::UNIX_EPOCH; }");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("`std::time::UNIX_EPOCH.elapsed()` is not deterministic"));
    }

    #[test]
    fn finds_step_calls_in_tokens() {
        let ctx = Ident::new("ctx", Span::call_site());
        let find = |s: &str| find_step_call(s.parse().expect("tokens"), Some(&ctx));
        assert_eq!(find("x.run(1)").as_deref(), Some("run"));
        assert_eq!(find("{ a, [b.run(c)] }").as_deref(), Some("run"));
        assert_eq!(find("ctx.sleep(d)").as_deref(), Some("sleep"));
        assert_eq!(find("ctx.hook::<T>()").as_deref(), Some("hook"));
        assert_eq!(find("other.sleep(d)"), None);
        assert_eq!(find("x.running"), None);
        assert_eq!(find("x.run"), None);
    }

    /// The sites (callee, ordinal) and shape of a body.
    fn shape_of(body: &str) -> (Vec<(String, u32)>, Vec<ShapeNode>) {
        let mut block: Block = syn::parse_str(body).expect("a block");
        let errors = Errors::new();
        let ctx = Some(Ident::new("ctx", Span::call_site()));
        let (sites, shape) = rewrite_body(&mut block, ctx, &quote!(::reprise::__private), &errors);
        assert!(errors.finish().is_ok());
        let sites = sites
            .iter()
            .map(|s| (s.callee.clone(), s.ordinal))
            .collect();
        (sites, shape)
    }

    fn arm(label: &str, body: Vec<ShapeNode>) -> (String, Vec<ShapeNode>) {
        (label.to_owned(), body)
    }

    #[test]
    fn records_the_shape_around_the_sites() {
        use ShapeNode::{Branch, Loop, Parallel, Site};
        let (sites, shape) = shape_of(
            "{
                let a = first.run(1).await?;
                if a > 1 && ready { big.run(a).await?; } else if let Some(x) = y { small.run(x).await?; }
                if quiet { let z = 1; }
                match a { 0 => {}, n if n > 9 => { big.run(n).await?; } 1 | 2 => other(), _ => {} }
                while poll.run(a).await? { ctx.sleep(d).await?; }
                loop { if ctx.hook::<bool>().await? { break; } }
                for i in 0..3 { let j = i * 2; }
                let (l, r) = futures::join!(left.run(a), async { right.run(a).await });
                let all = join_all(items.iter().map(|i| each.run(*i))).await;
                let fanned = reprise::fan_out(items, 2, |i| each.run(i)).await;
            }",
        );
        // Sites are numbered exactly as before: source order, ordinals per callee.
        let names: Vec<&str> = sites.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "first", "big", "small", "big", "poll", "ctx", "ctx", "left", "right", "each",
                "each"
            ]
        );
        assert_eq!(sites[3].1, 2, "the second `big` site");
        assert_eq!(sites[10].1, 2, "the second `each` site");
        assert_eq!(
            shape,
            [
                Site(0),
                // `else if` joins the chain; the missing `else` is an empty arm.
                Branch {
                    label: "if".into(),
                    arms: vec![
                        arm("a > 1 && ready", vec![Site(1)]),
                        arm("let Some(x) = y", vec![Site(2)]),
                        arm("else", vec![]),
                    ],
                },
                // The `if` without a site is left out; the match keeps every arm.
                Branch {
                    label: "match a".into(),
                    arms: vec![
                        arm("0", vec![]),
                        arm("n if n > 9", vec![Site(3)]),
                        arm("1 | 2", vec![]),
                        arm("_", vec![]),
                    ],
                },
                // A `while` condition runs on every iteration: inside the loop.
                Loop {
                    label: "while poll.run(a).await?".into(),
                    body: vec![Site(4), Site(5)],
                },
                Loop {
                    label: "loop".into(),
                    // The condition's hook runs before the `if`, whose arms call nothing.
                    body: vec![Site(6)],
                },
                Parallel {
                    label: "join!".into(),
                    branches: vec![vec![Site(7)], vec![Site(8)]],
                },
                Parallel {
                    label: "join_all".into(),
                    branches: vec![vec![Site(9)]],
                },
                Parallel {
                    label: "fan_out".into(),
                    branches: vec![vec![Site(10)]],
                },
            ]
        );
    }
}
