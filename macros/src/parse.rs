//! Signature checks: what an `#[action]` or `#[workflow]` fn must look like, with an
//! error that says how to fix it for every way it can be wrong.

use syn::{
    Attribute, Expr, FnArg, GenericArgument, ItemFn, Lit, Meta, Pat, PathArguments, ReturnType,
    Type,
};

use crate::errors::Errors;

/// Which macro is checking, for messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `#[action]`.
    Action,
    /// `#[workflow]`.
    Workflow,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Action => "#[action]",
            Kind::Workflow => "#[workflow]",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Action => "an action",
            Kind::Workflow => "a workflow",
        }
    }

    fn error_ty(self) -> &'static str {
        match self {
            Kind::Action => "ActionError",
            Kind::Workflow => "WorkflowError",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Kind::Action => "async fn name(input: MyInput) -> Result<MyOutput, ActionError>",
            Kind::Workflow => {
                "async fn name(ctx: Ctx, input: MyInput) -> Result<MyOutput, WorkflowError>"
            }
        }
    }
}

/// A typed parameter: its pattern and type as the user wrote them.
pub(crate) struct Param {
    /// The pattern (`input`, `mut cx`, `Signup { name, .. }`).
    pub(crate) pat: Pat,
    /// The type.
    pub(crate) ty: Type,
}

/// The parts of a checked step fn that the expansion needs.
pub(crate) struct StepFn {
    /// The item itself (attributes, body) as the user wrote it.
    pub(crate) item: ItemFn,
    /// `#[doc]` attributes (moved to the generated struct).
    pub(crate) docs: Vec<Attribute>,
    /// `#[cfg]` attributes (copied to every generated item).
    pub(crate) cfgs: Vec<Attribute>,
    /// The input parameter.
    pub(crate) input: Param,
    /// The optional context parameter: `cx: ActionCtx` (second) or `ctx: Ctx` (first).
    pub(crate) context: Option<Param>,
    /// Its `Ok` type.
    pub(crate) output: Type,
    /// Its error type, when written out (not when a one-argument `Result<T>` alias is used).
    pub(crate) error: Option<Type>,
}

/// Checks the signature of an `#[action]` or `#[workflow]` fn. Returns `None` (with the
/// errors recorded) when it cannot be expanded.
pub(crate) fn check_signature(item: ItemFn, kind: Kind, errors: &Errors) -> Option<StepFn> {
    let attr = kind.attr();
    let sig = &item.sig;
    let mut ok = true;
    let mut fail = |tokens: &dyn quote::ToTokens, message: String| {
        errors.error_spanned_by(tokens, message);
        ok = false;
    };

    if let Some(constness) = &sig.constness {
        fail(
            constness,
            format!("`{attr}` fns cannot be `const`: remove `const` (write `async fn`)"),
        );
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        fail(
            unsafety,
            format!(
                "`{attr}` fns cannot be `unsafe`: move the unsafe code into an `unsafe` block inside the body"
            ),
        );
    }
    if let Some(abi) = &sig.abi {
        fail(
            abi,
            format!(
                "`{attr}` fns cannot have an ABI: remove `{}`",
                quote::quote!(#abi)
            ),
        );
    }
    if sig.asyncness.is_none() {
        fail(
            &sig.fn_token,
            format!(
                "`{attr}` fns must be `async`: write `async fn {}(…)`; {} body runs as a future",
                sig.ident,
                kind.noun()
            ),
        );
    }
    if !sig.generics.params.is_empty() {
        fail(
            &sig.generics,
            format!(
                "`{attr}` fns cannot be generic: {} has one concrete input and output type, because its JSON Schemas and slug are fixed at compile time; write one fn per type, or take an enum",
                kind.noun()
            ),
        );
    } else if let Some(where_clause) = &sig.generics.where_clause {
        fail(
            where_clause,
            format!("`{attr}` fns cannot have a `where` clause: they cannot be generic"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        fail(variadic, format!("`{attr}` fns cannot be variadic"));
    }
    if let Some(receiver) = sig.receiver() {
        fail(
            receiver,
            format!(
                "`{attr}` goes on a free fn, not a method: move `{}` out of the `impl` block (the macro turns it into a unit struct named like the fn)",
                sig.ident
            ),
        );
    }

    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(pat_type) => Some(pat_type),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let params = match (kind, typed.len()) {
        (_, 0) if sig.receiver().is_none() => {
            fail(
                &Spanned(sig.paren_token.span.join()),
                format!(
                    "{} takes exactly one input value: `{}` (use `()` for no input)",
                    kind.noun(),
                    kind.example()
                ),
            );
            None
        }
        (Kind::Workflow, 1) if is_named(&typed[0].ty, "Ctx") => {
            fail(
                typed[0],
                format!(
                    "a workflow takes an input value after its `Ctx`: `{}` (use `input: ()` for no input)",
                    kind.example()
                ),
            );
            None
        }
        (_, 1) => Some((None, typed[0])),
        (Kind::Action, 2) => Some((Some(typed[1]), typed[0])),
        (Kind::Workflow, 2) => Some((Some(typed[0]), typed[1])),
        (Kind::Action, _) if typed.len() > 2 => {
            fail(
                typed[2],
                "an action takes one input value and optionally `cx: ActionCtx`: put several values into one struct, e.g. `async fn name(input: MyInput, cx: ActionCtx)`".to_owned(),
            );
            None
        }
        (Kind::Workflow, _) if typed.len() > 2 => {
            fail(
                typed[2],
                "a workflow takes an optional `ctx: Ctx` and one input value: put several values into one struct, e.g. `async fn name(ctx: Ctx, input: MyInput)`".to_owned(),
            );
            None
        }
        _ => None,
    };

    let result = match &sig.output {
        ReturnType::Default => {
            fail(
                &Spanned(sig.paren_token.span.close()),
                format!(
                    "{} must return `Result<Output, {}>`: add a return type, e.g. `-> Result<(), {}>`, and end the body with `Ok(..)`",
                    kind.noun(),
                    kind.error_ty(),
                    kind.error_ty()
                ),
            );
            None
        }
        ReturnType::Type(_, ty) => match result_parts(ty) {
            Some(parts) => Some(parts),
            None => {
                let message = if is_generic_path(ty) {
                    format!(
                        "{} must return `Result<Output, {}>`, not `{}`: the macro reads the output type from a type named `Result`; if `{}` is an alias of `Result`, write `Result<T, E>` (or name the alias `Result`)",
                        kind.noun(),
                        kind.error_ty(),
                        compact(ty),
                        compact(ty),
                    )
                } else {
                    format!(
                        "{} must return `Result<Output, {}>`, not `{}`: write `-> Result<{}, {}>` and return `Ok(value)`",
                        kind.noun(),
                        kind.error_ty(),
                        compact(ty),
                        compact(ty),
                        kind.error_ty()
                    )
                };
                fail(ty, message);
                None
            }
        },
    };

    if !ok {
        return None;
    }
    let (context, input) = params?;
    let (output, error) = result?;
    let context = context.map(|p| Param {
        pat: (*p.pat).clone(),
        ty: (*p.ty).clone(),
    });
    let input = Param {
        pat: (*input.pat).clone(),
        ty: (*input.ty).clone(),
    };

    let mut docs = Vec::new();
    let mut cfgs = Vec::new();
    for attr in &item.attrs {
        if matches!(attr.style, syn::AttrStyle::Outer) {
            if attr.path().is_ident("doc") {
                docs.push(attr.clone());
            } else if attr.path().is_ident("cfg") {
                cfgs.push(attr.clone());
            }
        }
    }
    let mut item = item;
    item.attrs.retain(|attr| {
        !(matches!(attr.style, syn::AttrStyle::Outer)
            && (attr.path().is_ident("doc") || attr.path().is_ident("cfg")))
    });
    Some(StepFn {
        item,
        docs,
        cfgs,
        input,
        context,
        output,
        error,
    })
}

/// `(Ok type, Err type if written)` of a `Result<T, E>` / `Result<T>` type.
fn result_parts(ty: &Type) -> Option<(Type, Option<Type>)> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    });
    let output = types.next()??;
    let error = match types.next() {
        None => None,
        Some(error) => Some(error?),
    };
    if types.next().is_some() {
        return None;
    }
    Some((output, error))
}

/// Whether `ty` is a path with generic arguments, other than `Option` (`MyResult<T>`).
fn is_generic_path(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident != "Option" && matches!(s.arguments, PathArguments::AngleBracketed(_))))
}

/// A bare span as tokens, for span-only errors.
struct Spanned(proc_macro2::Span);

impl quote::ToTokens for Spanned {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        tokens.extend([proc_macro2::TokenTree::Ident(proc_macro2::Ident::new(
            "x", self.0,
        ))]);
    }
}

/// Whether `ty` is a path ending in `name` (`Ctx`, `reprise::Ctx`).
fn is_named(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == name && s.arguments.is_none()))
}

/// The first paragraph of the doc comment, lines joined with spaces.
pub(crate) fn description(docs: &[Attribute]) -> String {
    let mut text = String::new();
    for attr in docs {
        if let Meta::NameValue(nv) = &attr.meta
            && let Expr::Lit(lit) = &nv.value
            && let Lit::Str(s) = &lit.lit
        {
            text.push_str(&s.value());
            text.push('\n');
        }
    }
    let mut paragraph = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if paragraph.is_empty() {
                continue;
            }
            break;
        }
        paragraph.push(line);
    }
    paragraph.join(" ")
}

/// The tokens of `tokens` as compact text: a space only between two words
/// (`crate::actions::notify`, `agents[0]`, `self.tools.search`).
pub(crate) fn compact(tokens: &impl quote::ToTokens) -> String {
    fn walk(stream: proc_macro2::TokenStream, out: &mut String, last_word: &mut bool) {
        use proc_macro2::{Delimiter, TokenTree};
        for tree in stream {
            match tree {
                TokenTree::Ident(ident) => {
                    if *last_word {
                        out.push(' ');
                    }
                    out.push_str(&ident.to_string());
                    *last_word = true;
                }
                TokenTree::Literal(lit) => {
                    if *last_word {
                        out.push(' ');
                    }
                    out.push_str(&lit.to_string());
                    *last_word = true;
                }
                TokenTree::Punct(punct) => {
                    out.push(punct.as_char());
                    if punct.as_char() == ',' {
                        out.push(' ');
                    }
                    *last_word = false;
                }
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::Brace => ("{ ", " }"),
                        Delimiter::None => ("", ""),
                    };
                    out.push_str(open);
                    *last_word = false;
                    walk(group.stream(), out, last_word);
                    out.push_str(close);
                    *last_word = false;
                }
            }
        }
    }
    let mut out = String::new();
    walk(tokens.to_token_stream(), &mut out, &mut false);
    out
}
