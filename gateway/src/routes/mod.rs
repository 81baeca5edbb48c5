//! HTTP routes, one module per resource; the router is assembled in `startup`.

/// A job as an HTTP answer (200, 202 + `Location`).
mod answer;
/// `/console`: the operations console's pages.
pub mod console;
/// `/admin/dead/{function}`: dead jobs (out of attempts), their reasons, and their replay.
pub mod dead_jobs;
/// `POST /events`: CloudEvents from producers.
pub mod events;
/// `/healthz`, `/readyz`.
pub mod health;
/// `POST /jobs/{function}`, `GET /jobs/{id}`, `GET /jobs`.
pub mod jobs;
/// `GET /login`, `GET /callback`, `GET /me`: logging in through a tenant's provider.
pub mod login;
/// `GET /admin/functions`, `GET /admin/jobs`: what the console shows first.
pub mod overview;
/// Keyset pages: limits and cursors.
mod paging;
/// `GET /personas`, `GET·PUT /personas/{source}`: the caller's per-source profiles.
pub mod personas;
/// The `Prefer` header.
mod prefer;
/// Request parts several routes read alike: the body limit, `Idempotency-Key`.
mod request;
/// `GET /settings`, `POST·PUT·DELETE /settings[/{name}]`: server settings.
pub mod settings;
/// `GET·POST·PUT /token`, `GET /tokens`, `DELETE /token/{id}`: the caller's API keys.
pub mod tokens;
