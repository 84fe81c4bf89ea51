//! Code generation for `#[action]` and `#[workflow]`.
//!
//! Every path into the runtime goes through `<crate>::__private` (`::reprise` unless
//! `crate = "…"` says otherwise); generated locals use `Span::mixed_site()`; helpers live
//! in a `const _: () = { … };` block. The user's fn is kept as written, renamed, inside
//! that block, so type errors in its body or signature land on the user's tokens.
//!
//! On a signature error the macro emits the errors and the user's item unchanged, so the
//! rest of the crate still resolves it; on attribute or body errors it emits the errors
//! and the full expansion (with defaults where an option was wrong).

use heck::ToKebabCase;
use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, Path, Stmt, Visibility, parse_quote};

use crate::analyse::{
    SiteRecord, ctx_ref_ident, respan, rewrite_body, sites_ident, strip_step_attrs,
};
use crate::args::{ActionArgs, WorkflowArgs, parse_action_args, parse_workflow_args};
use crate::errors::Errors;
use crate::parse::{Kind, StepFn, check_signature, description};

/// Expands `#[action(args)] item`.
pub(crate) fn action(args: TokenStream, item: TokenStream) -> TokenStream {
    let errors = Errors::new();
    let args = parse_action_args(args, &errors);
    let Some(item_fn) = parse_item(item.clone(), Kind::Action, &errors) else {
        return with_errors(errors, item);
    };
    let name = item_fn.sig.ident.to_string();
    let Some(step) = check_signature(item_fn, Kind::Action, &errors) else {
        return with_errors(errors, item);
    };
    check_credential_reads(&step.item, &args, &errors);
    let output = with_errors(errors, action_tokens(&step, &args));
    debug_print("action", &name, &output);
    output
}

/// Expands `#[workflow(args)] item`.
pub(crate) fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    let errors = Errors::new();
    let args = parse_workflow_args(args, &errors);
    let Some(item_fn) = parse_item(item.clone(), Kind::Workflow, &errors) else {
        return with_errors(errors, item);
    };
    let name = item_fn.sig.ident.to_string();
    let mut original = item_fn.clone();
    let Some(step) = check_signature(item_fn, Kind::Workflow, &errors) else {
        // Re-emit the user's fn without the `#[step]` attributes the compiler does not know.
        strip_step_attrs(&mut original.block);
        return with_errors(errors, quote!(#original));
    };
    let output = workflow_tokens(&step, &args, &errors);
    let output = with_errors(errors, output);
    debug_print("workflow", &name, &output);
    output
}

fn parse_item(item: TokenStream, kind: Kind, errors: &Errors) -> Option<ItemFn> {
    match syn::parse2::<ItemFn>(item) {
        Ok(item) => Some(item),
        Err(error) => {
            let attr = match kind {
                Kind::Action => "#[action]",
                Kind::Workflow => "#[workflow]",
            };
            errors.error(
                error.span(),
                format!("`{attr}` goes on an `async fn`: {error}"),
            );
            None
        }
    }
}

/// The compile errors (if any) followed by `tokens`.
fn with_errors(errors: Errors, tokens: TokenStream) -> TokenStream {
    match errors.finish() {
        Ok(()) => tokens,
        Err(error) => {
            let mut output = error.to_compile_error();
            output.extend(tokens);
            output
        }
    }
}

/// Prints the expansion to stderr when `REPRISE_MACROS_DEBUG` is set (to anything but `0`).
fn debug_print(kind: &str, name: &str, tokens: &TokenStream) {
    let Some(flag) = std::env::var_os("REPRISE_MACROS_DEBUG") else {
        return;
    };
    if flag.is_empty() || flag == "0" {
        return;
    }
    eprintln!("// ---- #[{kind}] {name} ----\n{}", pretty(tokens));
}

/// Pretty-prints generated items (falls back to the raw tokens).
pub(crate) fn pretty(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

/// `<crate>::__private`.
fn private_path(krate: Option<&Path>) -> TokenStream {
    match krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::reprise::__private),
    }
}

/// A generated local or helper identifier, invisible to user code.
fn hidden(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// A hidden identifier whose errors point at `span`.
fn hidden_at(name: &str, span: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(span))
}

/// The pieces both macros generate the same way.
struct Common<'a> {
    private: TokenStream,
    name: &'a Ident,
    fn_name: String,
    slug: String,
    cfgs: &'a [syn::Attribute],
}

impl<'a> Common<'a> {
    fn new(step: &'a StepFn, krate: Option<&Path>, slug: Option<&syn::LitStr>) -> Self {
        let name = &step.item.sig.ident;
        let fn_name = name.unraw().to_string();
        let slug = slug.map_or_else(|| fn_name.to_kebab_case(), syn::LitStr::value);
        Common {
            private: private_path(krate),
            name,
            fn_name,
            slug,
            cfgs: &step.cfgs,
        }
    }

    /// The unit struct that stands for the fn.
    fn unit_struct(&self, step: &StepFn) -> TokenStream {
        let StepFn { docs, cfgs, .. } = step;
        let vis = &step.item.vis;
        let name = self.name;
        quote! {
            #(#docs)*
            #(#cfgs)*
            #[allow(non_camel_case_types, dead_code)]
            #[derive(
                ::core::clone::Clone,
                ::core::marker::Copy,
                ::core::fmt::Debug,
                ::core::default::Default
            )]
            #vis struct #name;
        }
    }

    /// The user's fn, renamed and private, with the given body.
    fn user_fn(&self, step: &StepFn) -> ItemFn {
        let mut user = step.item.clone();
        user.sig.ident = hidden_at("__reprise_user", self.name.span());
        user.vis = Visibility::Inherited;
        user
    }

    /// `impl Step for name`.
    fn impl_step(&self, step: &StepFn, behavior: TokenStream) -> TokenStream {
        let Common {
            private,
            name,
            slug,
            ..
        } = self;
        let input = &step.input.ty;
        let output = &step.output;
        let description = description(&step.docs);
        let input_span = located(input);
        let output_span = located(output);
        let input_item = quote_spanned!(input_span=> type Input = #input;);
        let output_item = quote_spanned!(output_span=> type Output = #output;);
        quote! {
            impl #private::Step for #name {
                #input_item
                #output_item
                const SLUG: &'static str = #slug;
                const DESCRIPTION: &'static str = #description;
                const BEHAVIOR: #private::StepBehavior<#input, #output> = #behavior;
            }
        }
    }

    /// The link-time registration, or nothing for `register = false`.
    fn register(&self, registered: bool) -> TokenStream {
        if !registered {
            return TokenStream::new();
        }
        let Common {
            private,
            name,
            fn_name,
            ..
        } = self;
        quote! {
            #private::inventory::submit! {
                #private::Registration::of::<#name>(#fn_name)
            }
        }
    }

    /// Wraps helpers in `const _: () = { … };`.
    fn scope(&self, body: TokenStream) -> TokenStream {
        let cfgs = self.cfgs;
        quote! {
            #(#cfgs)*
            const _: () = {
                #body
            };
        }
    }
}

/// "Checked at registration": every `.credential("name")` call with a literal name in
/// the action's body must name a credential of `credentials = [..]`; an error at the
/// literal says how to declare it. (A name computed at run time is checked when it is
/// read: kind `undeclared_credential`.)
fn check_credential_reads(item: &ItemFn, args: &ActionArgs, errors: &Errors) {
    struct Reads<'a> {
        declared: Vec<String>,
        errors: &'a Errors,
    }
    impl<'ast> syn::visit::Visit<'ast> for Reads<'_> {
        fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
            if call.method == "credential"
                && call.args.len() == 1
                && let Some(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(name),
                    ..
                })) = call.args.first()
                && !self.declared.contains(&name.value())
            {
                let mut names: Vec<String> =
                    self.declared.iter().map(|n| format!("\"{n}\"")).collect();
                names.push(format!("\"{}\"", name.value()));
                self.errors.error(
                    name.span(),
                    format!(
                        "credential `{}` is not declared by this action: an action reads only \
                         the credentials it declares; add it: `#[action(credentials = [{}])]`",
                        name.value(),
                        names.join(", ")
                    ),
                );
            }
            syn::visit::visit_expr_method_call(self, call);
        }
    }
    let mut reads = Reads {
        declared: args.credentials.iter().map(|c| c.name.value()).collect(),
        errors,
    };
    syn::visit::Visit::visit_block(&mut reads, &item.block);
}

/// The `#[action]` expansion.
fn action_tokens(step: &StepFn, args: &ActionArgs) -> TokenStream {
    let common = Common::new(step, args.krate.as_ref(), args.slug.as_ref());
    let Common { private, name, .. } = &common;
    let vis = &step.item.vis;
    let input = &step.input.ty;
    let output = &step.output;

    let user = common.user_fn(step);
    let user_name = &user.sig.ident;
    let body_name = hidden("__reprise_body");
    let input_arg = hidden_at("__reprise_input", input.span());
    let (cx_param, cx_arg) = match &step.context {
        Some(cx) => {
            let arg = hidden_at("__reprise_cx", cx.ty.span());
            (quote!(#arg: #private::ActionCtx), quote!(, #arg))
        }
        None => (quote!(_: #private::ActionCtx), quote!()),
    };
    let pin_span = step
        .item
        .sig
        .asyncness
        .map_or_else(Span::call_site, |a| a.span);
    let boxed = hidden_at("__reprise_result", pin_span);
    let convert = error_conversion(step, &boxed, private, quote!(ActionError));
    let body_fn = quote_spanned! {pin_span=>
        fn #body_name(
            #input_arg: #input,
            #cx_param,
        ) -> #private::BoxFuture<'static, #private::Result<#output, #private::ActionError>> {
            #private::Box::pin(async move {
                let #boxed = #user_name(#input_arg #cx_arg).await;
                #convert
            })
        }
    };

    let mut options = Vec::new();
    if let Some(retries) = args.retries {
        options.push(quote!(retries: #retries,));
    }
    if let Some(ms) = args.backoff_ms {
        options.push(quote!(backoff: #private::millis(#ms),));
    }
    if let Some(ms) = args.timeout_ms {
        options.push(quote!(timeout: ::core::option::Option::Some(#private::millis(#ms)),));
    }
    if !args.non_retryable.is_empty() {
        let kinds = &args.non_retryable;
        options.push(quote!(non_retryable: &[#(#kinds),*],));
    }
    if !args.credentials.is_empty() {
        let decls = args.credentials.iter().map(|c| {
            let name = &c.name;
            match &c.pin {
                None => quote!(#private::CredentialDecl::any(#name)),
                Some(kind) => {
                    let kind = Ident::new(&kind.to_string(), kind.span());
                    quote!(#private::CredentialDecl::pinned(#name, #private::CredentialPin::#kind))
                }
            }
        });
        options.push(quote!(credentials: &[#(#decls),*],));
    }
    let behavior = quote! {
        #private::StepBehavior::Action {
            options: #private::ActionOptions {
                #(#options)*
                ..#private::ActionOptions::DEFAULT
            },
            call: #body_name,
        }
    };
    let impl_step = common.impl_step(step, behavior);
    let register = common.register(!args.unregistered);
    let checks = data_checks(step, private);
    let scoped = common.scope(quote! {
        #user
        #body_fn
        #impl_step
        #register
        #checks
    });
    let unit_struct = common.unit_struct(step);
    let cfgs = &step.cfgs;
    quote! {
        #unit_struct
        #scoped
        #(#cfgs)*
        impl #name {
            /// Calls the action directly, outside any workflow: a plain async call with a
            /// standalone `ActionCtx` (no retries, no recording). Inside a `#[workflow]` body
            /// the macro turns `.run(..)` into a recorded step instead.
            #[allow(dead_code)]
            #vis fn run(
                &self,
                input: #input,
            ) -> #private::BoxFuture<'static, #private::Result<#output, #private::ActionError>> {
                #private::call_standalone::<Self>(input)
            }
        }
    }
}

/// The `#[workflow]` expansion.
fn workflow_tokens(step: &StepFn, args: &WorkflowArgs, errors: &Errors) -> TokenStream {
    let common = Common::new(step, args.krate.as_ref(), args.slug.as_ref());
    let private = &common.private;
    let input = &step.input.ty;
    let output = &step.output;

    // The user's fn, with its step calls rewritten and the hidden `Ctx` parameters added.
    let mut user = common.user_fn(step);
    let ctx_ident = step.context.as_ref().and_then(|ctx| match &ctx.pat {
        Pat::Ident(pat) => Some(pat.ident.clone()),
        _ => None,
    });
    let messages = crate::messages::collect(&user.block, ctx_ident.as_ref(), private, errors);
    let (sites, shape) = rewrite_body(&mut user.block, ctx_ident, private, errors);
    let owned = hidden("__reprise_ctx_owned");
    let ctx_ref = ctx_ref_ident(Span::call_site());
    let mut inputs = user.sig.inputs.clone();
    if step.context.is_some()
        && let Some(FnArg::Typed(ctx)) = inputs.first_mut()
    {
        ctx.attrs
            .push(parse_quote!(#[allow(unused_variables, unused_mut)]));
    }
    inputs.insert(0, parse_quote!(#owned: #private::Ctx));
    user.sig.inputs = inputs;
    let prelude: Stmt = parse_quote!(let #ctx_ref: &#private::Ctx = &#owned;);
    user.block.stmts.insert(0, prelude);

    let user_name = &user.sig.ident;
    let body_name = hidden("__reprise_body");
    let input_arg = hidden_at("__reprise_input", input.span());
    let call_args = if step.context.is_some() {
        quote!(::core::clone::Clone::clone(&#owned), #owned, #input_arg)
    } else {
        quote!(#owned, #input_arg)
    };
    let pin_span = step
        .item
        .sig
        .asyncness
        .map_or_else(Span::call_site, |a| a.span);
    let boxed = hidden_at("__reprise_result", pin_span);
    let convert = error_conversion(step, &boxed, private, quote!(WorkflowError));
    let body_fn = quote_spanned! {pin_span=>
        fn #body_name(
            #owned: #private::Ctx,
            #input_arg: #input,
        ) -> #private::BoxFuture<'static, #private::Result<#output, #private::WorkflowError>> {
            #private::Box::pin(async move {
                let #boxed = #user_name(#call_args).await;
                #convert
            })
        }
    };

    let manifest = manifest(&sites, private);
    let sites_name = sites_ident();
    let shape_name = shape_ident();
    let shape_len = shape.len();
    let shape_elements = crate::shape::elements(&shape, private);
    let shape_static = quote! {
        static #shape_name: [#private::Shape; #shape_len] = [#(#shape_elements),*];
    };
    let options = workflow_options(args, private, messages);
    let behavior = quote! {
        #private::StepBehavior::Workflow {
            options: #options,
            sites: &#sites_name,
            shape: &#shape_name,
            call: #body_name,
        }
    };
    let impl_step = common.impl_step(step, behavior);
    let register = common.register(!args.unregistered);
    let checks = data_checks(step, private);
    let scoped = common.scope(quote! {
        #manifest
        #shape_static
        #user
        #body_fn
        #impl_step
        #register
        #checks
    });
    let unit_struct = common.unit_struct(step);
    quote! {
        #unit_struct
        #scoped
    }
}

/// The `WorkflowOptions` of `#[workflow(…)]`: the options set, the rest from
/// `WorkflowOptions::DEFAULT`. `on_failure = handler` names the handler's slug through its
/// `Step` impl, so a handler that is not a workflow taking `FailedRun` is a type error at
/// the path the user wrote.
fn workflow_options(
    args: &WorkflowArgs,
    private: &TokenStream,
    messages: Option<TokenStream>,
) -> TokenStream {
    let mut fields = Vec::new();
    if let Some(messages) = messages {
        fields.push(quote!(messages: #messages,));
    }
    if let Some(max_attempts) = args.max_attempts {
        fields.push(quote!(max_attempts: #max_attempts,));
    }
    if let Some(ms) = args.retention_ms {
        fields.push(quote!(retention: ::core::option::Option::Some(#private::millis(#ms)),));
    }
    if let Some(n) = args.max_history_events {
        fields.push(quote!(max_history_events: ::core::option::Option::Some(#n),));
    }
    if let Some(ms) = args.timeout_ms {
        fields.push(quote!(timeout: ::core::option::Option::Some(#private::millis(#ms)),));
    }
    if args.pause_at_max_attempts {
        fields.push(quote!(on_max_attempts: #private::OnMaxAttempts::Pause,));
    }
    if let Some(name) = &args.on_event {
        fields.push(quote!(on_event: ::core::option::Option::Some(#name),));
    }
    if let Some(name) = &args.queue {
        fields.push(quote!(queue: ::core::option::Option::Some(#name),));
    }
    if let Some(config) = &args.subscribable {
        // Spanned at the user's type: a type without `JsonSchema` or `Deserialize` is an
        // error there.
        let span = config.span();
        fields.push(quote_spanned! {span=>
            subscribable: ::core::option::Option::Some(
                #private::SubscriptionSchema::of::<#config>(),
            ),
        });
    }
    if let Some(handler) = &args.on_failure {
        let span = handler.span();
        fields.push(quote_spanned! {span=>
            on_failure: ::core::option::Option::Some(
                #private::failure_handler::<#handler>(),
            ),
        });
    }
    if fields.is_empty() {
        quote!(#private::WorkflowOptions::DEFAULT)
    } else {
        // The update is needless when every option is set; it keeps options added later
        // at their defaults.
        quote!({
            #[allow(clippy::needless_update)]
            let options = #private::WorkflowOptions {
                #(#fields)*
                ..#private::WorkflowOptions::DEFAULT
            };
            options
        })
    }
}

/// The ident of the generated static shape of the body (`reprise::Shape`s).
fn shape_ident() -> Ident {
    Ident::new("__REPRISE_SHAPE", Span::mixed_site())
}

/// `static __REPRISE_SITES: [Site; N] = [...]`.
fn manifest(sites: &[SiteRecord], private: &TokenStream) -> TokenStream {
    let name = sites_ident();
    let len = sites.len();
    let entries = sites.iter().map(|site| {
        let kind = format_ident!("{}", site.kind.variant());
        let callee = &site.callee;
        let ordinal = Literal::u32_unsuffixed(site.ordinal);
        let line = Literal::u32_unsuffixed(site.line);
        let pinned = match &site.pinned {
            Some(id) => quote!(::core::option::Option::Some(#id)),
            None => quote!(::core::option::Option::None),
        };
        quote! {
            #private::Site {
                kind: #private::SiteKind::#kind,
                callee: #callee,
                ordinal: #ordinal,
                pinned: #pinned,
                line: #line,
            }
        }
    });
    quote! {
        static #name: [#private::Site; #len] = [#(#entries),*];
    }
}

/// Converts the body's `Result<T, E>` (in `result`) into the runtime's error type, with
/// the conversion spanned at the user's `E`: an error type that does not convert is
/// reported once, there.
fn error_conversion(
    step: &StepFn,
    result: &Ident,
    private: &TokenStream,
    target: TokenStream,
) -> TokenStream {
    let ok = hidden("__reprise_ok");
    let err = hidden("__reprise_err");
    let (span, error_ty) = match &step.error {
        Some(error) => (located(error), quote!(#error)),
        None => (located(&step.output), quote!(_)),
    };
    let private_at = respan(private.clone(), span);
    let into = quote_spanned! {span=>
        <#error_ty as ::core::convert::Into<#private_at::#target>>::into(#err)
    };
    quote! {
        match #result {
            #private::Result::Ok(#ok) => #private::Result::Ok(#ok),
            #private::Result::Err(#err) => #private::Result::Err(#into),
        }
    }
}

/// A span with the macro's hygiene at the location of `tokens` (their first token).
fn located(tokens: &impl ToTokens) -> Span {
    let first = tokens
        .to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span());
    Span::call_site().located_at(first)
}

/// Checks spanned at the user's input and output types: each must be `StepData`. A type
/// that is not gets `StepData`'s message ("add `#[derive(Serialize, Deserialize,
/// JsonSchema)]`") at the user's type.
fn data_checks(step: &StepFn, private: &TokenStream) -> TokenStream {
    [&step.input.ty, &step.output]
        .into_iter()
        .map(|ty| {
            let span = located(ty);
            let private = respan(private.clone(), span);
            quote_spanned! {span=>
                const _: () = #private::assert_step_data::<#ty>();
            }
        })
        .collect()
}
