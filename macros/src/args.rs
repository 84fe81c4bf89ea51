//! Attribute arguments: `#[action(retries = 3, backoff = "1s", …)]` and
//! `#[workflow(slug = "…", max_attempts = 5)]`.
//!
//! Parsed with `lookahead1` and custom keywords, so a wrong key gets "expected one of …";
//! duplicate keys, keys of the other macro and common misspellings get their own message.
//! Value errors (a bad duration, a number out of range) are collected and parsing goes on,
//! so every mistake in one attribute is reported at once.

use std::collections::BTreeMap;
use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{LitInt, LitStr, Path, Token};

use crate::errors::Errors;

mod kw {
    syn::custom_keyword!(slug);
    syn::custom_keyword!(retries);
    syn::custom_keyword!(backoff);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(non_retryable);
    syn::custom_keyword!(max_attempts);
    syn::custom_keyword!(register);
    syn::custom_keyword!(on_failure);
    syn::custom_keyword!(on_max_attempts);
    syn::custom_keyword!(retention);
    syn::custom_keyword!(on_event);
    syn::custom_keyword!(max_history_events);
    syn::custom_keyword!(queue);
    syn::custom_keyword!(credentials);
    syn::custom_keyword!(subscribable);
}

/// One entry of `credentials = [..]`: `"github"` or `("billing", Scope::Org)`.
pub(crate) struct CredentialArg {
    /// The credential's name.
    pub(crate) name: LitStr,
    /// The pinned scope kind: `User`, `Project` or `Org`.
    pub(crate) pin: Option<syn::Ident>,
}

/// Options of `#[action(…)]`.
#[derive(Default)]
pub(crate) struct ActionArgs {
    /// `slug = "…"`.
    pub(crate) slug: Option<LitStr>,
    /// `retries = N`.
    pub(crate) retries: Option<u32>,
    /// `backoff = "1s"`, in milliseconds.
    pub(crate) backoff_ms: Option<u64>,
    /// `timeout = "30s"`, in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// `non_retryable = ["kind", …]`.
    pub(crate) non_retryable: Vec<LitStr>,
    /// `register = false`: leave the step out of the link-time registry.
    pub(crate) unregistered: bool,
    /// `crate = "path"`.
    pub(crate) krate: Option<Path>,
    /// `credentials = ["github", ("billing", Scope::Org)]`.
    pub(crate) credentials: Vec<CredentialArg>,
}

/// Options of `#[workflow(…)]`.
#[derive(Default)]
pub(crate) struct WorkflowArgs {
    /// `slug = "…"`.
    pub(crate) slug: Option<LitStr>,
    /// `max_attempts = N`.
    pub(crate) max_attempts: Option<u32>,
    /// `on_failure = handler`: the workflow started when a run fails for good.
    pub(crate) on_failure: Option<Path>,
    /// `on_max_attempts = "pause"`: park a run whose attempts ran out as `paused`.
    pub(crate) pause_at_max_attempts: bool,
    /// `register = false`: leave the workflow out of the link-time registry.
    pub(crate) unregistered: bool,
    /// `crate = "path"`.
    pub(crate) krate: Option<Path>,
    /// `retention = "30d"`, in milliseconds.
    pub(crate) retention_ms: Option<u64>,
    /// `on_event = "order.paid"`: start one run per emitted event of this name.
    pub(crate) on_event: Option<LitStr>,
    /// `max_history_events = N`: the cap on a run's event log (0 = no cap).
    pub(crate) max_history_events: Option<u64>,
    /// `timeout = "1d"`: the run's execution timeout, in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// `queue = "llm"`: the flow-control queue the workflow's runs go through.
    pub(crate) queue: Option<LitStr>,
    /// `subscribable = DigestSettings`: the subscription config type.
    pub(crate) subscribable: Option<syn::Type>,
}

const ACTION_KEYS: &str = "`slug`, `retries`, `backoff`, `timeout`, `non_retryable`, \
     `credentials`, `register` or `crate`";
const WORKFLOW_KEYS: &str = "`slug`, `max_attempts`, `on_max_attempts`, `on_failure`, \
     `retention`, `timeout`, `on_event`, `max_history_events`, `queue`, `subscribable`, \
     `register` or `crate`";

/// Parses the arguments of `#[action(…)]`, reporting problems to `errors`.
pub(crate) fn parse_action_args(tokens: TokenStream, errors: &Errors) -> ActionArgs {
    let mut args = ActionArgs::default();
    let parser = |input: ParseStream| {
        let mut seen = Seen::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::slug) {
                let key = input.parse::<kw::slug>()?;
                seen.check("slug", key.span, errors);
                input.parse::<Token![=]>()?;
                args.slug = Some(parse_slug(input, errors)?);
            } else if lookahead.peek(kw::retries) {
                let key = input.parse::<kw::retries>()?;
                seen.check("retries", key.span, errors);
                input.parse::<Token![=]>()?;
                args.retries = parse_u32(input, "retries", errors)?;
            } else if lookahead.peek(kw::backoff) {
                let key = input.parse::<kw::backoff>()?;
                seen.check("backoff", key.span, errors);
                input.parse::<Token![=]>()?;
                args.backoff_ms = parse_duration(input, "backoff", true, errors)?;
            } else if lookahead.peek(kw::timeout) {
                let key = input.parse::<kw::timeout>()?;
                seen.check("timeout", key.span, errors);
                input.parse::<Token![=]>()?;
                args.timeout_ms = parse_duration(input, "timeout", false, errors)?;
            } else if lookahead.peek(kw::non_retryable) {
                let key = input.parse::<kw::non_retryable>()?;
                seen.check("non_retryable", key.span, errors);
                input.parse::<Token![=]>()?;
                args.non_retryable = parse_kinds(input)?;
            } else if lookahead.peek(kw::credentials) {
                let key = input.parse::<kw::credentials>()?;
                seen.check("credentials", key.span, errors);
                input.parse::<Token![=]>()?;
                args.credentials = parse_credentials(input, errors)?;
            } else if lookahead.peek(kw::register) {
                let key = input.parse::<kw::register>()?;
                seen.check("register", key.span, errors);
                input.parse::<Token![=]>()?;
                args.unregistered = !input.parse::<syn::LitBool>()?.value;
            } else if lookahead.peek(Token![crate]) {
                let key = input.parse::<Token![crate]>()?;
                seen.check("crate", key.span, errors);
                input.parse::<Token![=]>()?;
                args.krate = Some(parse_crate(input)?);
            } else if let Some(error) = unknown_key(input, Macro::Action) {
                return Err(error);
            } else {
                return Err(lookahead.error());
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    args
}

/// Parses the arguments of `#[workflow(…)]`, reporting problems to `errors`.
pub(crate) fn parse_workflow_args(tokens: TokenStream, errors: &Errors) -> WorkflowArgs {
    let mut args = WorkflowArgs::default();
    let parser = |input: ParseStream| {
        let mut seen = Seen::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::slug) {
                let key = input.parse::<kw::slug>()?;
                seen.check("slug", key.span, errors);
                input.parse::<Token![=]>()?;
                args.slug = Some(parse_slug(input, errors)?);
            } else if lookahead.peek(kw::max_attempts) {
                let key = input.parse::<kw::max_attempts>()?;
                seen.check("max_attempts", key.span, errors);
                input.parse::<Token![=]>()?;
                let span = input.span();
                args.max_attempts = parse_u32(input, "max_attempts", errors)?;
                if args.max_attempts == Some(0) {
                    errors.error(
                        span,
                        "`max_attempts` must be at least 1: it counts the first attempt too",
                    );
                }
            } else if lookahead.peek(kw::on_failure) {
                let key = input.parse::<kw::on_failure>()?;
                seen.check("on_failure", key.span, errors);
                input.parse::<Token![=]>()?;
                if input.peek(LitStr) {
                    let lit: LitStr = input.parse()?;
                    errors.error(
                        lit.span(),
                        "`on_failure` takes the handler workflow's fn, not a string: write \
                         `on_failure = notify_failure` (a `#[workflow]` fn taking \
                         `reprise::FailedRun`)",
                    );
                } else {
                    args.on_failure = Some(input.parse::<Path>()?);
                }
            } else if lookahead.peek(kw::on_max_attempts) {
                let key = input.parse::<kw::on_max_attempts>()?;
                seen.check("on_max_attempts", key.span, errors);
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                match lit.value().as_str() {
                    "pause" => args.pause_at_max_attempts = true,
                    "fail" => args.pause_at_max_attempts = false,
                    other => errors.error(
                        lit.span(),
                        format!(
                            "unknown `on_max_attempts` value `{other}`: expected \"fail\" (the \
                             default: the run fails) or \"pause\" (the run is parked as \
                             `paused` until `runs unpause`)"
                        ),
                    ),
                }
            } else if lookahead.peek(kw::register) {
                let key = input.parse::<kw::register>()?;
                seen.check("register", key.span, errors);
                input.parse::<Token![=]>()?;
                args.unregistered = !input.parse::<syn::LitBool>()?.value;
            } else if lookahead.peek(Token![crate]) {
                let key = input.parse::<Token![crate]>()?;
                seen.check("crate", key.span, errors);
                input.parse::<Token![=]>()?;
                args.krate = Some(parse_crate(input)?);
            } else if lookahead.peek(kw::retention) {
                let key = input.parse::<kw::retention>()?;
                seen.check("retention", key.span, errors);
                input.parse::<Token![=]>()?;
                args.retention_ms = parse_retention(input, errors)?;
            } else if lookahead.peek(kw::on_event) {
                let key = input.parse::<kw::on_event>()?;
                seen.check("on_event", key.span, errors);
                input.parse::<Token![=]>()?;
                args.on_event = Some(parse_event_name(input, errors)?);
            } else if lookahead.peek(kw::max_history_events) {
                let key = input.parse::<kw::max_history_events>()?;
                seen.check("max_history_events", key.span, errors);
                input.parse::<Token![=]>()?;
                let lit: syn::LitInt = input.parse()?;
                match lit.base10_parse::<u64>() {
                    Ok(n) => args.max_history_events = Some(n),
                    Err(_) => errors.error(
                        lit.span(),
                        "`max_history_events` takes a whole number of events, e.g. \
                         `max_history_events = 10_000` (0 turns the cap off)",
                    ),
                }
            } else if lookahead.peek(kw::timeout) {
                let key = input.parse::<kw::timeout>()?;
                seen.check("timeout", key.span, errors);
                input.parse::<Token![=]>()?;
                args.timeout_ms = parse_duration(input, "timeout", false, errors)?;
            } else if lookahead.peek(kw::queue) {
                let key = input.parse::<kw::queue>()?;
                seen.check("queue", key.span, errors);
                input.parse::<Token![=]>()?;
                args.queue = Some(parse_queue_name(input, errors)?);
            } else if lookahead.peek(kw::subscribable) {
                let key = input.parse::<kw::subscribable>()?;
                seen.check("subscribable", key.span, errors);
                if !input.peek(Token![=]) {
                    errors.error(
                        key.span,
                        "`subscribable` names the subscription config type: write \
                         `subscribable = DigestSettings` (a type deriving `JsonSchema` and \
                         `Deserialize`; use `subscribable = ()` for subscriptions without \
                         settings)",
                    );
                } else {
                    input.parse::<Token![=]>()?;
                    if input.peek(LitStr) {
                        let lit: LitStr = input.parse()?;
                        errors.error(
                            lit.span(),
                            "`subscribable` takes the config type, not a string: write \
                             `subscribable = DigestSettings`",
                        );
                    } else {
                        args.subscribable = Some(input.parse::<syn::Type>()?);
                    }
                }
            } else if let Some(error) = unknown_key(input, Macro::Workflow) {
                return Err(error);
            } else {
                return Err(lookahead.error());
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    args
}

/// Keys seen so far in one attribute, to report duplicates.
#[derive(Default)]
struct Seen(BTreeMap<&'static str, Span>);

impl Seen {
    fn check(&mut self, key: &'static str, span: Span, errors: &Errors) {
        if self.0.insert(key, span).is_some() {
            errors.error(
                span,
                format!("duplicate option `{key}`: it is already set earlier in this attribute; remove one of them"),
            );
        }
    }
}

#[derive(Clone, Copy)]
enum Macro {
    Action,
    Workflow,
}

/// A tailored error for an identifier that is not a key of this macro, if the next token
/// is an identifier.
fn unknown_key(input: ParseStream, which: Macro) -> Option<syn::Error> {
    let ident = input.fork().call(syn::Ident::parse_any).ok()?;
    let name = ident.to_string();
    let (attr, keys) = match which {
        Macro::Action => ("#[action]", ACTION_KEYS),
        Macro::Workflow => ("#[workflow]", WORKFLOW_KEYS),
    };
    let hint = match (which, name.as_str()) {
        (_, "name" | "id" | "key") => Some("did you mean `slug = \"…\"`?".to_owned()),
        (Macro::Action, "retry" | "max_retries" | "retry_count") => {
            Some("did you mean `retries = N` (retries after the first attempt)?".to_owned())
        }
        (Macro::Action, "max_attempts" | "attempts") => Some(
            "actions take `retries = N` (retries after the first attempt); `max_attempts` is a `#[workflow]` option"
                .to_owned(),
        ),
        (Macro::Action, "delay" | "retry_delay" | "initial_backoff" | "backoff_ms") => {
            Some("did you mean `backoff = \"1s\"`?".to_owned())
        }
        (Macro::Action, "timeout_ms" | "deadline") => {
            Some("did you mean `timeout = \"30s\"`?".to_owned())
        }
        (Macro::Action, "non_retriable" | "fatal" | "permanent" | "no_retry") => {
            Some("did you mean `non_retryable = [\"kind\", …]`?".to_owned())
        }
        (Macro::Workflow, "retries" | "attempts" | "max_retries") => Some(
            "workflows take `max_attempts = N`: how many times the whole body may run".to_owned(),
        ),
        (Macro::Workflow, "on_error" | "on_fail" | "failure_handler" | "onfailure") => {
            Some("did you mean `on_failure = handler`?".to_owned())
        }
        (Macro::Workflow, "task_queue" | "queue_name" | "queues") => {
            Some("did you mean `queue = \"llm\"`?".to_owned())
        }
        (
            Macro::Workflow,
            "concurrency" | "rate_limit" | "priority" | "debounce" | "throttle",
        ) => Some(
            "limits across runs are queue settings: write `queue = \"llm\"` here and \
             configure the queue on the engine, e.g. \
             `Engine::builder().queue(Queue::new(\"llm\").concurrency(10))`; priority is \
             given per start (`StartOptions::priority`)"
                .to_owned(),
        ),
        (Macro::Workflow, "subscription" | "subscriptions" | "subscriber" | "subscribe") => {
            Some("did you mean `subscribable = ConfigType`?".to_owned())
        }
        (Macro::Action, "subscribable") => Some(
            "`subscribable` is a `#[workflow]` option: subscriptions start runs of workflows"
                .to_owned(),
        ),
        (Macro::Workflow, "on" | "event" | "trigger" | "on_events" | "event_name") => {
            Some("did you mean `on_event = \"order.paid\"`?".to_owned())
        }
        (Macro::Workflow, "ttl" | "keep" | "keep_for" | "retain" | "expire_after") => Some(
            "did you mean `retention = \"30d\"` (how long ended runs are kept)?".to_owned(),
        ),
        (Macro::Action, "retention") => Some(
            "`retention` is a `#[workflow]` option: runs are kept per workflow".to_owned(),
        ),
        (Macro::Workflow, "execution_timeout" | "deadline" | "run_timeout") => Some(
            "did you mean `timeout = \"1d\"` (the run fails with kind `timeout` once that long has passed since it was created)?".to_owned(),
        ),
        (Macro::Action, "credential" | "secrets" | "secret") => Some(
            "did you mean `credentials = [\"github\"]`?".to_owned(),
        ),
        (Macro::Workflow, "credentials" | "credential" | "secrets") => Some(
            "credentials are declared by the actions that read them: write \
             `#[action(credentials = [\"github\"])]` on the action"
                .to_owned(),
        ),
        (Macro::Workflow, "backoff" | "non_retryable") => Some(format!(
            "`{name}` is an `#[action]` option: set it on the actions the workflow calls"
        )),
        _ => None,
    };
    let message = match hint {
        Some(hint) => format!("unknown `{attr}` option `{name}`: {hint}"),
        None => format!("unknown `{attr}` option `{name}`: expected {keys}"),
    };
    Some(syn::Error::new(ident.span(), message))
}

/// `queue = "llm"`: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.` (the rule
/// of `reprise::queue::check_queue_name`).
fn parse_queue_name(input: ParseStream, errors: &Errors) -> syn::Result<LitStr> {
    let lit: LitStr = input.parse()?;
    let name = lit.value();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errors.error(
            lit.span(),
            format!(
                "`{name}` is not a queue name: use 1 to 64 ASCII letters, digits, `-`, `_` \
                 or `.`, e.g. `queue = \"llm\"`"
            ),
        );
    }
    Ok(lit)
}

/// `on_event = "order.paid"`: 1 to 255 bytes, no whitespace or control characters (the
/// rule `Engine::emit` applies to names).
fn parse_event_name(input: ParseStream, errors: &Errors) -> syn::Result<LitStr> {
    let lit: LitStr = input.parse()?;
    let value = lit.value();
    if value.is_empty() {
        errors.error(
            lit.span(),
            "the event name must not be empty: write `on_event = \"order.paid\"`",
        );
    } else if value.len() > 255 {
        errors.error(lit.span(), "the event name is longer than 255 bytes");
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.error(
            lit.span(),
            "the event name holds whitespace or a control character; use printable \
             characters such as `order.paid`",
        );
    }
    Ok(lit)
}

fn parse_slug(input: ParseStream, errors: &Errors) -> syn::Result<LitStr> {
    let lit: LitStr = input.parse()?;
    let value = lit.value();
    if value.is_empty() {
        errors.error(lit.span(), "the slug must not be empty");
    } else if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        errors.error(
            lit.span(),
            format!(
                "invalid slug character {bad:?}: slugs appear in URLs and step ids, so they may contain only ASCII letters, digits, `-`, `_` and `.` (e.g. \"signup-pipeline\")"
            ),
        );
    }
    Ok(lit)
}

fn parse_u32(input: ParseStream, key: &str, errors: &Errors) -> syn::Result<Option<u32>> {
    let lit: LitInt = input.parse()?;
    match lit.base10_parse::<u32>() {
        Ok(n) => Ok(Some(n)),
        Err(_) => {
            errors.error(
                lit.span(),
                format!("`{key}` must be a whole number from 0 to {}", u32::MAX),
            );
            Ok(None)
        }
    }
}

/// A duration string in whole milliseconds. `zero_ok` allows `"0s"`.
fn parse_duration(
    input: ParseStream,
    key: &str,
    zero_ok: bool,
    errors: &Errors,
) -> syn::Result<Option<u64>> {
    let lit: LitStr = input.parse()?;
    match duration_millis(&lit.value(), zero_ok) {
        Ok(ms) => Ok(Some(ms)),
        Err(why) => {
            errors.error(
                lit.span(),
                format!("invalid `{key}` duration {:?}: {why}", lit.value()),
            );
            Ok(None)
        }
    }
}

/// Parses a humantime duration (`"500ms"`, `"1s"`, `"2m 30s"`) into whole milliseconds.
pub(crate) fn duration_millis(text: &str, zero_ok: bool) -> Result<u64, String> {
    const EXAMPLES: &str =
        "write a number and a unit, e.g. \"500ms\", \"30s\", \"5m\" or \"1h 30m\"";
    let duration: Duration =
        humantime::parse_duration(text).map_err(|e| format!("{e}; {EXAMPLES}"))?;
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("durations are kept to the millisecond; round it to whole milliseconds".into());
    }
    if duration.is_zero() && !zero_ok {
        return Err(format!("it must be longer than zero; {EXAMPLES}"));
    }
    u64::try_from(duration.as_millis()).map_err(|_| "the duration is too long".to_owned())
}

/// `retention = "30d"`: how long ended runs are kept, in whole milliseconds.
fn parse_retention(input: ParseStream, errors: &Errors) -> syn::Result<Option<u64>> {
    let lit: LitStr = input.parse()?;
    match duration_millis(&lit.value(), false) {
        Ok(ms) => Ok(Some(ms)),
        Err(why) => {
            errors.error(
                lit.span(),
                format!(
                    "invalid `retention` {:?}: {why}; retention is how long ended runs are \
                     kept, e.g. `retention = \"30d\"`, `\"12h\"` or `\"90days\"`",
                    lit.value()
                ),
            );
            Ok(None)
        }
    }
}

fn parse_kinds(input: ParseStream) -> syn::Result<Vec<LitStr>> {
    if input.peek(LitStr) {
        return Ok(vec![input.parse()?]);
    }
    if !input.peek(syn::token::Bracket) {
        return Err(input.error("expected a list of error kinds, e.g. `non_retryable = [\"card_declined\", \"not_found\"]`"));
    }
    let content;
    syn::bracketed!(content in input);
    let kinds = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
    Ok(kinds.into_iter().collect())
}

/// `credentials = ["github", ("billing", Scope::Org)]`: names checked like
/// `reprise::credentials::check_name` (1 to 64 ASCII letters, digits, `-`, `_`, `.`), each
/// declared once, pins one of `Scope::User`, `Scope::Project`, `Scope::Org`.
fn parse_credentials(input: ParseStream, errors: &Errors) -> syn::Result<Vec<CredentialArg>> {
    const EXAMPLE: &str = "e.g. `credentials = [\"github\", (\"billing\", Scope::Org)]`";
    if !input.peek(syn::token::Bracket) {
        return Err(input.error(format!("expected a list of credential names, {EXAMPLE}")));
    }
    let content;
    syn::bracketed!(content in input);
    let mut list: Vec<CredentialArg> = Vec::new();
    while !content.is_empty() {
        let entry = if content.peek(LitStr) {
            CredentialArg {
                name: content.parse()?,
                pin: None,
            }
        } else if content.peek(syn::token::Paren) {
            let inner;
            syn::parenthesized!(inner in content);
            let name: LitStr = inner.parse()?;
            inner.parse::<Token![,]>()?;
            let scope: syn::Expr = inner.parse()?;
            let _ = inner.parse::<Option<Token![,]>>()?;
            if !inner.is_empty() {
                return Err(inner.error("expected `(\"name\", Scope::Org)`"));
            }
            CredentialArg {
                name,
                pin: pin_of(&scope, errors),
            }
        } else {
            return Err(content.error(format!(
                "expected a credential name or a `(\"name\", Scope::Org)` pair, {EXAMPLE}"
            )));
        };
        let value = entry.name.value();
        let valid = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            errors.error(
                entry.name.span(),
                format!(
                    "`{value}` is not a credential name: use 1 to 64 ASCII letters, digits, \
                     `-`, `_` or `.`, e.g. \"github\""
                ),
            );
        } else if list.iter().any(|c| c.name.value() == value) {
            errors.error(
                entry.name.span(),
                format!("credential `{value}` is declared twice; declare it once"),
            );
        }
        list.push(entry);
        if !content.is_empty() {
            content.parse::<Token![,]>()?;
        }
    }
    Ok(list)
}

/// The scope kind of a pin (`Scope::Org`, `reprise::identity::Scope::User`), or an
/// error at it.
fn pin_of(scope: &syn::Expr, errors: &Errors) -> Option<syn::Ident> {
    let kinds = "pin a credential to `Scope::User`, `Scope::Project` or `Scope::Org`";
    match scope {
        syn::Expr::Path(path) => {
            let last = path.path.segments.last()?;
            if matches!(last.ident.to_string().as_str(), "User" | "Project" | "Org") {
                return Some(last.ident.clone());
            }
            errors.error_spanned_by(
                scope,
                format!("`{}` is not a scope kind: {kinds}", last.ident),
            );
        }
        syn::Expr::Call(_) => errors.error_spanned_by(
            scope,
            format!(
                "a pin names the scope kind only, the id comes from the run (its user or \
                 project): {kinds}, e.g. `(\"github\", Scope::User)`"
            ),
        ),
        _ => errors.error_spanned_by(scope, kinds),
    }
    None
}

fn parse_crate(input: ParseStream) -> syn::Result<Path> {
    let lit: LitStr = input.parse()?;
    lit.parse::<Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`crate` must be the path reprise is reachable at, e.g. `crate = \"::my_sdk::reprise\"`; {:?} is not a path",
                lit.value()
            ),
        )
    })
}

#[cfg(test)]
mod on_event_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(tokens: &str) -> (WorkflowArgs, Result<(), syn::Error>) {
        let errors = Errors::new();
        let args = parse_workflow_args(tokens.parse().unwrap(), &errors);
        (args, errors.finish())
    }

    #[test]
    fn on_event_takes_an_event_name() {
        let (args, result) = parse(r#"slug = "x", on_event = "order.paid""#);
        assert!(result.is_ok());
        assert_eq!(
            args.on_event.map(|l| l.value()).as_deref(),
            Some("order.paid")
        );
        for bad in [r#"on_event = """#, r#"on_event = "order paid""#] {
            let message = parse(bad).1.unwrap_err().to_string();
            assert!(message.contains("event name"), "{bad}: {message}");
        }
        let message = parse(r#"event = "order.paid""#).1.unwrap_err().to_string();
        assert!(message.contains("on_event"), "{message}");
    }

    #[test]
    fn subscribable_takes_the_config_type() {
        let (args, result) = parse(r#"slug = "x", subscribable = my::DigestSettings"#);
        assert!(result.is_ok());
        let ty = args.subscribable.unwrap();
        assert_eq!(quote::quote!(#ty).to_string(), "my :: DigestSettings");
        for (bad, needle) in [
            ("subscribable", "subscribable = DigestSettings"),
            (r#"subscribable = "DigestSettings""#, "not a string"),
            ("subscription = Settings", "subscribable = ConfigType"),
        ] {
            let message = parse(bad).1.unwrap_err().to_string();
            assert!(message.contains(needle), "{bad}: {message}");
        }
    }
}
