//! The page shell every UI page shares: head, navigation, and small formatting helpers.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Runs,
    Workflows,
    Queues,
    None,
}

/// A whole page titled `title` with `body` as its main content.
pub(crate) fn page(title: &str, nav: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · reprise" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(super::assets::CSS_URL);
                script src=(super::assets::JS_URL) defer {}
            }
            body {
                header.topbar {
                    a.brand href="/ui" { span.logo { "↻" } "reprise" }
                    nav {
                        a href="/ui" class=[(nav == Nav::Runs).then_some("current")] { "Runs" }
                        a href="/ui/workflows" class=[(nav == Nav::Workflows).then_some("current")] { "Workflows" }
                        a href="/ui/queues" class=[(nav == Nav::Queues).then_some("current")] { "Queues" }
                    }
                    span.spacer {}
                    a.muted href="/openapi.json" { "API" }
                }
                main { (body) }
            }
        }
    }
}

/// A status badge: `<span class="badge s-<status>">status</span>`.
pub(crate) fn badge(status: &str) -> Markup {
    html! { span class={ "badge s-" (status) } data-status=(status) { (status) } }
}

/// A time as `HH:MM:SS` on today's date, else `YYYY-MM-DD HH:MM`, in UTC, with the full
/// RFC 3339 time as its tooltip.
pub(crate) fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let text = if at.date_naive() == now.date_naive() {
        at.format("%H:%M:%S").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M").to_string()
    };
    html! { time datetime=(at.to_rfc3339()) title=(at.to_rfc3339()) { (text) } }
}

/// A duration in milliseconds, short: `850 ms`, `3.2 s`, `4 m 05 s`, `2 h 10 m`, `3 d 4 h`.
pub(crate) fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} m {:02} s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{} h {:02} m", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Pretty-printed JSON in a `<pre>`.
pub(crate) fn json_block(value: &Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    html! { pre.json { (text) } }
}

/// Trusted markup (an SVG the graph module drew) inserted as is.
pub(crate) fn trusted(svg: String) -> Markup {
    PreEscaped(svg)
}

/// A doc comment's text with its Markdown code spans (`` `x` ``, `` [`X`] `` links)
/// shown as code; everything else as plain text.
pub(crate) fn doc_text(text: &str) -> Markup {
    let text = text.replace("[`", "`").replace("`]", "`");
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_text_shows_code_spans_as_code_and_escapes_the_rest() {
        assert_eq!(
            doc_text("Sleeps for `delay` in [`Thing`] <b>").into_string(),
            "Sleeps for <code>delay</code> in <code>Thing</code> &lt;b&gt;"
        );
    }
}
