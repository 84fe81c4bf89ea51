//! [`MockHttp`]: a local HTTP server (wiremock) standing in for an integration, so actions
//! that call an API are tested over a real socket on 127.0.0.1.

use serde_json::Value;
pub use wiremock;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A mock HTTP server on 127.0.0.1 (a [`wiremock::MockServer`]). Point the action's base
/// URL resource at [`MockHttp::uri`], declare responses, run the workflow, then inspect
/// what the server received.
///
/// ```ignore
/// let api = MockHttp::start().await;
/// api.respond_json("POST", "/messages", 201, json!({ "id": "m-1" })).await;
/// let env = TestEnv::builder().configure({
///     let uri = api.uri();
///     move |b| b.resource(TeamChannel::new(uri))
/// }).build();
/// env.execute(&signup_pipeline, ada()).await.completed();
/// assert_eq!(api.received("POST", "/messages").await.len(), 1);
/// ```
pub struct MockHttp {
    server: MockServer,
}

impl MockHttp {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start() -> MockHttp {
        MockHttp {
            server: MockServer::start().await,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:38121`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The underlying wiremock server, for any matcher or response wiremock offers.
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// Answers every `method` request to `path` with `status` and the JSON `body`.
    pub async fn respond_json(&self, method_name: &str, path_name: &str, status: u16, body: Value) {
        Mock::given(method(method_name))
            .and(path(path_name))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.server)
            .await;
    }

    /// Answers the first `times` `method` requests to `path` with `status` (and an empty
    /// body), before any other mock for it: for transient-failure tests (e.g. 503 twice).
    pub async fn fail_first(&self, method_name: &str, path_name: &str, status: u16, times: u64) {
        Mock::given(method(method_name))
            .and(path(path_name))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(times)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// The requests received for `method` and `path`, in arrival order.
    pub async fn received(&self, method_name: &str, path_name: &str) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                r.method.as_str().eq_ignore_ascii_case(method_name) && r.url.path() == path_name
            })
            .collect()
    }

    /// The JSON bodies of [`MockHttp::received`] (`Value::Null` for a body that is not JSON).
    pub async fn received_json(&self, method_name: &str, path_name: &str) -> Vec<Value> {
        self.received(method_name, path_name)
            .await
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }
}
