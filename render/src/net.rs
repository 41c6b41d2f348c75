//! Which addresses an outgoing request may connect to, and the resolver that enforces it.
//!
//! Shared by everything Quire fetches or sends over the network on someone's behalf: data
//! sources (the worker, through [`crate::FetchClient`]) and webhook deliveries (the API's
//! dispatcher). A URL's owner controls what its name resolves to, so unchecked, a request
//! could be turned against the network it runs in: loopback services, the cluster, the
//! cloud metadata service with its credentials.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which destinations a request may connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Only [public](is_public) addresses that are not [cloud metadata](is_cloud_metadata)
    /// endpoints: the rule for anything a user or a remote party can point.
    PublicOnly,
    /// Anything but [cloud metadata](is_cloud_metadata) endpoints: for development and
    /// tests against local receivers, where loopback and private addresses are expected.
    NoCloudMetadata,
}

impl AddressPolicy {
    /// Refuses `ip` unless this policy allows it.
    pub fn check(self, ip: IpAddr) -> Result<(), RefusedAddress> {
        let allowed = match self {
            Self::PublicOnly => is_public(ip) && !is_cloud_metadata(ip),
            Self::NoCloudMetadata => !is_cloud_metadata(ip),
        };
        if allowed {
            Ok(())
        } else {
            Err(RefusedAddress {
                ip,
                metadata: is_cloud_metadata(ip),
            })
        }
    }
}

/// A connection to an address the policy does not allow was refused.
///
/// Carries the address for debugging; a report's owner only ever sees
/// [`crate::RenderError::PrivateAddress`], which names the source and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is {}", if *.metadata { "a cloud metadata address" } else { "not a public address" })]
pub struct RefusedAddress {
    pub ip: IpAddr,
    /// The address is a cloud metadata endpoint (refused under every policy).
    pub metadata: bool,
}

/// Refuses `ip` unless it is public (see [`AddressPolicy::PublicOnly`]).
pub fn check(ip: IpAddr) -> Result<(), RefusedAddress> {
    AddressPolicy::PublicOnly.check(ip)
}

/// True when `ip` is a cloud provider's instance metadata or credentials endpoint, which
/// hands out the machine's credentials to whoever asks: the whole IPv4 link-local range
/// `169.254/16` (AWS, GCP, Azure and OpenStack at `169.254.169.254`, ECS task metadata at
/// `169.254.170.2`, EKS Pod Identity at `169.254.170.23`), AWS's IPv6 endpoints in
/// `fd00:ec2::/32`, Alibaba Cloud's `100.100.100.200`, Azure's WireServer `168.63.129.16`
/// (a public address) and Oracle Cloud's `192.0.0.192`. IPv4-mapped and NAT64 forms count
/// as the IPv4 address they reach.
pub fn is_cloud_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_cloud_metadata_v4(ip),
        IpAddr::V6(ip) => match embedded_v4(ip) {
            Some(v4) => is_cloud_metadata_v4(v4),
            None => {
                let s = ip.segments();
                s[0] == 0xfd00 && s[1] == 0x0ec2
            }
        },
    }
}

fn is_cloud_metadata_v4(ip: Ipv4Addr) -> bool {
    ip.is_link_local()
        || ip == Ipv4Addr::new(100, 100, 100, 200)
        || ip == Ipv4Addr::new(168, 63, 129, 16)
        || ip == Ipv4Addr::new(192, 0, 0, 192)
}

/// The IPv4 address an IPv6 one reaches: IPv4-mapped `::ffff:0:0/96` (the socket connects
/// over IPv4) or NAT64 `64:ff9b::/96` (a gateway forwards to it).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = s;
        return Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    None
}

/// True when `ip` is a globally reachable unicast address: a destination there cannot be
/// this machine, its network, or its cloud's metadata service.
///
/// Not public, for IPv4: `0.0.0.0/8` (`0.0.0.0` reaches this host), loopback `127/8`,
/// private `10/8`, `172.16/12`, `192.168/16`, link-local `169.254/16` (cloud metadata at
/// `169.254.169.254`), carrier-grade NAT `100.64/10` (Alibaba Cloud's metadata at
/// `100.100.100.200`), `192.0.0/24`, the documentation and benchmarking ranges, multicast,
/// and `240/4` (reserved, with broadcast `255.255.255.255`).
///
/// For IPv6: `::/96` (unspecified, loopback and the deprecated IPv4-compatible addresses),
/// unique-local `fc00::/7` (AWS metadata at `fd00:ec2::254`), link-local `fe80::/10`,
/// site-local `fec0::/10`, discard `100::/64`, documentation `2001:db8::/32`, local-use
/// NAT64 `64:ff9b:1::/48` and multicast. An address that reaches an IPv4 one, IPv4-mapped
/// `::ffff:0:0/96` (the socket connects over IPv4) or NAT64 `64:ff9b::/96` (a gateway
/// forwards to it), is judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let not_public = a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19))
        || ip.is_multicast()
        || a >= 240;
    !not_public
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let not_public = ip.is_unspecified()
        || ip.is_loopback()
        || s[..6] == [0; 6]
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (s[0] & 0xffc0) == 0xfec0
        || s[..4] == [0x100, 0, 0, 0]
        || (s[0] == 0x2001 && s[1] == 0xdb8)
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        || ip.is_multicast();
    !not_public
}

/// Resolves names with the system resolver (through tokio) and refuses the whole answer
/// when any address in it is not allowed by its [`AddressPolicy`].
///
/// It is the resolver of the client that connects, so the addresses checked are the ones
/// connected to: a name cannot pass a check and then resolve elsewhere (DNS rebinding).
/// Refusing on any refused address, not just skipping it, keeps a name that mixes allowed
/// and refused answers from reaching the refused one on a retry or fallback. IP-literal
/// hosts skip resolvers: check them with [`AddressPolicy::check`] before sending.
#[derive(Clone, Copy, Debug)]
pub struct CheckedResolver {
    policy: AddressPolicy,
}

impl CheckedResolver {
    pub fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = self.policy;
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                policy.check(addr.ip())?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(ip: &str) -> bool {
        is_public(ip.parse().expect("a valid IP address"))
    }

    #[test]
    fn ipv4_loopback_private_link_local_and_reserved_are_not_public() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.100.100.200",
            "100.127.255.255",
            "192.0.0.192",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(ip), "{ip} passed");
        }
    }

    #[test]
    fn ipv4_internet_addresses_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "192.169.0.1",
            "198.20.0.1",
        ] {
            assert!(public(ip), "{ip} refused");
        }
    }

    #[test]
    fn ipv6_loopback_unique_local_link_local_and_metadata_are_not_public() {
        for ip in [
            "::",
            "::1",
            "::127.0.0.1",
            "fd00:ec2::254",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "100::1",
            "2001:db8::1",
            "64:ff9b:1::1",
            "ff02::1",
        ] {
            assert!(!public(ip), "{ip} passed");
        }
    }

    #[test]
    fn ipv6_internet_addresses_are_public() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
        ] {
            assert!(public(ip), "{ip} refused");
        }
    }

    #[test]
    fn addresses_that_reach_ipv4_are_judged_by_it() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::ffff:100.64.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b::192.168.0.1",
        ] {
            assert!(!public(ip), "{ip} passed");
        }
        assert!(public("::ffff:8.8.8.8"));
        assert!(public("64:ff9b::8.8.8.8"));
    }

    #[test]
    fn cloud_metadata_addresses_are_refused_under_every_policy() {
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "169.254.170.23",
            "fd00:ec2::254",
            "fd00:ec2::23",
            "100.100.100.200",
            "168.63.129.16",
            "192.0.0.192",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = ip.parse().expect("a valid IP address");
            assert!(is_cloud_metadata(ip), "{ip} is not metadata");
            for policy in [AddressPolicy::PublicOnly, AddressPolicy::NoCloudMetadata] {
                let refused = policy.check(ip).expect_err("metadata refused");
                assert!(refused.metadata, "{ip}");
            }
        }
    }

    #[test]
    fn the_development_policy_allows_loopback_and_private_addresses() {
        for ip in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "192.168.0.10",
            "fd12::1",
            "8.8.8.8",
        ] {
            let ip: IpAddr = ip.parse().expect("a valid IP address");
            assert!(!is_cloud_metadata(ip), "{ip}");
            assert_eq!(AddressPolicy::NoCloudMetadata.check(ip), Ok(()));
        }
        let loopback: IpAddr = "127.0.0.1".parse().expect("a valid IP address");
        let refused = AddressPolicy::PublicOnly
            .check(loopback)
            .expect_err("refused");
        assert!(!refused.metadata);
        assert_eq!(refused.to_string(), "127.0.0.1 is not a public address");
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_private_addresses() {
        let name: Name = "localhost".parse().expect("a valid name");
        let resolver = CheckedResolver::new(AddressPolicy::PublicOnly);
        let Err(err) = resolver.resolve(name).await else {
            panic!("localhost was resolved");
        };
        let refused = err
            .downcast_ref::<RefusedAddress>()
            .expect("refused as a private address");
        assert!(refused.ip.is_loopback(), "{refused:?}");
        let name: Name = "localhost".parse().expect("a valid name");
        let resolver = CheckedResolver::new(AddressPolicy::NoCloudMetadata);
        assert!(resolver.resolve(name).await.is_ok());
    }
}
