//! `ctx.tag(key, value)`: a searchable attribute of the run, recorded through the
//! recorder as a `run_tagged` event (the tag adapter; see [`crate::tags`]).

use super::Ctx;
use super::recorder::{Call, Entry, Shape};
use crate::ActionError;
use crate::error::kinds;
use crate::event::EventPayload;
use crate::tags::{TagValue, check_tag};

/// The callee a tag is recorded under (checked on replay).
pub(crate) const TAG_CALLEE: &str = "ctx.tag";

impl Ctx {
    /// Tags the run with `key` = `value`, so that `runs list --tag key=value` (and
    /// `GET /runs?tag=key=value`, [`crate::event::RunFilter::tags`]) finds it. A value is a
    /// string, a number, a boolean or a `DateTime<Utc>` (see [`TagValue`]); numbers and
    /// times can also be searched by range. Tagging a key again replaces its value.
    ///
    /// The tag is written to the log at once (a `run_tagged` event, indexed by the store
    /// in the same transaction), so the run is searchable by it from then on, also while it
    /// runs. A replay answers it from the log and writes nothing. Inside a sub-workflow the
    /// tag attaches to the top-level run being executed (the run that `runs list` shows).
    ///
    /// ```ignore
    /// ctx.tag("customer", order.customer.as_str()).await?;
    /// ctx.tag("amount", order.amount_cents).await?;
    /// ```
    ///
    /// # Errors
    /// A non-retryable error of kind `permanent` when the key is empty, longer than
    /// [`crate::tags::MAX_TAG_KEY_LEN`] bytes or holds characters other than ASCII letters,
    /// digits, `_`, `-`, `.` and `:`, when a string value is longer than
    /// [`crate::tags::MAX_TAG_STRING_LEN`] bytes, or when a number is not finite; a `store`
    /// error when the event cannot be written (the run then stops, as for any step).
    pub async fn tag(&self, key: &str, value: impl Into<TagValue>) -> Result<(), ActionError> {
        let value = value.into();
        check_tag(key, &value).map_err(|message| {
            ActionError::new(kinds::PERMANENT, format!("ctx.tag: {message}"), false)
        })?;
        let id = self.next_id(&format!("$tag:{key}"));
        let call = Call {
            id: &id,
            callee: TAG_CALLEE,
            shape: Shape::Value,
            input: None,
            output: None,
        };
        match self.run.enter(&call).await? {
            Entry::Replayed(outcome) => outcome.map(drop),
            Entry::Live(slot) => {
                slot.finish_event(EventPayload::RunTagged {
                    key: key.to_owned(),
                    value,
                })
                .await
            }
        }
    }
}
