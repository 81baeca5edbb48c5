//! A typed client for the gateway's HTTP API. Every call names the status it expects (another
//! one fails the test, with the body printed) and decodes the answer into the gateway's own
//! document types (`JobView`, `SettingView`, `DeadPage`, `Problem`, …), so a test reads like
//! the API it checks and breaks when the documents change.
//!
//! It does not hide the raw exchange: `TestApp::request` stays for what is not a JSON
//! exchange with the gateway (websocket upgrades, pages and assets, the identity browser
//! flows), and [`read_json`] / [`read_problem`] decode a response obtained that way.

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use surge_contract::problem::Problem;
use surge_gateway::views::JobView;

use crate::{TEST_API_KEY, TestApp};

/// How a call authenticates.
#[derive(Debug, Clone)]
enum Credential {
    /// In `X-API-Key`.
    ApiKey(String),
    /// In `Authorization: Bearer` (API keys, login tokens, ID tokens).
    Bearer(String),
    Anonymous,
}

/// Calls to one gateway as one caller, with the headers every call of it carries.
#[derive(Debug, Clone)]
pub struct ApiClient<'a> {
    client: &'a reqwest::Client,
    /// `http://host:port`, no trailing slash.
    base: String,
    credential: Credential,
    headers: Vec<(String, String)>,
}

/// A request about to be sent: a body may be added, then it is sent with the status it must
/// get ([`Exchange::expect`], [`Exchange::expect_problem`]) or raw ([`Exchange::send`]).
#[derive(Debug)]
pub struct Exchange {
    request: RequestBuilder,
    /// `METHOD path`, for failure messages.
    what: String,
}

/// An answer with its headers, for tests that check `Location`, `ETag`, `Retry-After`, ….
#[derive(Debug)]
pub struct Reply<T> {
    pub headers: HeaderMap,
    pub body: T,
    /// The body as it came, for checks the decoded type cannot make (what is *not* in it).
    pub text: String,
}

impl<T> Reply<T> {
    /// A header's value; a missing or non-text header fails the test.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header among {:?}", self.headers))
            .to_str()
            .unwrap_or_else(|_| panic!("the {name} header is not text"))
    }
}

impl<'a> ApiClient<'a> {
    fn new(app: &'a TestApp, credential: Credential) -> Self {
        Self {
            client: &app.client,
            base: app.url(""),
            credential,
            headers: Vec::new(),
        }
    }

    /// Every call of this client carries `name: value` too (`Prefer`, `Idempotency-Key`,
    /// `If-Match`, `traceparent`, …).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Calls another gateway of the same Surge (a replica, a gateway process) at `base_url`
    /// (`http://host:port`).
    pub fn on(mut self, base_url: &str) -> Self {
        base_url.trim_end_matches('/').clone_into(&mut self.base);
        self
    }

    /// A request to `path`, to add a body to and send.
    pub fn exchange(&self, method: Method, path: &str) -> Exchange {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        request = match &self.credential {
            Credential::ApiKey(key) => request.header("x-api-key", key),
            Credential::Bearer(token) => request.bearer_auth(token),
            Credential::Anonymous => request,
        };
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        Exchange {
            request,
            what: format!("{method} {path}"),
        }
    }

    /// `GET path`, answered with `status` and an `Out`.
    pub async fn get<Out: DeserializeOwned>(&self, path: &str, status: StatusCode) -> Out {
        self.exchange(Method::GET, path).expect(status).await.body
    }

    /// `POST path` with `body` as JSON, answered with `status` and an `Out`.
    pub async fn post<In, Out>(&self, path: &str, body: &In, status: StatusCode) -> Out
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned,
    {
        let exchange = self.exchange(Method::POST, path).json(body);
        exchange.expect(status).await.body
    }

    /// `PUT path` with `body` as JSON, answered with `status` and an `Out`.
    pub async fn put<In, Out>(&self, path: &str, body: &In, status: StatusCode) -> Out
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned,
    {
        let exchange = self.exchange(Method::PUT, path).json(body);
        exchange.expect(status).await.body
    }

    /// `DELETE path`, answered with `status` and an `Out` (`()` for an empty body).
    pub async fn delete<Out: DeserializeOwned>(&self, path: &str, status: StatusCode) -> Out {
        self.exchange(Method::DELETE, path)
            .expect(status)
            .await
            .body
    }

    /// `GET path`, refused with `status` and a problem document.
    pub async fn get_problem(&self, path: &str, status: StatusCode) -> Problem {
        let exchange = self.exchange(Method::GET, path);
        exchange.expect_problem(status).await.body
    }

    /// `POST path` with `body` as JSON, refused with `status` and a problem document.
    pub async fn post_problem<In>(&self, path: &str, body: &In, status: StatusCode) -> Problem
    where
        In: Serialize + ?Sized,
    {
        let exchange = self.exchange(Method::POST, path).json(body);
        exchange.expect_problem(status).await.body
    }

    /// `PUT path` with `body` as JSON, refused with `status` and a problem document.
    pub async fn put_problem<In>(&self, path: &str, body: &In, status: StatusCode) -> Problem
    where
        In: Serialize + ?Sized,
    {
        let exchange = self.exchange(Method::PUT, path).json(body);
        exchange.expect_problem(status).await.body
    }

    /// `DELETE path`, refused with `status` and a problem document.
    pub async fn delete_problem(&self, path: &str, status: StatusCode) -> Problem {
        let exchange = self.exchange(Method::DELETE, path);
        exchange.expect_problem(status).await.body
    }

    /// `POST /jobs/{function}` answered synchronously (200): the finished job, whatever its
    /// state.
    pub async fn call(&self, function: &str, input: &Value) -> JobView {
        self.post(&format!("/jobs/{function}"), input, StatusCode::OK)
            .await
    }

    /// The status of `method path`, whatever it is: for waiting until it changes.
    pub async fn status_of(&self, method: Method, path: &str) -> StatusCode {
        self.exchange(method, path).send().await.status()
    }
}

impl Exchange {
    /// `body` as JSON.
    pub fn json<In: Serialize + ?Sized>(mut self, body: &In) -> Self {
        self.request = self.request.json(body);
        self
    }

    /// A body that is not JSON the client wrote (malformed JSON, a CloudEvents batch).
    pub fn body(mut self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        self.request = self.request.header(CONTENT_TYPE, content_type).body(body);
        self
    }

    /// One more header on this request only.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    /// Sends it and hands back the raw response, whatever its status.
    pub async fn send(self) -> Response {
        self.request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.what))
    }

    /// Sends it: answered with `status`, an `Out` and its headers.
    pub async fn expect<Out: DeserializeOwned>(self, status: StatusCode) -> Reply<Out> {
        let what = self.what.clone();
        read(self.send().await, status, &what).await
    }

    /// Sends it: refused with `status` and a problem document (see [`read_problem`]).
    pub async fn expect_problem(self, status: StatusCode) -> Reply<Problem> {
        let what = self.what.clone();
        let response = self.send().await;
        assert_problem_type(&response, &what);
        let reply: Reply<Problem> = read(response, status, &what).await;
        assert_problem_body(&reply, status, &what);
        reply
    }
}

/// A response that must have `status`, decoded as an `Out` (an empty body as `()`).
pub async fn read_json<Out: DeserializeOwned>(response: Response, status: StatusCode) -> Out {
    let what = response.url().path().to_owned();
    read(response, status, &what).await.body
}

/// A response that must be a problem: `status`, `application/problem+json`, its `status`
/// member the same, and a `detail` that says something.
pub async fn read_problem(response: Response, status: StatusCode) -> Problem {
    let what = response.url().path().to_owned();
    assert_problem_type(&response, &what);
    let reply: Reply<Problem> = read(response, status, &what).await;
    assert_problem_body(&reply, status, &what);
    reply.body
}

async fn read<Out: DeserializeOwned>(
    response: Response,
    status: StatusCode,
    what: &str,
) -> Reply<Out> {
    let got = response.status();
    let headers = response.headers().clone();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
    assert_eq!(got, status, "{what}: unexpected status; body: {text}");
    // An empty answer (204) decodes as `()`, as JSON's `null` does.
    let json = if text.is_empty() {
        "null"
    } else {
        text.as_str()
    };
    let body = serde_json::from_str(json).unwrap_or_else(|e| {
        panic!(
            "{what}: the body is not a {}: {e}; body: {text}",
            std::any::type_name::<Out>()
        )
    });
    Reply {
        headers,
        body,
        text,
    }
}

/// The problem a failed or dead job ended with (its `error`); a job without one fails the test.
pub fn job_problem(job: &JobView) -> Problem {
    let error = job
        .error
        .clone()
        .unwrap_or_else(|| panic!("job {} has no error: {job:?}", job.id));
    serde_json::from_value(error)
        .unwrap_or_else(|e| panic!("job {}'s error is not a problem: {e}", job.id))
}

fn assert_problem_type(response: &Response, what: &str) {
    assert_eq!(
        response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{what}: a problem's content type"
    );
}

fn assert_problem_body(reply: &Reply<Problem>, status: StatusCode, what: &str) {
    let problem = &reply.body;
    assert_eq!(
        problem.status,
        Some(status.as_u16()),
        "{what}: the problem's status member; body: {}",
        reply.text
    );
    assert!(
        problem.detail.as_deref().is_some_and(|d| !d.is_empty()),
        "{what}: a problem says what went wrong in `detail`; body: {}",
        reply.text
    );
}

/// The typed client on a test's gateway: as the development key (`TEST_API_KEY`) unless
/// another caller is named.
impl TestApp {
    /// Calls with the test's development key.
    pub fn api(&self) -> ApiClient<'_> {
        ApiClient::new(self, Credential::ApiKey(TEST_API_KEY.to_owned()))
    }

    /// Calls with `key` in `X-API-Key`.
    pub fn as_key(&self, key: &str) -> ApiClient<'_> {
        ApiClient::new(self, Credential::ApiKey(key.to_owned()))
    }

    /// Calls with `token` in `Authorization: Bearer` (a login token, an ID token).
    pub fn as_bearer(&self, token: &str) -> ApiClient<'_> {
        ApiClient::new(self, Credential::Bearer(token.to_owned()))
    }

    /// Calls without any credential.
    pub fn anonymous(&self) -> ApiClient<'_> {
        ApiClient::new(self, Credential::Anonymous)
    }

    /// Calls with the development key and `name: value`.
    pub fn header(&self, name: &str, value: impl Into<String>) -> ApiClient<'_> {
        self.api().header(name, value)
    }

    /// See [`ApiClient::exchange`].
    pub fn exchange(&self, method: Method, path: &str) -> Exchange {
        self.api().exchange(method, path)
    }

    /// See [`ApiClient::get`].
    pub async fn get<Out: DeserializeOwned>(&self, path: &str, status: StatusCode) -> Out {
        self.api().get(path, status).await
    }

    /// See [`ApiClient::post`].
    pub async fn post<In, Out>(&self, path: &str, body: &In, status: StatusCode) -> Out
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned,
    {
        self.api().post(path, body, status).await
    }

    /// See [`ApiClient::put`].
    pub async fn put<In, Out>(&self, path: &str, body: &In, status: StatusCode) -> Out
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned,
    {
        self.api().put(path, body, status).await
    }

    /// See [`ApiClient::delete`].
    pub async fn delete<Out: DeserializeOwned>(&self, path: &str, status: StatusCode) -> Out {
        self.api().delete(path, status).await
    }

    /// See [`ApiClient::get_problem`].
    pub async fn get_problem(&self, path: &str, status: StatusCode) -> Problem {
        self.api().get_problem(path, status).await
    }

    /// See [`ApiClient::post_problem`].
    pub async fn post_problem<In>(&self, path: &str, body: &In, status: StatusCode) -> Problem
    where
        In: Serialize + ?Sized,
    {
        self.api().post_problem(path, body, status).await
    }
}
