//! Procedural macros of [reprise](https://docs.rs/reprise): `#[action]` and `#[workflow]`.
//!
//! Use them through the `reprise` crate (`use reprise::prelude::*;`), which re-exports
//! them and holds everything the generated code calls (`reprise::__private`).
//!
//! The crate is split the way the macro works: `args` parses the attribute
//! options, `parse` checks the fn signature, `analyse` finds and rewrites the step calls
//! of a workflow body (and rejects non-deterministic calls), `expand` generates the code.
//! Errors are collected across all stages and reported together, next to the user's item
//! so that the rest of the crate (and rust-analyzer) keeps working.
//!
//! Set `REPRISE_MACROS_DEBUG=1` while building to print every expansion to stderr.

mod analyse;
mod args;
mod errors;
mod expand;
mod messages;
mod parse;
mod shape;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Turns an `async fn` into an *action*: a durable unit of work that a workflow calls as a
/// recorded step.
///
/// ```ignore
/// use reprise::prelude::*;
///
/// /// Looks the new user up and writes a short brief.
/// #[action(retries = 3, backoff = "1s", timeout = "30s", non_retryable = ["not_found"])]
/// async fn research_signup(input: Signup, cx: ActionCtx) -> Result<Brief, ActionError> {
///     let client = cx.resource::<HttpClient>()?;
///     // ...
/// #   todo!()
/// }
/// ```
///
/// The fn becomes a unit struct of the same name that implements `reprise::Step`:
/// `research_signup.run(input)` inside a `#[workflow]` body is a recorded step; outside a
/// workflow it is a plain async call (handy in unit tests).
///
/// # Signature
/// `[pub] async fn name(input: In [, cx: ActionCtx]) -> Result<Out, E>` where `In` and
/// `Out` derive `Serialize`, `Deserialize` and `JsonSchema`, and `E` converts into
/// `ActionError` (usually it is `ActionError`). No generics, no `self`.
///
/// # Options
/// - `slug = "…"`: the action's name in logs, ids and the registry (default: the fn
///   name in kebab-case, `research-signup`).
/// - `retries = N`: retries after the first attempt (default 0).
/// - `backoff = "1s"`: delay before the first retry, doubled on each retry (default 1s).
/// - `timeout = "30s"`: per-attempt time limit (default none).
/// - `non_retryable = ["kind", …]`: error kinds that are never retried.
/// - `credentials = ["github", ("billing", Scope::Org)]`: the credentials the action reads
///   with `cx.credential("github")`, resolved per run user → project → org, or only in the
///   pinned scope kind (`Scope::User`, `Scope::Project`, `Scope::Org`; the id comes from
///   the run). A `.credential("x")` call with a literal name the list lacks is a compile
///   error; a name computed at run time that it lacks fails the step
///   (`undeclared_credential`).
/// - `register = false`: leave the action out of the link-time registry that
///   `Engine::builder().discover()` reads; register it by hand with `.register(name)`.
/// - `crate = "path"`: where `reprise` is, for crates that re-export it.
///
/// The doc comment's first paragraph is the action's description (used for agent tools).
#[proc_macro_attribute]
pub fn action(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::action(args.into(), item.into()).into()
}

/// Turns an `async fn` into a durable *workflow*: its body is ordinary Rust, and every step
/// call in it is recorded, so a resumed run replays finished steps from the log.
///
/// ```ignore
/// use reprise::prelude::*;
///
/// #[workflow(slug = "signup-pipeline", max_attempts = 5)]
/// async fn signup_pipeline(ctx: Ctx, input: Signup) -> Result<Brief, WorkflowError> {
///     let brief = research_signup.run(input).await?;
///     #[step(id = "post")]
///     post_brief.run(brief.clone()).await?;
///     ctx.sleep(Duration::from_secs(3600)).await?;
///     let approval: Approval = ctx.hook().await?;
///     Ok(brief)
/// }
/// ```
///
/// # Signature
/// `[pub] async fn name([ctx: Ctx,] input: In) -> Result<Out, E>` where `E` converts into
/// `WorkflowError`. The `Ctx` parameter is optional.
///
/// # What the body rewriting does
/// - Every `x.run(input)` becomes a recorded step (`x` must be an action or workflow; an
///   ordinary method named `run` must be called as a path, `Type::run(&x, ..)`).
/// - `ctx.sleep(d)`, `ctx.sleep_until(t)` and `ctx.hook()` become durable waits.
/// - `reprise::select! { pat = awaitable => body, .. }` becomes a durable select whose
///   winner is recorded (site key `select`, `select@2`, …); `<awaitable>.timeout(d)` on a
///   step call, `agent.prompt(..)`, `prompt_llm(..)`, an inline step `ctx.run(..)`, a
///   `.recv()`, a child run (`.start(..)`) or an event wait becomes a durable select against
///   a recorded timer (site key `timeout`), failing with an error of kind `timeout`.
/// - `ctx.run("name", || async { .. })` (two arguments, on the `Ctx` parameter) is left
///   alone: it is the inline step method of `Ctx`.
/// - Calls inside closures, async blocks and the arguments of `join!`, `try_join!`,
///   `vec!`, `format!`, `println!`, `assert!`-style macros are rewritten too; a step call
///   inside any other macro is a compile error (move it out of the macro).
/// - `#[step(id = "…")]` on a statement pins the id of its one step call.
/// - Sources of non-determinism are compile errors that name their recorded replacement
///   (see below).
///
/// # What the body may not do
/// A resumed run executes the body again from the top, so the body must take the same
/// path every time. Inside a `#[workflow]` body these are **compile errors**, each with
/// its fix in the message:
/// - clocks: `SystemTime::now`, `Instant::now` (std and tokio), `Utc::now`, `Local::now`,
///   `Local::today`, `OffsetDateTime::now_utc`/`now_local`, `jiff::Timestamp::now`,
///   `Zoned::now`, `UNIX_EPOCH.elapsed()` → `ctx.now()`;
/// - randomness and ids: `rand::*` (except seeded RNGs such as
///   `StdRng::seed_from_u64(ctx.random())`, the traits and `distr`/`seq`), `thread_rng`,
///   `OsRng`, `from_entropy`/`from_os_rng`, `fastrand::*`, `getrandom::*`,
///   `Uuid::new_v4`/`new_v7`/`now_v7`/`now_v1`/`now_v6`, `Ulid::new` → `ctx.random()`,
///   `ctx.uuid()`;
/// - tasks, threads and blocking: `tokio::spawn`, `tokio::task::*spawn*`,
///   `std::thread::spawn`/`scope`, `rayon::spawn`, `smol::spawn`, `block_on`,
///   `block_in_place` → `join!`, `try_join!`, `join_all`, `reprise::fan_out`;
/// - timers: `tokio::time::sleep`/`sleep_until`/`interval`, `std::thread::sleep` →
///   `ctx.sleep()`;
/// - races, which do not record the winner: any `select!`/`select_biased!` but
///   `reprise::select!` (also when the step futures are made before it),
///   `futures::future::select`/`select_all`/`select_ok`, `tokio::time::timeout`/`timeout_at`,
///   `.race(..)`, and `.timeout_at(..)` right on a step call. Use `reprise::select!`, which
///   records the winner, and `.timeout(d)` right on a step call, a signal's `recv()`, a
///   child run or an event wait (both rewritten into durable forms);
/// - I/O: `std::fs::*`, `tokio::fs::*`, `File::open`/`create`, `OpenOptions::new`,
///   `TcpStream::connect`, `reqwest::get`, `std::process::Command::new`, `io::stdin` → do
///   it in an `#[action]`.
///
/// Reading the process environment (`std::env::var`, `var_os`, `vars`, `args`,
/// `current_dir`, `dotenvy::var`, `std::process::id`) or the machine's time zone
/// (`TimeZone::system`, `UtcOffset::current_local_offset`) is only a **warning** (a
/// `deprecated` warning, the one warning a macro can raise on stable): configuration is
/// legitimately read, but the value is not recorded. Pass it in through the workflow input
/// or read it in an action; `#[allow(deprecated)]` on the statement silences it.
///
/// The check works on paths, not types. `use` items *inside the body* are resolved
/// (`use std::time::SystemTime as Wall;` makes `Wall::now()` an error, and a `use` of a
/// rejected item is an error itself), but an attribute macro cannot see the imports at the
/// top of the file: after a file-level `use tokio::time::timeout;` a bare `timeout(..)` is
/// not caught (`time::timeout(..)` and the full path are). To make the check crate-wide,
/// copy reprise's `docs/clippy.toml` (`disallowed-methods`, `disallowed-types` and
/// `disallowed-macros` for the same sources) into the crate that holds your workflows.
/// `HashMap` iteration order also differs between runs and is not checked: iterate a
/// `BTreeMap` or sort the keys before calling steps in a loop.
///
/// # Options
/// - `slug = "…"`: the workflow's name (default: the fn name in kebab-case).
/// - `max_attempts = N`: how many times the whole body may run before the run fails
///   (default 3).
/// - `register = false`: leave the workflow out of the link-time registry (for example two
///   versions of one slug in one test binary); register it by hand with `.register(name)`.
/// - `crate = "path"`: where `reprise` is, for crates that re-export it.
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::workflow(args.into(), item.into()).into()
}
