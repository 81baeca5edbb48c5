//! The OpenAPI 3.1 document. Each handler carries its own `#[utoipa::path]` and is mounted by
//! utoipa-axum's `routes!`, so the router that serves a route is the one that documents it: a
//! route cannot be served undocumented. What every operation shares (who may call, the
//! problem answers of authentication, rate limits and outages) is added here once.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

pub use surge_contract::problem::Problem;

/// Media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Surge",
        description = "Jobs as serverless-style functions on Kubernetes: submit work over REST or as CloudEvents, \
            get the answer synchronously, by polling, or pushed over /ws.\n\n\
            Authenticate with an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`; mint one at \
            `GET /token?tenant=`), or with a tenant's own JWT where the tenant allows it. Every error is \
            `application/problem+json` (RFC 9457) with a stable `type` URN.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    tags(
        (name = "jobs", description = "Run a function on a JSON input and read the job"),
        (name = "events", description = "CloudEvents producers (HTTP binding: binary, structured, batched)"),
        (name = "settings", description = "Server settings: every caller reads, admins write"),
        (name = "identity", description = "Logging in through a tenant's OpenID provider, and the caller's API keys"),
        (name = "push", description = "Completions pushed over a WebSocket"),
        (name = "admin", description = "Operations (admins): functions and their figures, the tenant's recent jobs, dead jobs and their replay; the console at `/console` is built on these"),
        (name = "health", description = "Probes"),
    ),
    components(schemas(Problem))
)]
pub struct ApiDoc;

/// Security schemes, and the answers every authenticated operation can give; applied once the
/// routers have added their paths.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A Surge API key or login token, or a tenant's JWT where the tenant accepts them",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A Surge API key (what `GET /token` shows once)",
            ))),
        );
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_shared_answers(operation);
            }
        }
    }
}

/// Operations that declare `security(())` are public; the others inherit the document's
/// security and can answer 401 and 429. Everything but liveness can answer 503.
fn add_shared_answers(operation: &mut Operation) {
    let public = operation.security.is_some();
    let live = operation.operation_id.as_deref() == Some("healthz");
    let mut shared = Vec::new();
    if !public {
        shared.push((
            "401",
            "No credential, or one that is not valid (unknown, revoked, expired)",
        ));
        shared.push((
            "429",
            "The caller's entity is over its rate limit: wait `Retry-After` seconds (`RateLimit-*` headers give the policy)",
        ));
    }
    if !live {
        shared.push((
            "503",
            "The broker or the database cannot be reached right now: retry after `Retry-After`",
        ));
    }
    for (status, description) in shared {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem_response(description)));
    }
}

/// A response whose body is a problem document.
pub fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// The routes and the finished document they make up.
pub fn routes_and_document() -> (
    axum::Router<crate::state::AppState>,
    utoipa::openapi::OpenApi,
) {
    let (routes, mut document) = crate::startup::api_routes().split_for_parts();
    Shared.modify(&mut document);
    (routes, document)
}

/// The whole document, as `/openapi.json` serves it and `docs/openapi.json` holds it.
pub fn document() -> utoipa::openapi::OpenApi {
    routes_and_document().1
}

/// The document as committed: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == document_json(),
            "docs/openapi.json differs from what the code documents: run `just openapi` and commit the result"
        );
    }

    #[test]
    fn every_operation_is_named_summarised_and_answers_in_problems() {
        let document = document();
        let mut operations = 0;
        for (path, item) in &document.paths.paths {
            for op in [&item.get, &item.put, &item.post, &item.delete]
                .into_iter()
                .flatten()
            {
                operations += 1;
                let name = format!("{path} {:?}", op.operation_id);
                assert!(op.operation_id.is_some(), "{name}: operation_id");
                assert!(op.summary.is_some(), "{name}: summary");
                let responses = &op.responses.responses;
                assert!(
                    responses
                        .keys()
                        .any(|s| s.starts_with('2') || s == "101" || s == "303"),
                    "{name}: a success answer"
                );
                if op.security.is_none() {
                    assert!(responses.contains_key("401"), "{name}: 401");
                    assert!(responses.contains_key("429"), "{name}: 429");
                }
                for (status, response) in responses {
                    let (Some(code), RefOr::T(response)) = (status.parse::<u16>().ok(), response)
                    else {
                        continue;
                    };
                    if code >= 400 {
                        assert!(
                            response.content.contains_key(PROBLEM_JSON),
                            "{name}: {status} must be {PROBLEM_JSON}"
                        );
                    }
                }
            }
        }
        assert_eq!(operations, 31, "every route is documented");
    }
}
