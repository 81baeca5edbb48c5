//! Real OpenID providers for the tests (npm `oidc-provider`, `tests/idp/idp.mjs`) and a
//! scripted browser that logs in through them over HTTP, as a person's browser would.

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use url::Url;

/// The providers' folder (`npm ci` there is done by `scripts/setup.sh`).
pub fn idp_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("idp")
}

/// One running provider: one tenant.
pub struct IdentityProvider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub log: std::path::PathBuf,
    name: String,
    redirect: String,
    child: Child,
}

impl IdentityProvider {
    /// Replaces `login`'s claims at the provider (its groups, its email), as an administrator
    /// would: the next token the provider issues carries them.
    pub async fn set_user(&self, login: &str, claims: &serde_json::Value) {
        let response = reqwest::Client::new()
            .put(format!("{}/test-users/{login}", self.issuer))
            .json(claims)
            .send()
            .await
            .expect("the provider answers");
        assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    }

    /// Starts a provider under the issuer path `/<name>` on a free port, with one client
    /// whose only redirect target is `redirect`.
    pub async fn start(name: &str, redirect: &str) -> Self {
        let client_secret: String = uuid::Uuid::new_v4().simple().to_string();
        Self::spawn(name, redirect, 0, client_secret).await
    }

    /// Stops the provider and starts a new process on the same port and issuer: same client,
    /// new signing key (a key rotation, as the gateway sees it).
    pub async fn restart(&mut self) {
        let port = Url::parse(&self.issuer)
            .ok()
            .and_then(|u| u.port())
            .expect("issuer port");
        self.child.kill().await.expect("stop the provider");
        let next = Self::spawn(&self.name, &self.redirect, port, self.client_secret.clone()).await;
        assert_eq!(next.issuer, self.issuer, "same issuer after a restart");
        *self = next;
    }

    async fn spawn(name: &str, redirect: &str, port: u16, client_secret: String) -> Self {
        let dir = idp_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "tests/idp/node_modules is missing: run `bash scripts/setup.sh` (npm ci --prefix tests/idp)"
        );
        let client_id = format!("gw-{name}");
        let log = crate::log_dir().join(format!("idp-{name}-{}.log", crate::unique_name()));
        let mut child = Command::new("node")
            .arg(dir.join("idp.mjs"))
            .env("IDP_PORT", port.to_string())
            .env("IDP_PATH", format!("/{name}"))
            .env("IDP_CLIENT_ID", &client_id)
            .env("IDP_CLIENT_SECRET", &client_secret)
            .env("IDP_REDIRECT_URIS", redirect)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("idp log"))
            .kill_on_drop(true)
            .spawn()
            .expect("run node (Node 20 is on this machine)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("idp stdout") {
                if let Some(issuer) = line.strip_prefix("IDP_READY ") {
                    return issuer.to_owned();
                }
            }
            panic!(
                "the provider exited before it was ready; see {}",
                log.display()
            )
        })
        .await
        .expect("the provider starts within 20 s");
        // Keep draining stdout so the provider never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer,
            client_id,
            client_secret,
            log,
            name: name.to_owned(),
            redirect: redirect.to_owned(),
            child,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A browser: one cookie jar, redirects followed by hand so each hop can be seen.
pub struct Browser {
    pub client: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a login ended.
#[derive(Debug)]
pub enum Landing {
    /// The provider redirected to the gateway's callback: this URL (not yet opened).
    Callback(Url),
    /// Something that is not a redirect.
    Page(Response),
}

impl Browser {
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// Opens `start` (the gateway's `/login` or `/token`) and goes through the provider as
    /// `user` (login form, then consent), stopping at the redirect to `/callback`.
    pub async fn to_callback(&self, start: &str, user: &str) -> Landing {
        let mut url = Url::parse(start).expect("start url");
        for _ in 0..20 {
            let response = self.client.get(url.clone()).send().await.expect("GET");
            let response =
                if response.status() == StatusCode::OK && url.path().contains("/interaction/") {
                    let page = response.text().await.expect("interaction page");
                    let form: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
                        vec![("prompt", "login"), ("login", user), ("password", "any")]
                    } else {
                        vec![("prompt", "consent")]
                    };
                    self.client
                        .post(url.clone())
                        .form(&form)
                        .send()
                        .await
                        .expect("POST interaction")
                } else {
                    response
                };
            if !response.status().is_redirection() {
                return Landing::Page(response);
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .expect("a redirect has a Location");
            url = url.join(location).expect("Location is a URL");
            if url.path().ends_with("/callback") {
                return Landing::Callback(url);
            }
        }
        panic!("the login did not reach the callback in 20 hops");
    }

    /// The provider's redirect to the callback (not yet opened); anything else fails the test.
    pub async fn callback_url(&self, start: &str, user: &str) -> Url {
        match self.to_callback(start, user).await {
            Landing::Callback(url) => url,
            Landing::Page(page) => {
                panic!("expected a redirect to the callback, got {}", page.status())
            }
        }
    }

    /// The whole login: through the provider and the gateway's callback; the callback's
    /// answer.
    pub async fn login(&self, start: &str, user: &str) -> Response {
        match self.to_callback(start, user).await {
            Landing::Callback(url) => self.client.get(url).send().await.expect("GET /callback"),
            Landing::Page(page) => page,
        }
    }
}
