//! The HTTP client openidconnect uses to talk to providers: our reqwest, with a timeout and
//! without following redirects (a provider's endpoints are taken as discovered, never as a
//! redirect points elsewhere).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProviderHttpError {
    #[error(transparent)]
    Request(#[from] reqwest::Error),
    #[error(transparent)]
    Http(#[from] http::Error),
}

pub type ProviderHttpFuture =
    Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, ProviderHttpError>> + Send>>;

/// A reqwest client for providers: every call times out.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Adapts `client` to openidconnect's `AsyncHttpClient`.
pub fn adapter(
    client: reqwest::Client,
) -> impl Fn(openidconnect::HttpRequest) -> ProviderHttpFuture + Send + Sync {
    move |request| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut builder = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            Ok(builder.body(response.bytes().await?.to_vec())?)
        })
    }
}
