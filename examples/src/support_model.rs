//! [`ScriptedSupportModel`]: a built-in, scripted stand-in for a chat model, so that
//! `support-triage` runs offline — in the README, in tests, on a plane.
//!
//! **It is not AI.** It answers the requests `support-triage` makes with keyword rules and
//! fixed sentences, computed from the request alone (the same request always gets the
//! same reply). Anything else gets a sentence saying so. Point the example app at a real
//! model with `OPENAI_BASE_URL` / `OPENAI_API_KEY` to see what a model makes of a ticket.
//!
//! What it does with a request:
//!
//! - with a JSON-schema response format (the triage step): the [`Triage`](crate::support::Triage) of the
//!   customer's words, by keywords — "refund", "money back" → `refund`; "charged",
//!   "invoice", "payment" → `billing`; "late", "where is", "tracking", "arrive" →
//!   `shipping`; else `other` — as JSON;
//! - an agent turn: it reads the conversation so far, tool results included, and takes
//!   the next step — no order id in the ticket (`A-1001`: a capital letter, `-`, digits):
//!   ask for it; no `lookup-order` result yet: call `lookup-order`; the lookup failed:
//!   say so; the customer wants a refund and no `refund` result yet: call `refund` for the
//!   order's total; otherwise: a final answer summing up what the tools said (refunded,
//!   needs approval, failed, or the order's shipping status). Since it follows the
//!   conversation rather than a fixed sequence, a turn asked again after a crash, or a
//!   conversation in another order, gets a fitting reply. A tool it is not offered (the
//!   last turn, after `max_turns`) is not called.
//!
//! - a summary request of `llm-batch` (the prompt starts "Summarise this document"): the
//!   document's first sentence and its length in words, `Report 7 for cust-7. (23 words)`.
//!
//! Token usage is an estimate (a token per 4 characters), so `runs get` has numbers to show.

use std::future::Future;
use std::pin::Pin;

use reprise::llm::{
    ChatMessage, LlmError, LlmProvider, LlmRequest, LlmResponse, Role, ToolCall, Usage,
};
use serde_json::{Value, json};

use crate::support::{CUSTOMER_WRITES, Category, Order, RefundResult, RefundStatus, dollars};

/// The model name the scripted model answers with.
pub const SCRIPTED_MODEL: &str = "scripted-support-model";

/// A deterministic stand-in for a chat model that knows only the `support-triage` and
/// `llm-batch` examples — **not AI**; see the [module docs](self) for its rules.
///
/// ```
/// use std::sync::Arc;
/// use reprise_examples::support_model::ScriptedSupportModel;
///
/// let builder = reprise::Engine::builder().llm(Arc::new(ScriptedSupportModel));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ScriptedSupportModel;

impl ScriptedSupportModel {
    /// The reply to `request`, computed from it alone.
    pub fn respond(&self, request: &LlmRequest) -> LlmResponse {
        let message = if request.response_schema.is_some() {
            triage(request)
        } else if first_user(request).is_some_and(|text| text.contains(CUSTOMER_WRITES)) {
            agent_turn(request)
        } else if let Some(document) =
            first_user(request).and_then(|text| text.strip_prefix(crate::llm_batch::SUMMARISE))
        {
            summarise(document)
        } else {
            ChatMessage::assistant(
                "(scripted model) I only know the support-triage and llm-batch examples; set \
                 OPENAI_BASE_URL and OPENAI_API_KEY to talk to a real model.",
            )
        };
        let finish_reason = if message.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        LlmResponse {
            usage: estimate_usage(request, &message),
            message,
            model: SCRIPTED_MODEL.to_owned(),
            finish_reason: Some(finish_reason.to_owned()),
        }
    }
}

// `LlmProvider` is declared with `#[async_trait]`; this is what that attribute expands to,
// written out so the examples need no extra dependency. A provider of your own would put
// `#[async_trait::async_trait]` on the impl and write `async fn complete`.
impl LlmProvider for ScriptedSupportModel {
    fn complete<'life0, 'async_trait>(
        &'life0 self,
        request: LlmRequest,
    ) -> Pin<Box<dyn Future<Output = Result<LlmResponse, LlmError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(std::future::ready(Ok(self.respond(&request))))
    }
}

/// The `llm-batch` summary: the document's first sentence and its length in words.
fn summarise(document: &str) -> ChatMessage {
    let document = document.trim();
    let first = document
        .split_inclusive(['.', '!', '?'])
        .next()
        .unwrap_or(document)
        .trim();
    let words = document.split_whitespace().count();
    ChatMessage::assistant(format!("{first} ({words} words)"))
}

/// The first user message: the ticket (later user messages re-ask for valid JSON).
fn first_user(request: &LlmRequest) -> Option<&str> {
    request
        .messages
        .iter()
        .find(|m| m.role == Some(Role::User))
        .and_then(|m| m.content.as_deref())
}

/// The customer's own words in the ticket prompt.
fn customer_words(request: &LlmRequest) -> String {
    let prompt = first_user(request).unwrap_or_default();
    let words = match prompt.split_once(CUSTOMER_WRITES) {
        Some((_, words)) => words,
        None => prompt,
    };
    words.to_lowercase()
}

const REFUND_WORDS: &[&str] = &["refund", "money back", "reimburse"];
const BILLING_WORDS: &[&str] = &["charged", "charge", "invoice", "payment", "bill"];
const SHIPPING_WORDS: &[&str] = &[
    "late", "where is", "tracking", "arrive", "delivery", "shipping", "shipped",
];

fn hits(text: &str, words: &[&str]) -> usize {
    words.iter().filter(|word| text.contains(*word)).count()
}

/// The triage, as JSON text.
fn triage(request: &LlmRequest) -> ChatMessage {
    let text = customer_words(request);
    let (category, hits) = [
        (Category::Refund, hits(&text, REFUND_WORDS)),
        (Category::Billing, hits(&text, BILLING_WORDS)),
        (Category::Shipping, hits(&text, SHIPPING_WORDS)),
    ]
    .into_iter()
    .find(|(_, hits)| *hits > 0)
    .unwrap_or((Category::Other, 0));
    let confidence = match hits {
        0 => 0.4,
        1 => 0.8,
        _ => 0.9,
    };
    ChatMessage::assistant(
        json!({ "category": category.as_str(), "confidence": confidence }).to_string(),
    )
}

/// The first order id in `text`: a capital letter at the start of a word, `-`, digits.
fn find_order_id(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len()).find_map(|start| {
        let at_word_start = start == 0 || !chars[start - 1].is_alphanumeric();
        if !at_word_start
            || !chars[start].is_ascii_uppercase()
            || chars.get(start + 1) != Some(&'-')
        {
            return None;
        }
        let digits: String = chars[start + 2..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let end = start + 2 + digits.len();
        let at_word_end = chars.get(end).is_none_or(|c| !c.is_alphanumeric());
        (!digits.is_empty() && at_word_end).then(|| format!("{}-{digits}", chars[start]))
    })
}

/// One tool call of the conversation and its result, in order.
struct Answered {
    name: String,
    result: Value,
}

/// The tool calls made so far, with the results the tool messages carried.
fn answered_calls(request: &LlmRequest) -> Vec<Answered> {
    let calls: Vec<&ToolCall> = request
        .messages
        .iter()
        .filter(|m| m.role == Some(Role::Assistant))
        .flat_map(|m| &m.tool_calls)
        .collect();
    request
        .messages
        .iter()
        .filter(|m| m.role == Some(Role::Tool))
        .filter_map(|m| {
            let id = m.tool_call_id.as_deref()?;
            let call = calls.iter().find(|c| c.id == id)?;
            let content = m.content.as_deref().unwrap_or_default();
            let result = serde_json::from_str(content).unwrap_or(Value::String(content.into()));
            Some(Answered {
                name: call.name.clone(),
                result,
            })
        })
        .collect()
}

/// The last result of tool `name`.
fn last_result<'a>(answered: &'a [Answered], name: &str) -> Option<&'a Value> {
    answered
        .iter()
        .rev()
        .find(|a| a.name == name)
        .map(|a| &a.result)
}

/// The error a tool result reports, if it is one.
fn error_of(result: &Value) -> Option<String> {
    match result.get("error") {
        Some(Value::String(message)) => Some(message.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    }
}

/// A reply calling `name` with `arguments`, with an id no earlier call of the conversation has.
fn call(request: &LlmRequest, name: &str, arguments: Value) -> ChatMessage {
    let made = request
        .messages
        .iter()
        .map(|m| m.tool_calls.len())
        .sum::<usize>();
    ChatMessage {
        role: Some(Role::Assistant),
        content: None,
        tool_calls: vec![ToolCall {
            id: format!("call_{}", made + 1),
            name: name.to_owned(),
            arguments,
        }],
        tool_call_id: None,
    }
}

/// The next step of the support conversation.
fn agent_turn(request: &LlmRequest) -> ChatMessage {
    let offered = |name: &str| request.tools.iter().any(|t| t.name == name);
    let words = customer_words(request);
    // Order ids are written in capitals: look in the original words.
    let original = first_user(request)
        .and_then(|p| p.split_once(CUSTOMER_WRITES).map(|(_, w)| w))
        .unwrap_or_default();
    let Some(order_id) = find_order_id(original) else {
        return ChatMessage::assistant(
            "Thanks for reaching out! Could you tell me your order number? It looks like \
             A-1001 and is in your order confirmation.",
        );
    };
    let answered = answered_calls(request);
    let Some(lookup) = last_result(&answered, "lookup-order") else {
        if offered("lookup-order") {
            return call(request, "lookup-order", json!({ "order_id": order_id }));
        }
        return ChatMessage::assistant(format!(
            "Thanks! I'm looking into order {order_id} and will get back to you shortly."
        ));
    };
    if let Some(error) = error_of(lookup) {
        return ChatMessage::assistant(format!(
            "I couldn't find order {order_id} ({error}). Could you check the order number?"
        ));
    }
    let Ok(order) = serde_json::from_value::<Order>(lookup.clone()) else {
        return ChatMessage::assistant(format!(
            "I couldn't read the details of order {order_id}; a colleague will follow up."
        ));
    };
    if hits(&words, REFUND_WORDS) == 0 {
        return ChatMessage::assistant(status_answer(&order));
    }
    let Some(refund) = last_result(&answered, "refund") else {
        if offered("refund") {
            return call(
                request,
                "refund",
                json!({
                    "order_id": order.order_id,
                    "cents": order.total_cents,
                    "reason": "the customer asked for their money back",
                }),
            );
        }
        return ChatMessage::assistant(format!(
            "I've passed your refund request for order {} on to a colleague.",
            order.order_id
        ));
    };
    if let Some(error) = error_of(refund) {
        return ChatMessage::assistant(format!(
            "I'm sorry, I couldn't refund order {} ({error}). A colleague will look into it.",
            order.order_id
        ));
    }
    let text = match serde_json::from_value::<RefundResult>(refund.clone()) {
        Ok(result) if result.status == RefundStatus::Refunded => format!(
            "I'm sorry about order {}. I've refunded {} ({}); it reaches your card in 3-5 \
             business days.",
            result.order_id,
            dollars(result.cents),
            result.refund_id.as_deref().unwrap_or("refund issued")
        ),
        Ok(result) => format!(
            "I'm sorry about order {}. A refund of {} needs a colleague's approval, so I've \
             passed it on; you'll hear from us soon.",
            result.order_id,
            dollars(result.cents)
        ),
        Err(_) => format!(
            "I've asked for a refund of order {}; a colleague will confirm it.",
            order.order_id
        ),
    };
    ChatMessage::assistant(text)
}

/// Where an order is.
fn status_answer(order: &Order) -> String {
    let items = order.items.join(", ");
    match (order.status.as_str(), &order.carrier, &order.eta) {
        ("shipped", Some(carrier), Some(eta)) => format!(
            "Your order {} ({items}) is on its way with {carrier}, expected on {eta}.",
            order.order_id
        ),
        ("delivered", ..) => format!(
            "Our records show order {} ({items}) as delivered. If it hasn't reached you, \
             reply and we'll open an investigation with the carrier.",
            order.order_id
        ),
        (status, ..) => format!(
            "Your order {} ({items}) is {status}; we'll email you as soon as it ships.",
            order.order_id
        ),
    }
}

/// A token per 4 characters of the request and of the reply.
fn estimate_usage(request: &LlmRequest, reply: &ChatMessage) -> Usage {
    let chars = |message: &ChatMessage| {
        message.content.as_deref().map_or(0, str::len)
            + message
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.to_string().len())
                .sum::<usize>()
    };
    let tools: usize = request
        .tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len())
        .sum();
    let prompt = request.messages.iter().map(chars).sum::<usize>() + tools;
    let prompt_tokens = (prompt / 4 + 1) as u64;
    let completion_tokens = (chars(reply) / 4 + 1) as u64;
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        cached_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_found_at_word_boundaries() {
        assert_eq!(
            find_order_id("order A-1001, please").as_deref(),
            Some("A-1001")
        );
        assert_eq!(find_order_id("(B-7)").as_deref(), Some("B-7"));
        assert_eq!(find_order_id("TCK-12 and A-1"), Some("A-1".to_owned()));
        assert_eq!(find_order_id("A-12x"), None);
        assert_eq!(find_order_id("A- 12"), None);
        assert_eq!(find_order_id("é-1 Ü-2"), None);
        assert_eq!(find_order_id(""), None);
    }
}
