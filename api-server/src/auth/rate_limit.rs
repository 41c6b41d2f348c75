//! Rate limits of the authentication routes:
//!
//! - sign-in per account *and* client address: password guessing on one account from one
//!   place is slowed, while an attacker elsewhere cannot use up (lock out) a victim's budget;
//! - sign-in per client address: one client spraying many accounts;
//! - sign-up per client address: a sign-up flood (each costs a bcrypt hash).
//!
//! The client address is the one [`client_address`](crate::http::client) resolves, which
//! honours `Forwarded` / `X-Forwarded-For` only from trusted proxies.
//!
//! GCRA limiters keyed in memory (per replica). Keys whose budget has fully refilled are
//! dropped every minute, so the maps stay proportional to recent traffic.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How often idle keys are dropped.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// The authentication limits; see the module docs.
pub struct SigninLimiter {
    per_account: Option<DefaultKeyedRateLimiter<(String, IpAddr)>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    signups: Option<DefaultKeyedRateLimiter<IpAddr>>,
    last_cleanup: Mutex<Instant>,
}

impl std::fmt::Debug for SigninLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigninLimiter")
            .field("accounts", &self.per_account.as_ref().map(|l| l.len()))
            .field("addresses", &self.per_address.as_ref().map(|l| l.len()))
            .field("signups", &self.signups.as_ref().map(|l| l.len()))
            .finish()
    }
}

/// A sign-in was refused; the client may try again after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl SigninLimiter {
    /// Sign-in limits of `per_account` (per account and address) and `per_address`
    /// attempts a minute, each also the burst size; 0 disables that limit. Sign-ups are
    /// not limited until [`with_signups_per_hour`](Self::with_signups_per_hour).
    pub fn new(per_account: u32, per_address: u32) -> Self {
        let quota = |n| NonZeroU32::new(n).map(Quota::per_minute);
        Self {
            per_account: quota(per_account).map(RateLimiter::keyed),
            per_address: quota(per_address).map(RateLimiter::keyed),
            signups: None,
            last_cleanup: Mutex::new(Instant::now()),
        }
    }

    /// Allows `per_address` sign-ups an hour from one client address (also the burst
    /// size); 0 disables the limit.
    pub fn with_signups_per_hour(mut self, per_address: u32) -> Self {
        self.signups = NonZeroU32::new(per_address)
            .map(Quota::per_hour)
            .map(RateLimiter::keyed);
        self
    }

    /// Counts one sign-in attempt for `account` (a normalised email) from `address`.
    ///
    /// The address is checked first, so a client already over its limit cannot use up an
    /// account's budget.
    pub fn check(&self, account: &str, address: IpAddr) -> Result<(), Limited> {
        self.cleanup_if_due();
        let address = address_key(address);
        if let Some(limiter) = &self.per_address {
            limiter
                .check_key(&address)
                .map_err(|not_until| limited(not_until.wait_time_from(limiter.clock().now())))?;
        }
        if let Some(limiter) = &self.per_account {
            limiter
                .check_key(&(account.to_owned(), address))
                .map_err(|not_until| limited(not_until.wait_time_from(limiter.clock().now())))?;
        }
        Ok(())
    }

    /// Counts one sign-up from `address`.
    pub fn check_signup(&self, address: IpAddr) -> Result<(), Limited> {
        self.cleanup_if_due();
        let Some(limiter) = &self.signups else {
            return Ok(());
        };
        limiter
            .check_key(&address_key(address))
            .map_err(|not_until| limited(not_until.wait_time_from(limiter.clock().now())))
    }

    fn cleanup_if_due(&self) {
        // `try_lock`: if another request is cleaning up right now, there is nothing to do.
        let Ok(mut last) = self.last_cleanup.try_lock() else {
            return;
        };
        if last.elapsed() < CLEANUP_EVERY {
            return;
        }
        *last = Instant::now();
        if let Some(limiter) = &self.per_account {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.per_address, &self.signups].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1 (the `Retry-After` header has no fractions).
fn limited(wait: Duration) -> Limited {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Limited {
        retry_after: Duration::from_secs(secs.max(1)),
    }
}

/// The key an address is limited under. IPv4-mapped IPv6 counts as the IPv4 address, and
/// other IPv6 addresses by their /64, the smallest block a single client usually gets.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const CAFE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_account_is_limited_per_address_so_nobody_elsewhere_can_lock_it_out() {
        let limiter = SigninLimiter::new(2, 100);
        assert!(limiter.check("ada@example.com", HOME).is_ok());
        assert!(limiter.check("ada@example.com", HOME).is_ok());
        let refused = limiter.check("ada@example.com", HOME).unwrap_err();
        assert!(refused.retry_after >= Duration::from_secs(1));
        // The attacker at HOME used up ada's budget there, not at the café.
        assert!(limiter.check("ada@example.com", CAFE).is_ok());
        assert!(limiter.check("bob@example.com", HOME).is_ok());
    }

    #[test]
    fn sign_ups_are_limited_per_address() {
        let limiter = SigninLimiter::new(0, 0).with_signups_per_hour(2);
        assert!(limiter.check_signup(HOME).is_ok());
        assert!(limiter.check_signup(HOME).is_ok());
        let refused = limiter.check_signup(HOME).unwrap_err();
        assert!(
            refused.retry_after >= Duration::from_secs(60),
            "{refused:?}"
        );
        assert!(limiter.check_signup(CAFE).is_ok());
        assert!(
            SigninLimiter::new(0, 0).check_signup(HOME).is_ok(),
            "off by default"
        );
    }

    #[test]
    fn an_address_is_limited_whatever_the_account() {
        let limiter = SigninLimiter::new(100, 2);
        assert!(limiter.check("a@example.com", HOME).is_ok());
        assert!(limiter.check("b@example.com", HOME).is_ok());
        assert!(limiter.check("c@example.com", HOME).is_err());
        assert!(limiter.check("c@example.com", CAFE).is_ok());
    }

    #[test]
    fn zero_disables_a_limit() {
        let limiter = SigninLimiter::new(0, 0);
        for _ in 0..100 {
            assert!(limiter.check("ada@example.com", HOME).is_ok());
        }
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_block() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), HOME);
    }
}
