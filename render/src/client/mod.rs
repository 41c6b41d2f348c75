//! The HTTP client data sources are fetched with, and the rules that keep a fetch from
//! being turned against the network it runs in.
//!
//! A data source's URL is the operator's, but what answers there is not: an upstream can
//! redirect, and a DNS name can be pointed anywhere. Unchecked, a fetch could be made to
//! carry a source's API key to another host, or to read the worker's own network (loopback
//! services, the cluster, the cloud metadata service with its credentials) into a report
//! the user downloads. So:
//!
//! - redirects are followed only within the source's origin ([`redirect`]);
//! - unless the source sets `allow_private = true`, every address its host resolves to must
//!   be public ([`crate::net`]), checked in the resolver of the client that connects.

mod redirect;

use std::error::Error as StdError;

use url::Host;

use crate::error::RenderError;
use crate::sources::DataSource;

use crate::net::{self, AddressPolicy, CheckedResolver, RefusedAddress};
pub use redirect::{MAX_REDIRECTS, RedirectRefusal};

/// The HTTP client data sources are fetched with; [`crate::fetch_dataset`] takes one.
///
/// - Redirects are followed only to the source's own origin (scheme, host and port), at most
///   [`MAX_REDIRECTS`] times and never from https to http, so headers configured for a
///   source never reach another origin.
/// - A source that does not set `allow_private = true` is refused when its host is, or
///   resolves to, any address that is not public (loopback, private, link-local such as the
///   cloud metadata service, ...). The check runs in the resolver of the connection itself,
///   so DNS rebinding cannot slip past it; IP-literal hosts, which skip the resolver, are
///   checked before the request is sent.
/// - Proxy environment variables (`HTTPS_PROXY`, ...) are ignored: through a proxy, names
///   would be resolved out of the check's sight.
///
/// It holds two clients, one per kind of source, because a client has one resolver; their
/// connection pools are separate too, so a connection opened for an internal source is never
/// reused for a public-only one. Cheap to clone: clones share the pools.
#[derive(Clone, Debug)]
pub struct FetchClient {
    /// For sources on public hosts: resolves through a [`CheckedResolver`] allowing only
    /// public addresses.
    public_only: reqwest::Client,
    /// For sources with `allow_private = true`: the system resolver, unchecked.
    any_address: reqwest::Client,
}

impl FetchClient {
    /// Builds the clients, sending `user_agent` with every request.
    ///
    /// Fails only when the TLS backend cannot be initialised or `user_agent` is not a valid
    /// header value.
    pub fn new(user_agent: &str) -> Result<Self, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(user_agent)
                .redirect(redirect::policy())
                .no_proxy()
        };
        Ok(Self {
            public_only: builder()
                .dns_resolver(CheckedResolver::new(AddressPolicy::PublicOnly))
                .build()?,
            any_address: builder().build()?,
        })
    }

    /// A GET of `source`'s URL with its configured headers, on the client its
    /// `allow_private` setting calls for.
    pub(crate) fn get(&self, source: &DataSource) -> Result<reqwest::RequestBuilder, RenderError> {
        let client = if source.allow_private() {
            &self.any_address
        } else {
            // An IP literal is connected to without resolving: check it here. Redirects
            // need no check of their own, as they never leave this host.
            let literal = match source.url().host() {
                Some(Host::Ipv4(ip)) => Some(ip.into()),
                Some(Host::Ipv6(ip)) => Some(ip.into()),
                Some(Host::Domain(_)) | None => None,
            };
            if let Some(ip) = literal {
                net::check(ip).map_err(|_| RenderError::PrivateAddress {
                    name: source.name().to_owned(),
                })?;
            }
            &self.public_only
        };
        Ok(client
            .get(source.url().clone())
            .headers(source.headers().clone()))
    }
}

/// The error for the report's owner when `e` is one of this module's refusals (reqwest
/// wraps them, so the chain of causes is searched), else `None`.
pub(crate) fn refusal(source: &str, e: &reqwest::Error) -> Option<RenderError> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(error) = cause {
        if error.is::<RefusedAddress>() {
            return Some(RenderError::PrivateAddress {
                name: source.to_owned(),
            });
        }
        if let Some(refusal) = error.downcast_ref::<RedirectRefusal>() {
            return Some(RenderError::Redirect {
                name: source.to_owned(),
                refusal: *refusal,
            });
        }
        cause = error.source();
    }
    None
}
