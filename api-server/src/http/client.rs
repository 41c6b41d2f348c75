//! Who the client is: its address, for rate limits and logs.
//!
//! The TCP peer is the client unless it is a trusted proxy (`QUIRE_TRUSTED_PROXIES`, CIDR
//! blocks, none by default). Then the `Forwarded` header (RFC 7239; else `X-Forwarded-For`)
//! names the hops, each appended by the proxy that received it, and the client is the
//! right-most hop that is not itself a trusted proxy: everything left of it was written by
//! someone we do not trust and is ignored. A spoofed header from an untrusted peer is
//! ignored altogether.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::state::AppState;

/// The client's address (see the module docs). Unspecified when the app runs without
/// connect info (e.g. driven through `oneshot` in tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        Ok(Self(client_address(
            peer,
            &parts.headers,
            &state.config().trusted_proxies,
        )))
    }
}

/// The client's address given the TCP `peer`, the request's headers and the trusted
/// proxies (see the module docs).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&canonical(ip)));
    if !is_trusted(peer) {
        return peer;
    }
    let hops = forwarded_hops(headers);
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop else {
            // An obfuscated or unparsable hop: the last trusted proxy is all we know.
            return client;
        };
        client = *ip;
        if !is_trusted(*ip) {
            return client;
        }
    }
    client
}

/// The hops the headers name, left (the original client) to right; `None` for a hop that
/// is not an address (`unknown`, an obfuscated identifier, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(parse_node)
        .collect()
}

/// An address from a `Forwarded` node or an `X-Forwarded-For` entry: `192.0.2.1`,
/// `192.0.2.1:4711`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = value.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    value
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// IPv4-mapped IPv6 addresses as IPv4, so `10.0.0.0/8` also covers `::ffff:10.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_address(ip("198.51.100.7"), &spoofed, &trusted()),
            ip("198.51.100.7")
        );
        let forwarded = headers(&[("forwarded", "for=203.0.113.9")]);
        assert_eq!(
            client_address(ip("198.51.100.7"), &forwarded, &[]),
            ip("198.51.100.7"),
            "no proxy is trusted by default"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        // The client forged its first entry; our two proxies appended the rest.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &chain, &trusted()),
            ip("203.0.113.9")
        );
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9:5555"),
        ]);
        assert_eq!(
            client_address(ip("::ffff:10.0.0.2"), &split, &trusted()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_understands_ipv6_and_ports() {
        let both = headers(&[
            (
                "forwarded",
                "for=1.2.3.4;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(
            client_address(ip("fd00::1"), &both, &trusted()),
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn an_unknown_hop_stops_at_the_last_trusted_proxy() {
        let hidden = headers(&[("forwarded", "for=unknown, for=10.2.2.2")]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &hidden, &trusted()),
            ip("10.2.2.2")
        );
        let none = HeaderMap::new();
        assert_eq!(
            client_address(ip("10.0.0.2"), &none, &trusted()),
            ip("10.0.0.2")
        );
    }
}
