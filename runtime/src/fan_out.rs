//! [`fan_out`]: run many steps in parallel with a bound on how many have started.

use futures::StreamExt;

/// Maps each item to a future with `f` and runs them with at most `limit` in flight,
/// returning the results in item order.
///
/// Futures are *created* lazily, one when a slot frees, in item order — so step
/// occurrence numbers (taken at creation) follow the items, and replays number
/// identically. `limit = 0` is treated as 1.
///
/// ```ignore
/// let digests = reprise::fan_out(files, 4, |file| hash_file.run(file)).await;
/// ```
pub async fn fan_out<I, F, Fut>(items: I, limit: usize, f: F) -> Vec<Fut::Output>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future,
{
    futures::stream::iter(items)
        .map(f)
        .buffered(limit.max(1))
        .collect()
        .await
}
