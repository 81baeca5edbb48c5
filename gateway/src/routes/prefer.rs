//! The caller's `Prefer` header (RFC 7240): `respond-async`, `wait=<seconds>`.

use std::time::Duration;

use axum::http::HeaderMap;

use crate::jobs::Wait;

/// What the caller prefers. Unknown preferences are ignored, as the RFC asks.
#[derive(Debug, Default, PartialEq)]
pub struct Preferences {
    pub respond_async: bool,
    pub wait: Option<Duration>,
}

impl Preferences {
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut prefs = Self::default();
        let tokens = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        for token in tokens {
            let (name, value) = token.split_once('=').map_or((token, None), |(n, v)| {
                (n.trim(), Some(v.trim().trim_matches('"')))
            });
            match (name.to_ascii_lowercase().as_str(), value) {
                ("respond-async", _) => prefs.respond_async = true,
                ("wait", Some(secs)) => prefs.wait = secs.parse().ok().map(Duration::from_secs),
                _ => {}
            }
        }
        prefs
    }

    /// How long a job submitted with these preferences is waited for.
    pub fn job_wait(&self) -> Wait {
        match (self.respond_async, self.wait) {
            (true, _) => Wait::No,
            (false, Some(wait)) => Wait::UpTo(wait),
            (false, None) => Wait::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn prefer_is_parsed_as_rfc_7240() {
        let p = Preferences::parse(&headers(&[("prefer", "respond-async, wait=10")]));
        assert_eq!(
            p,
            Preferences {
                respond_async: true,
                wait: Some(Duration::from_secs(10))
            }
        );
        assert_eq!(p.job_wait(), Wait::No);
        let p = Preferences::parse(&headers(&[
            ("prefer", "handling=lenient"),
            ("prefer", "wait=3"),
        ]));
        assert_eq!(p.job_wait(), Wait::UpTo(Duration::from_secs(3)));
        assert_eq!(
            Preferences::parse(&headers(&[("prefer", "wait=soon")])),
            Preferences::default()
        );
        assert_eq!(Preferences::default().job_wait(), Wait::Default);
    }
}
