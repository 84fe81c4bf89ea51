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
use syn::{Attribute, Block, Expr, ExprMethodCall, LitStr, Macro, Path, Stmt, Token};

use crate::errors::Errors;
use crate::parse::compact;

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
}

impl SiteKind {
    /// The fixed key name of a site (as the runtime derives it); `None` for `Run` and
    /// `Prompt`, whose key is the callee's slug.
    fn wait_name(self) -> Option<&'static str> {
        match self {
            SiteKind::Run | SiteKind::Prompt => None,
            SiteKind::Sleep => Some("sleep"),
            SiteKind::SleepUntil => Some("sleep-until"),
            SiteKind::Hook => Some("hook"),
            SiteKind::Llm => Some("llm"),
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

/// Rewrites the step calls of a workflow body in place and returns its site manifest.
///
/// `ctx` is the identifier the user bound the `Ctx` parameter to, if any: only
/// `<ctx>.sleep(..)`, `<ctx>.sleep_until(..)` and `<ctx>.hook()` are waits.
pub(crate) fn rewrite_body(
    block: &mut Block,
    ctx: Option<Ident>,
    private: &TokenStream,
    errors: &Errors,
) -> Vec<SiteRecord> {
    let mut rewriter = Rewriter {
        errors,
        private,
        ctx,
        sites: Vec::new(),
        pinned: BTreeMap::new(),
    };
    rewriter.visit_block_mut(block);
    let Rewriter {
        mut sites, pinned, ..
    } = rewriter;
    let mut counters: BTreeMap<(SiteKind, String), u32> = BTreeMap::new();
    for site in &mut sites {
        let n = counters.entry((site.kind, site.group.clone())).or_insert(0);
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
    sites
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
            (SiteKind::Run | SiteKind::Prompt, Expr::Path(p)) if p.qself.is_none() => p
                .path
                .segments
                .last()
                .map_or_else(|| callee.clone(), |s| s.ident.to_string()),
            (SiteKind::Run | SiteKind::Prompt, _) => callee.clone(),
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
        self.sites.len() - 1
    }

    /// Rewrites a step method call, or returns `None` to leave it alone.
    fn method_call(&mut self, call: &mut ExprMethodCall) -> Option<Expr> {
        let method = call.method.to_string();
        let kind = match method.as_str() {
            "run" => SiteKind::Run,
            "prompt" => SiteKind::Prompt,
            "sleep" if self.is_ctx(&call.receiver) => SiteKind::Sleep,
            "sleep_until" if self.is_ctx(&call.receiver) => SiteKind::SleepUntil,
            "hook" if self.is_ctx(&call.receiver) => SiteKind::Hook,
            _ => return None,
        };
        let expected_args = if kind == SiteKind::Hook { 0 } else { 1 };
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
                SiteKind::Llm => unreachable_kind(),
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
            SiteKind::Llm => return None,
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
        if EXPR_MACROS.contains(&name.as_str()) {
            let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
            if let Ok(mut args) = parser.parse2(mac.tokens.clone()) {
                for arg in args.iter_mut() {
                    self.visit_expr_mut(arg);
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

    fn reject_macro(&self, mac: &Macro, name: &str, method: &str) {
        let message = if matches!(name, "select" | "select_biased") {
            format!(
                "`{name}!` between steps is not supported yet: it cannot record which branch won, so a replay could take another one; run the steps together with `join!` / `try_join!`, or restructure so they run one after another"
            )
        } else {
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
            format!(
                "step call `{call}` inside `{name}!` cannot be recorded: reprise only rewrites step calls inside {REWRITTEN_MACROS}, whose arguments are plain expressions; move the call out of the macro, e.g. {example}, and pass the result in"
            )
        };
        self.errors.error_spanned_by(&mac.path, message);
    }

    /// Rejects paths to well-known sources of non-determinism.
    fn lint_path(&self, path: &Path) {
        let Some(problem) = nondeterministic(path) else {
            return;
        };
        let written = compact(path);
        let ctx_hint = if self.ctx.is_some() {
            ""
        } else {
            " (give the workflow a first parameter `ctx: Ctx` for it)"
        };
        let message = match problem {
            Problem::Now => format!(
                "`{written}` is not deterministic: a replay of this workflow would see a different time; use `ctx.now()`{ctx_hint}, which records the time once and returns the recorded value on every replay"
            ),
            Problem::Random => format!(
                "`{written}` is not deterministic: a replay of this workflow would draw different values; use `ctx.random::<T>()`{ctx_hint}, which records the value once and returns it on every replay"
            ),
            Problem::Uuid => format!(
                "`{written}` is not deterministic: a replay of this workflow would make a different id; use `ctx.uuid()`{ctx_hint}, which records the id once and returns it on every replay"
            ),
            Problem::Spawn => format!(
                "`{written}` in a workflow body starts work the event log cannot track: steps must be awaited in the body; to run steps concurrently use `join!` / `try_join!`, `futures::future::join_all` or `reprise::fan_out`"
            ),
            Problem::Sleep => format!(
                "`{written}` in a workflow body is not durable: it holds the worker and is lost on a restart; use `ctx.sleep(..)`{ctx_hint}, which suspends the run and wakes it on time, also after a restart"
            ),
        };
        self.errors.error_spanned_by(path, message);
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
            Expr::Path(path) => self.lint_path(&path.path),
            _ => {}
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_macro_mut(&mut self, mac: &mut Macro) {
        self.rewrite_macro(mac);
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        match take_step_attr(stmt, self.errors) {
            Some(attr) => self.visit_pinned_stmt(stmt, attr),
            None => self.visit_stmt_inner(stmt),
        }
    }

    fn visit_item_mut(&mut self, _item: &mut syn::Item) {}
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
pub(crate) fn strip_step_attrs(block: &mut Block) {
    struct Strip;
    impl VisitMut for Strip {
        fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
            if let Some(attrs) = stmt_attrs_mut(stmt) {
                attrs.retain(|attr| !attr.path().is_ident("step"));
            }
            visit_mut::visit_stmt_mut(self, stmt);
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

/// A well-known source of non-determinism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Problem {
    Now,
    Random,
    Uuid,
    Spawn,
    Sleep,
}

/// Classifies an expression path (`SystemTime::now`, `rand::random`, `tokio::spawn`, …).
fn nondeterministic(path: &Path) -> Option<Problem> {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let names: Vec<&str> = segments.iter().map(String::as_str).collect();
    let last = *names.last()?;
    let prev = names.len().checked_sub(2).map(|i| names[i]);
    let first = names[0];
    match (prev, last) {
        (Some("SystemTime" | "Instant" | "Utc" | "Local"), "now") => Some(Problem::Now),
        (_, "thread_rng" | "OsRng") => Some(Problem::Random),
        _ if first == "rand" && names.len() > 1 => Some(Problem::Random),
        (Some("Uuid"), "new_v4" | "now_v7") => Some(Problem::Uuid),
        (Some("tokio"), "spawn") => Some(Problem::Spawn),
        (Some("task"), "spawn" | "spawn_local" | "spawn_blocking") if first == "tokio" => {
            Some(Problem::Spawn)
        }
        (Some("thread"), "spawn") => Some(Problem::Spawn),
        (Some("time"), "sleep" | "sleep_until") if first == "tokio" || names.len() == 2 => {
            Some(Problem::Sleep)
        }
        (Some("thread"), "sleep") => Some(Problem::Sleep),
        _ => None,
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
}
