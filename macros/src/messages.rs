//! The messages a workflow body receives: every `ctx.signal::<T>("name")` and
//! `ctx.updates::<Req, Resp>("name")` in the body, collected (not rewritten) into the
//! workflow's `WorkflowOptions::messages`, so that a delivery is checked against the name
//! and the payload type before anything is posted.

use std::collections::BTreeMap;

use proc_macro2::{Ident, TokenStream};
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Block, Expr, ExprMethodCall, GenericArgument, Lit, Macro, Token, Type};

use crate::errors::Errors;

/// One signal or update found in the body.
struct Found {
    /// `Signal` or `Update`.
    kind: &'static str,
    name: String,
    /// The payload (request) type.
    payload: Type,
    /// An update's reply type.
    reply: Option<Type>,
    /// The types as text, to tell a second declaration with other types.
    types: String,
    line: usize,
}

/// Collects the messages of `block`; reports a non-literal name or a missing turbofish at
/// the call. Returns the `&[MessageDecl]` expression for `WorkflowOptions::messages`, or
/// `None` when the body receives none.
pub(crate) fn collect(
    block: &Block,
    ctx: Option<&Ident>,
    private: &TokenStream,
    errors: &Errors,
) -> Option<TokenStream> {
    let ctx = ctx?;
    let mut collector = Collector {
        ctx,
        errors,
        found: BTreeMap::new(),
    };
    collector.visit_block(block);
    if collector.found.is_empty() {
        return None;
    }
    let decls = collector.found.values().map(|found| {
        let kind = Ident::new(found.kind, proc_macro2::Span::call_site());
        let name = &found.name;
        let payload = &found.payload;
        let reply = match &found.reply {
            Some(reply) => quote!(::core::option::Option::Some(#private::validator_for::<#reply>)),
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #private::MessageDecl {
                kind: #private::MessageKind::#kind,
                name: #name,
                payload: #private::validator_for::<#payload>,
                reply: #reply,
            }
        }
    });
    Some(quote!(&[#(#decls),*]))
}

/// The characters a signal or update name may hold (it appears in URLs).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

struct Collector<'a> {
    ctx: &'a Ident,
    errors: &'a Errors,
    /// By (kind, name).
    found: BTreeMap<(&'static str, String), Found>,
}

impl Collector<'_> {
    fn on_ctx(&self, expr: &Expr) -> bool {
        matches!(expr, Expr::Path(p) if p.qself.is_none() && p.path.is_ident(self.ctx))
    }

    fn message_call(&mut self, call: &ExprMethodCall) {
        let (kind, what, arity, example) = match call.method.to_string().as_str() {
            "signal" => ("Signal", "signal", 1, "ctx.signal::<Paid>(\"paid\")"),
            "updates" => (
                "Update",
                "update",
                2,
                "ctx.updates::<Request, Reply>(\"set-limit\")",
            ),
            _ => return,
        };
        let method = &call.method;
        let types: Vec<Type> = call
            .turbofish
            .iter()
            .flat_map(|t| t.args.iter())
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty.clone()),
                _ => None,
            })
            .collect();
        if types.len() != arity || types.iter().any(|t| matches!(t, Type::Infer(_))) {
            self.errors.error_spanned_by(
                call,
                format!(
                    "`ctx.{method}(..)` needs its {} written in the call, so that deliveries \
                     can be checked against {}: write `{example}`",
                    if arity == 1 {
                        "payload type"
                    } else {
                        "request and reply types"
                    },
                    if arity == 1 { "it" } else { "them" }
                ),
            );
            return;
        }
        let name = match call.args.first() {
            Some(Expr::Lit(lit)) if call.args.len() == 1 => match &lit.lit {
                Lit::Str(s) => Some(s.value()),
                _ => None,
            },
            _ => None,
        };
        let Some(name) = name else {
            self.errors.error_spanned_by(
                &call.args,
                format!(
                    "the {what} name of `ctx.{method}(..)` must be one string literal, so that \
                     the workflow's {what}s are known before a run receives one: write `{example}`"
                ),
            );
            return;
        };
        if !valid_name(&name) {
            self.errors.error_spanned_by(
                &call.args,
                format!(
                    "{what} name {name:?} is not valid: use 1 to 100 ASCII letters, digits, `-`, \
                     `_` or `.` (it appears in URLs), e.g. `{example}`"
                ),
            );
            return;
        }
        let line = call.method.span().start().line;
        let types_text = types
            .iter()
            .map(|t| t.to_token_stream().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(earlier) = self.found.get(&(kind, name.clone())) {
            if earlier.types != types_text {
                self.errors.error_spanned_by(
                    call.turbofish.as_ref().map(ToTokens::to_token_stream),
                    format!(
                        "{what} {name:?} is received here as `{types_text}` and as `{}` on line \
                         {}: one {what} name has one type; rename one of them",
                        earlier.types, earlier.line
                    ),
                );
            }
            return;
        }
        let mut types = types.into_iter();
        let payload = types.next();
        let reply = types.next();
        if let Some(payload) = payload {
            self.found.insert(
                (kind, name.clone()),
                Found {
                    kind,
                    name,
                    payload,
                    reply,
                    types: types_text,
                    line,
                },
            );
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast ExprMethodCall) {
        if self.on_ctx(&call.receiver) {
            self.message_call(call);
        }
        visit::visit_expr_method_call(self, call);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        // `join!(a.recv(), …)`, `format!(…)`: arguments that parse as expressions are
        // searched too.
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}
