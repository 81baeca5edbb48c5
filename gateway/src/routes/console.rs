//! `/console`: the operations console, a page for admins served whole by the gateway (no
//! CDN, no build step): functions with their queues, replicas, latency and dead jobs, the
//! tenant's recent jobs, and replay buttons, kept current by the `/ws` tenant-wide feed.
//!
//! Login: `GET /console/login?tenant=` runs the tenant's OpenID login like `/login`; the
//! callback then answers a small page (`handoff`) that puts the login token in the tab's
//! `sessionStorage` and goes on to `/console` — the token never travels in a URL. An API key
//! can be pasted instead. The pages carry a strict Content-Security-Policy: scripts and
//! styles from the gateway only, nothing inline, connections to the gateway only.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::identity::Purpose;
use crate::routes::login::{Issued, LoginQuery, start};
use crate::state::AppState;

const INDEX: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const APP_CSS: &str = include_str!("../../console/app.css");
const HANDOFF_JS: &str = include_str!("../../console/handoff.js");
const ICON: &str = include_str!("../../console/icon.svg");
/// Where the index page lists the tenants to log in with.
const TENANTS_SLOT: &str = "<!--tenants-->";

/// Scripts and styles from this origin only, nothing inline or evaluated; fetches and the
/// websocket to this origin only; never framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// The console's routes: pages, not API operations, so not in the OpenAPI document.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/login", get(login))
        .route("/console/app.js", get(|| asset(APP_JS, "text/javascript")))
        .route("/console/app.css", get(|| asset(APP_CSS, "text/css")))
        .route(
            "/console/handoff.js",
            get(|| asset(HANDOFF_JS, "text/javascript")),
        )
        .route("/console/icon.svg", get(|| asset(ICON, "image/svg+xml")))
}

async fn index(State(state): State<AppState>) -> Response {
    let tenants: String = state
        .tenants
        .names()
        .iter()
        .map(|name| {
            let name = escape(name);
            format!(
                "<li><a class=\"button\" href=\"/console/login?tenant={name}\">Log in with {name}</a></li>"
            )
        })
        .collect();
    page(INDEX.replace(TENANTS_SLOT, &tenants))
}

async fn login(
    State(state): State<AppState>,
    client: crate::auth::client::ClientAddr,
    params: Result<Query<LoginQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    start(&state, client, params.tenant.as_deref(), Purpose::Console).await
}

/// The callback's answer to a console login: the token, in the page for `handoff.js` to
/// store; never cached.
pub fn handoff(issued: &Issued) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Surge console: signing in</title>\
         <link rel=\"icon\" href=\"/console/icon.svg\" type=\"image/svg+xml\">\
         <meta name=\"surge-token\" content=\"{token}\">\
         <meta name=\"surge-account\" content=\"{account}\">\
         <meta name=\"surge-expires-in\" content=\"{expires}\">\
         <script src=\"/console/handoff.js\"></script></head>\
         <body><main><p>Signing in to the Surge console as {account}…</p>\
         <noscript>The console needs JavaScript.</noscript></main></body></html>",
        token = escape(&issued.access_token),
        account = escape(&issued.account),
        expires = issued.expires_in,
    );
    page(html)
}

fn page(html: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    secure(&mut response);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    secure(&mut response);
    // Compiled into the binary: a new release is a new process; revalidate cheaply.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// HTML text and attribute escaping.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handoff_page_carries_the_token_escaped_uncached_and_under_the_policy() {
        let issued = Issued {
            token_type: "Bearer".into(),
            access_token: "surge_abc\"><script>".into(),
            id: uuid::Uuid::nil(),
            kind: "login".into(),
            expires_in: 3600,
            refresh_token: None,
            id_token: None,
            tenant: "a".into(),
            entity_id: uuid::Uuid::nil(),
            account: "<b>alice</b>@example.test".into(),
            admin: true,
            label: Some("console".into()),
            persona: None,
        };
        let response = handoff(&issued);
        let headers = response.headers();
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], POLICY);
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        let html = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
            response.into_body(),
            usize::MAX,
        ))
        .expect("a ready body")
        .expect("bytes");
        let html = String::from_utf8(html.to_vec()).unwrap();
        assert!(
            html.contains(r#"content="surge_abc&quot;&gt;&lt;script&gt;""#),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;alice&lt;/b&gt;"), "{html}");
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains(r#"<script src="/console/handoff.js"></script>"#));
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_page_has_its_tenant_slot_and_loads_only_local_assets() {
        assert!(INDEX.contains(TENANTS_SLOT));
        for needle in ["src=\"http", "href=\"http", "//cdn", "style=\"", "onclick"] {
            assert!(!INDEX.contains(needle), "{needle} in index.html");
        }
    }
}
