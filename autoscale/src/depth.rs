//! Queue depths from RabbitMQ's management API: ready and unacknowledged messages. Over AMQP
//! only ready messages are visible, and a function whose jobs are all checked out would look
//! idle; the management API counts both.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Ready (queued) and unacknowledged (in-flight) messages of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub ready: u64,
    pub unacked: u64,
    /// Consumers of the queue (for metrics; not part of the work).
    pub consumers: u64,
}

impl Depth {
    pub fn total(self) -> u64 {
        self.ready + self.unacked
    }
}

/// A client of the management API of one vhost.
#[derive(Debug, Clone)]
pub struct ManagementApi {
    client: reqwest::Client,
    base: url::Url,
    user: String,
    password: SecretString,
    vhost: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DepthError {
    #[error("scaler.management_url is not a valid URL: {0}")]
    BadUrl(String),
    #[error("the management API did not answer: {0}")]
    Request(#[from] reqwest::Error),
}

#[derive(Debug, Deserialize)]
struct QueueStats {
    // Absent until the broker has emitted statistics for the queue.
    #[serde(default)]
    messages_ready: u64,
    #[serde(default)]
    messages_unacknowledged: u64,
    #[serde(default)]
    consumers: u64,
}

impl ManagementApi {
    /// `management_url` in KEDA's format, `http://user:password@rabbitmq:15672[/path]/vhost`,
    /// so one Secret serves both; without a vhost segment, `default_vhost` (the AMQP URL's).
    pub fn new(management_url: &SecretString, default_vhost: &str) -> Result<Self, DepthError> {
        let mut base = url::Url::parse(management_url.expose_secret())
            .map_err(|e| DepthError::BadUrl(e.to_string()))?;
        let user = base.username().to_owned();
        let password = SecretString::from(base.password().unwrap_or_default().to_owned());
        base.set_username("")
            .and_then(|()| base.set_password(None))
            .map_err(|()| DepthError::BadUrl("it cannot carry credentials".into()))?;
        let mut segments: Vec<String> = base
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let vhost = match segments.pop() {
            Some(last) => percent_decode(&last),
            None => default_vhost.to_owned(),
        };
        base.set_path(&segments.join("/"));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            base,
            user,
            password,
            vhost,
        })
    }

    /// The vhost named by an AMQP URL's path (`amqp://h/%2f` → `/`; none → `/`).
    pub fn vhost_of(amqp_url: &SecretString) -> String {
        url::Url::parse(amqp_url.expose_secret())
            .ok()
            .map(|u| u.path().trim_start_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .map(|p| percent_decode(&p))
            .unwrap_or_else(|| "/".into())
    }

    /// The depth of `queue`.
    pub async fn depth(&self, queue: &str) -> Result<Depth, DepthError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| DepthError::BadUrl("it cannot be a base URL".into()))?
            .pop_if_empty()
            .extend(["api", "queues", &self.vhost, queue]);
        url.set_query(Some(
            "columns=messages_ready,messages_unacknowledged,consumers",
        ));
        let response = self
            .client
            .get(url)
            .basic_auth(&self.user, Some(self.password.expose_secret()))
            .send()
            .await?;
        // Not declared yet (no process of this installation has started): no work.
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Depth::default());
        }
        let stats: QueueStats = response.error_for_status()?.json().await?;
        Ok(Depth {
            ready: stats.messages_ready,
            unacked: stats.messages_unacknowledged,
            consumers: stats.consumers,
        })
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| text.to_owned(), |(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vhost_comes_from_the_amqp_url() {
        let v = |u: &str| ManagementApi::vhost_of(&SecretString::from(u.to_owned()));
        assert_eq!(v("amqp://guest:guest@127.0.0.1:5672/%2f"), "/");
        assert_eq!(v("amqp://h:5672"), "/");
        assert_eq!(v("amqp://h:5672/prod"), "prod");
    }

    #[test]
    fn credentials_leave_the_url() {
        let api =
            ManagementApi::new(&SecretString::from("http://u:p@h:15672".to_owned()), "/").unwrap();
        assert_eq!(api.user, "u");
        assert_eq!(api.password.expose_secret(), "p");
        assert!(!api.base.as_str().contains('@'));
        assert_eq!(api.vhost, "/");
    }

    #[test]
    fn a_keda_style_url_names_the_vhost_last() {
        let url = |u: &str| SecretString::from(u.to_owned());
        let api = ManagementApi::new(&url("http://u:p@h:15672/%2F"), "x").unwrap();
        assert_eq!(api.vhost, "/");
        assert_eq!(api.base.path(), "/");
        let api = ManagementApi::new(&url("http://u:p@h/rmq/prod"), "x").unwrap();
        assert_eq!(api.vhost, "prod");
        assert_eq!(api.base.path(), "/rmq");
    }
}
