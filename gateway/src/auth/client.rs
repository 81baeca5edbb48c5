//! Who is on the other end before anyone is authenticated: the client's address, taken from
//! `X-Forwarded-For` only when the peer is one of `http.trusted_proxies` (anyone else could
//! write any address there), and the per-address limit on work that costs the gateway
//! something before a credential is known.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::error::ApiError;
use crate::state::AppState;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Addresses or networks (`10.0.0.0/8`, `192.0.2.7`); an error names the bad entry.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "http.trusted_proxies: {entry:?} is not an address or a network \
                             (10.0.0.0/8)"
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the last
    /// address in `X-Forwarded-For` that is not a trusted proxy (each proxy appends the
    /// address it saw, so everything left of the first untrusted one could be made up).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer)
    }
}

/// The client's address, as [`TrustedProxies::client`] finds it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(Self(state.auth.proxies.client(peer, &parts.headers)))
    }
}

impl ClientAddr {
    /// Counts one unit of unauthenticated work (a login start, a callback) of this client.
    pub fn spend(self, state: &AppState) -> Result<(), ApiError> {
        state.auth.clients.check(self.0).map_err(|limited| {
            state.metrics.rate_limited();
            ApiError::RateLimited(limited)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            proxies.client(stranger, &headers("198.51.100.1")),
            stranger,
            "an untrusted peer's header is ignored"
        );
        let ingress: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            proxies.client(ingress, &headers("6.6.6.6, 198.51.100.1, 192.0.2.7")),
            "198.51.100.1".parse::<IpAddr>().unwrap(),
            "the last address no trusted proxy added; what the client wrote is skipped"
        );
        assert_eq!(proxies.client(ingress, &HeaderMap::new()), ingress);
    }

    #[test]
    fn a_bad_entry_is_named() {
        let e = TrustedProxies::parse(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
    }
}
