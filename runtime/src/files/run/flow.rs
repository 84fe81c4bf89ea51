//! Control-flow steps: `if`, `switch`, `for_each`, `while`, `map`, `filter`, `reduce`,
//! `parallel`, `try`, `select`, `set`, `fail`, `return`.
//!
//! Outputs:
//! - `if`, `switch`, `try`: the last output of the steps that ran (`null` for none).
//! - `for_each`: the list of each iteration's last step output, in item order.
//! - `while`: the last iteration's last step output (`null` when it never ran).
//! - `map`: the list of values; `filter`: the kept items; `reduce`: the final value.
//! - `parallel: all`: `{branch: its last output}`; `any`: `{winner: branch, output}`;
//!   `N`: `{branch: output}` of the first N branches to finish.
//! - `select`: `{winner: <step id>, output}`.
//! - `set`: the object of the values set.
//!
//! Scope: a step inside a loop iteration or a branch sees the scope as it was when the
//! iteration or branch started plus what it did itself. Sequential loops (`while`, and
//! `for_each` with `concurrency: 1`) carry the scope from one iteration to the next.
//! After iterations or branches that ran together, the `steps` and `vars` entries each
//! changed are merged back in item (branch) order, so the last one wins.
//!
//! Failures: iterations and `parallel: all` branches that run together all run to their
//! end; then the step fails with the error of the first failed one in item (branch)
//! order — a choice that does not depend on timing, so a replay fails the same way.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::policy::{detached, rejoin};
use super::scope::{Scope, error_value};
use super::{Flow, INVALID_INPUT, Interp, MAX_ITERATIONS, Outcome};
use crate::ActionError;
use crate::Ctx;
use crate::ctx::select::IdCapture;
use crate::files::format::{ParallelWait, WaitMode};
use crate::files::program::{Expr, Step, StepKind};

/// The callee a `parallel: N` step's recorded winners are kept under.
const PARALLEL_CALLEE: &str = "parallel";

impl Interp {
    /// Evaluates `expr` for step `step`.
    fn eval(&self, step: &str, expr: &Expr, scope: &Scope) -> Result<Value, Flow> {
        crate::files::expr::eval(expr, scope.value())
            .map_err(|e| self.expression_error(step, &expr.source, expr.at, &e))
    }

    /// Whether `expr` holds, for step `step`.
    fn holds(&self, step: &str, expr: &Expr, scope: &Scope) -> Result<bool, Flow> {
        crate::files::expr::is_true(expr, scope.value())
            .map_err(|e| self.expression_error(step, &expr.source, expr.at, &e))
    }

    /// The array `expr` evaluates to, for step `step` (kind `invalid_input` otherwise).
    fn items(&self, step: &Step, expr: &Expr, scope: &Scope) -> Result<Vec<Value>, Flow> {
        match self.eval(&step.id, expr, scope)? {
            Value::Array(items) => Ok(items),
            other => Err(Flow::Error(ActionError::new(
                INVALID_INPUT,
                format!(
                    "{}: step `{}`: `{}` is {}, not an array: a `{}` step needs an array",
                    self.path(),
                    step.id,
                    expr.source,
                    kind_of(&other),
                    step.kind.key()
                ),
                false,
            ))),
        }
    }

    /// Runs what step `step` does (no policies).
    pub(crate) fn exec<'a>(
        self: &'a Arc<Self>,
        ctx: &'a Ctx,
        step: &'a Step,
        scope: &'a mut Scope,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let id = step.id.as_str();
            match &step.kind {
                kind if super::policy::is_leaf(kind) => {
                    let future = self.leaf(ctx, step, scope)?;
                    Ok(future.await?)
                }
                StepKind::If {
                    condition,
                    then,
                    otherwise,
                } => {
                    let list = if self.holds(id, condition, scope)? {
                        then
                    } else {
                        otherwise
                    };
                    self.run_list(ctx, list, scope).await
                }
                StepKind::Switch {
                    value,
                    cases,
                    default,
                } => {
                    let value = super::leaf::text(&self.eval(id, value, scope)?);
                    let list = cases
                        .iter()
                        .find(|(case, _)| *case == value)
                        .map_or(default.as_slice(), |(_, steps)| steps.as_slice());
                    self.run_list(ctx, list, scope).await
                }
                StepKind::ForEach {
                    items,
                    item,
                    concurrency,
                    steps,
                } => {
                    let items = self.items(step, items, scope)?;
                    self.for_each(ctx, step, items, item, *concurrency, steps, scope)
                        .await
                }
                StepKind::While {
                    condition,
                    max_iterations,
                    steps,
                } => {
                    let mut last = Value::Null;
                    let mut done = 0u32;
                    while self.holds(id, condition, scope)? {
                        if done >= *max_iterations {
                            return Err(Flow::Error(ActionError::new(
                                MAX_ITERATIONS,
                                format!(
                                    "{}: step `{id}`: `while {}` still holds after \
                                     {max_iterations} iterations (its `max_iterations`): \
                                     raise `max_iterations` or make the condition end",
                                    self.path(),
                                    condition.source
                                ),
                                false,
                            )));
                        }
                        let inner = ctx.child(&ctx.next_id(id));
                        last = self.run_list(&inner, steps, scope).await?;
                        done += 1;
                    }
                    Ok(last)
                }
                StepKind::Map { items, item, value } => {
                    let items = self.items(step, items, scope)?;
                    let mut local = scope.clone();
                    let mut out = Vec::with_capacity(items.len());
                    for (index, element) in items.into_iter().enumerate() {
                        local.bind(item, element);
                        local.bind("index", json!(index));
                        out.push(self.render(id, value, &local)?);
                    }
                    Ok(Value::Array(out))
                }
                StepKind::Filter {
                    items,
                    item,
                    condition,
                } => {
                    let items = self.items(step, items, scope)?;
                    let mut local = scope.clone();
                    let mut out = Vec::new();
                    for (index, element) in items.into_iter().enumerate() {
                        local.bind(item, element.clone());
                        local.bind("index", json!(index));
                        if self.holds(id, condition, &local)? {
                            out.push(element);
                        }
                    }
                    Ok(Value::Array(out))
                }
                StepKind::Reduce {
                    items,
                    item,
                    initial,
                    accumulator,
                    value,
                } => {
                    let items = self.items(step, items, scope)?;
                    let mut acc = self.render(id, initial, scope)?;
                    let mut local = scope.clone();
                    for (index, element) in items.into_iter().enumerate() {
                        local.bind(item, element);
                        local.bind("index", json!(index));
                        local.bind(accumulator, acc);
                        acc = self.render(id, value, &local)?;
                    }
                    Ok(acc)
                }
                StepKind::Parallel { wait, branches } => {
                    self.parallel(ctx, step, *wait, branches, scope).await
                }
                StepKind::Try {
                    steps,
                    catch,
                    finally,
                } => {
                    let mut outcome = self.run_list(ctx, steps, scope).await;
                    if let Err(Flow::Error(error)) = &outcome
                        && !catch.is_empty()
                        && super::policy::handleable(error)
                    {
                        let previous = scope.bind("error", error_value(error));
                        outcome = self.run_list(ctx, catch, scope).await;
                        scope.restore("error", previous);
                    }
                    if !finally.is_empty() {
                        self.run_list(ctx, finally, scope).await?;
                    }
                    outcome
                }
                StepKind::Select(arms) => self.select(ctx, step, arms, scope).await,
                StepKind::Set(values) => {
                    let mut set = Map::new();
                    for (name, template) in values {
                        let value = self.render(id, template, scope)?;
                        scope.set_var(name, value.clone());
                        set.insert(name.clone(), value);
                    }
                    Ok(Value::Object(set))
                }
                StepKind::Fail { message, kind } => {
                    let message = super::leaf::text(&self.render(id, message, scope)?);
                    Err(Flow::Error(ActionError::new(kind.clone(), message, false)))
                }
                StepKind::Return(value) => Err(Flow::Return(self.render(id, value, scope)?)),
                // Leaf kinds are matched by the first arm.
                _ => Err(Flow::Error(ActionError::permanent(format!(
                    "{}: step `{id}`: a `{}` step cannot run here",
                    self.path(),
                    step.kind.key()
                )))),
            }
        })
    }

    /// `for_each`: each item in a namespace of its own (`<id>#<i>/`), `concurrency` at a
    /// time through [`crate::fan_out::fan_out`].
    #[allow(clippy::too_many_arguments)]
    async fn for_each(
        self: &Arc<Self>,
        ctx: &Ctx,
        step: &Step,
        items: Vec<Value>,
        item: &str,
        concurrency: usize,
        steps: &[Step],
        scope: &mut Scope,
    ) -> Outcome {
        if concurrency <= 1 {
            let saved_item = scope.bind(item, Value::Null);
            let saved_index = scope.bind("index", Value::Null);
            let mut out = Vec::with_capacity(items.len());
            let mut failed = None;
            for (index, element) in items.into_iter().enumerate() {
                let inner = ctx.child(&ctx.next_id(&step.id));
                scope.bind(item, element);
                scope.bind("index", json!(index));
                match self.run_list(&inner, steps, scope).await {
                    Ok(value) => out.push(value),
                    Err(flow) => {
                        failed = Some(flow);
                        break;
                    }
                }
            }
            scope.restore(item, saved_item);
            scope.restore("index", saved_index);
            return match failed {
                Some(flow) => Err(flow),
                None => Ok(Value::Array(out)),
            };
        }
        let base = scope.clone();
        let results = crate::fan_out::fan_out(
            items.into_iter().enumerate(),
            concurrency,
            |(index, element)| {
                // Created lazily, in item order: the namespace's number is the item's.
                let inner = ctx.child(&ctx.next_id(&step.id));
                let mut local = base.clone();
                local.bind(item, element);
                local.bind("index", json!(index));
                async move {
                    let outcome = self.run_list(&inner, steps, &mut local).await;
                    (outcome, local)
                }
            },
        )
        .await;
        let mut out = Vec::with_capacity(results.len());
        for (outcome, local) in results {
            scope.merge(&base, &local);
            out.push(outcome?);
        }
        Ok(Value::Array(out))
    }

    /// `parallel`: every branch at once; wait for all, the first, or the first N.
    async fn parallel(
        self: &Arc<Self>,
        ctx: &Ctx,
        step: &Step,
        wait: ParallelWait,
        branches: &[(String, Vec<Step>)],
        scope: &mut Scope,
    ) -> Outcome {
        match wait {
            ParallelWait::Mode(WaitMode::All) => {
                let base = scope.clone();
                let runs = branches.iter().map(|(_, steps)| {
                    let mut local = base.clone();
                    async move {
                        let outcome = self.run_list(ctx, steps, &mut local).await;
                        (outcome, local)
                    }
                });
                let results = futures::future::join_all(runs).await;
                let mut out = Map::new();
                let mut failed = None;
                for ((name, _), (outcome, local)) in branches.iter().zip(results) {
                    scope.merge(&base, &local);
                    match outcome {
                        Ok(value) => {
                            out.insert(name.clone(), value);
                        }
                        Err(flow) => {
                            failed.get_or_insert(flow);
                        }
                    }
                }
                match failed {
                    Some(flow) => Err(flow),
                    None => Ok(Value::Object(out)),
                }
            }
            ParallelWait::Mode(WaitMode::Any) => {
                let site = self.site(&step.id)?;
                let base = scope.clone();
                let mut futures = Vec::with_capacity(branches.len());
                let mut created = Vec::with_capacity(branches.len());
                let mut lefts = Vec::with_capacity(branches.len());
                for (_, steps) in branches {
                    let capture = IdCapture::start(ctx);
                    let steps = steps.clone();
                    let (future, left) =
                        detached(self, ctx, base.clone(), move |interp, ctx, scope| {
                            Box::pin(async move { interp.run_list(ctx, &steps, scope).await })
                        });
                    created.push(capture.finish());
                    futures.push(future);
                    lefts.push(left);
                }
                let raced = super::waits::race(ctx, site, futures, created).await;
                let (winner, outcome) = match raced {
                    Ok((winner, value)) => (winner, Ok(value)),
                    Err(error) => {
                        // The winner failed (or returned): find it by what it left.
                        let winner = lefts.iter().position(|left| {
                            left.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .scope
                                .is_some()
                        });
                        match winner {
                            Some(winner) => (winner, Err(error)),
                            None => return Err(Flow::Error(error)),
                        }
                    }
                };
                let mut local = base.clone();
                let value = rejoin(&lefts[winner], outcome, &mut local);
                scope.merge(&base, &local);
                let name = branches.get(winner).map(|(n, _)| n.clone());
                Ok(json!({"winner": name, "output": value?}))
            }
            ParallelWait::Count(n) => {
                let n = n as usize;
                if n >= branches.len() {
                    return Box::pin(self.parallel(
                        ctx,
                        step,
                        ParallelWait::Mode(WaitMode::All),
                        branches,
                        scope,
                    ))
                    .await;
                }
                if n == 0 {
                    return Ok(json!({}));
                }
                self.first_n(ctx, step, n, branches, scope).await
            }
        }
    }

    /// `parallel: N`: the first `n` branches to finish (a failed one fails the step). The
    /// winners' names are recorded at the step's site (`<id>#<n>`, callee `parallel`) in
    /// the order they finished, so a replay runs only the winners (their steps answer
    /// from the log) and never depends on timing. The losers are dropped when the n-th
    /// branch finishes.
    async fn first_n(
        self: &Arc<Self>,
        ctx: &Ctx,
        step: &Step,
        n: usize,
        branches: &[(String, Vec<Step>)],
        scope: &mut Scope,
    ) -> Outcome {
        let site = self.site(&step.id)?;
        let id = ctx.next_id(&site.key(PARALLEL_CALLEE));
        let base = scope.clone();
        let branch = |i: usize| {
            let mut local = base.clone();
            let steps = branches.get(i).map_or(&[][..], |(_, s)| s.as_slice());
            Box::pin(async move {
                let outcome = self.run_list(ctx, steps, &mut local).await;
                (outcome, local)
            }) as BoxFuture<'_, (Outcome, Scope)>
        };
        let finished: Vec<(usize, Outcome, Scope)> = if ctx.run.history.get(&id).is_some() {
            let names: Vec<String> = ctx.recorded_as(&id, PARALLEL_CALLEE, Vec::new);
            let mut winners = Vec::with_capacity(names.len());
            for name in &names {
                match branches.iter().position(|(b, _)| b == name) {
                    Some(i) => winners.push(i),
                    None => {
                        let report = crate::error::NonDeterminism::new(
                            &id,
                            format!("`parallel` winners {names:?}"),
                            format!(
                                "the branches {:?}",
                                branches.iter().map(|(b, _)| b).collect::<Vec<_>>()
                            ),
                        );
                        return Err(Flow::Error(ctx.run.report_non_determinism(report)));
                    }
                }
            }
            let results = futures::future::join_all(winners.iter().map(|&i| branch(i))).await;
            winners
                .into_iter()
                .zip(results)
                .map(|(i, (outcome, local))| (i, outcome, local))
                .collect()
        } else {
            let mut running: Vec<Option<BoxFuture<'_, (Outcome, Scope)>>> =
                (0..branches.len()).map(|i| Some(branch(i))).collect();
            let mut finished = Vec::with_capacity(n);
            std::future::poll_fn(|cx| {
                for (i, slot) in running.iter_mut().enumerate() {
                    let Some(future) = slot.as_mut() else {
                        continue;
                    };
                    if let std::task::Poll::Ready((outcome, local)) = future.as_mut().poll(cx) {
                        *slot = None;
                        let failed = outcome.is_err();
                        finished.push((i, outcome, local));
                        if failed || finished.len() >= n {
                            return std::task::Poll::Ready(());
                        }
                    }
                }
                std::task::Poll::Pending
            })
            .await;
            drop(running);
            let names: Vec<String> = finished
                .iter()
                .filter_map(|(i, _, _)| branches.get(*i).map(|(b, _)| b.clone()))
                .collect();
            let _: Vec<String> = ctx.recorded_as(&id, PARALLEL_CALLEE, || names);
            finished
        };
        let mut out = Map::new();
        for (i, outcome, local) in finished {
            scope.merge(&base, &local);
            let value = outcome?;
            if let Some((name, _)) = branches.get(i) {
                out.insert(name.clone(), value);
            }
        }
        Ok(Value::Object(out))
    }

    /// `select`: each arm's leaf future created (its ids taken) in order, raced durably at
    /// the step's site.
    async fn select(
        self: &Arc<Self>,
        ctx: &Ctx,
        step: &Step,
        arms: &[Step],
        scope: &mut Scope,
    ) -> Outcome {
        let site = self.site(&step.id)?;
        let mut futures = Vec::with_capacity(arms.len());
        let mut created = Vec::with_capacity(arms.len());
        for arm in arms {
            let capture = IdCapture::start(ctx);
            let future = self.leaf(ctx, arm, scope);
            created.push(capture.finish());
            futures.push(future?);
        }
        let (winner, output) = super::waits::race(ctx, site, futures, created).await?;
        for (i, arm) in arms.iter().enumerate() {
            if i == winner {
                if let Some(name) = &arm.output_variable {
                    scope.set_var(name, output.clone());
                }
                scope.set_step(&arm.id, output.clone(), "completed", None);
            } else {
                scope.set_step(&arm.id, Value::Null, "canceled", None);
            }
        }
        let name = arms.get(winner).map(|arm| arm.id.clone());
        Ok(json!({"winner": name, "output": output}))
    }
}

/// What kind of JSON value `value` is, for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
