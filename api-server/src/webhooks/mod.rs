//! Completion webhooks, following the Standard Webhooks specification: what a destination
//! may be, how a payload is signed, and the [`Dispatcher`] that sends the deliveries the
//! database records (see `quire_core::store::webhooks`).
//!
//! A destination is a URL a user chose, so it is a server-side request forgery risk: only
//! `https`, no redirects followed, and no loopback, private, link-local or cloud-metadata
//! address — refused at registration when the host is an address, and checked again on
//! every delivery in the resolver of the connection that sends it (so DNS rebinding cannot
//! slip past). [`WebhookSettings::allow_private`] (`QUIRE_WEBHOOK_ALLOW_PRIVATE`, for
//! development and tests) lets plain `http` and loopback/private destinations through,
//! never cloud-metadata ones.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use clap::builder::BoolishValueParser;
use hmac::{Hmac, Mac};
use quire_render::net::AddressPolicy;
use sha2::Sha256;
use url::{Host, Url};

mod dispatcher;

pub use dispatcher::Dispatcher;

/// Prefix of a signing secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a signing secret.
const SECRET_BYTES: usize = 32;
/// Longest accepted destination URL.
pub const MAX_URL_LEN: usize = 2048;

/// How webhooks behave. [`Default`] is production's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Allow plain `http` and loopback/private destinations (never cloud metadata ones).
    pub allow_private: bool,
    /// How long a delivery is retried before it is given up (and its endpoint disabled).
    pub retry_for: Duration,
    /// The delay before the first retry; later ones follow Standard Webhooks' schedule
    /// (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) scaled by the same factor.
    pub first_retry: Duration,
    /// How long one request to an endpoint may take, connecting included.
    pub timeout: Duration,
    /// How often the dispatcher looks for due deliveries.
    pub poll_every: Duration,
    /// Deliveries sent at once by one process.
    pub concurrency: usize,
    /// Endpoints a user may register.
    pub max_per_user: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_for: Duration::from_secs(24 * 60 * 60),
            first_retry: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            poll_every: Duration::from_secs(1),
            concurrency: 16,
            max_per_user: 10,
        }
    }
}

impl WebhookSettings {
    /// Which addresses deliveries may connect to.
    pub fn address_policy(&self) -> AddressPolicy {
        if self.allow_private {
            AddressPolicy::NoCloudMetadata
        } else {
            AddressPolicy::PublicOnly
        }
    }
}

/// The webhook settings of `api-server` and `quire dev`.
#[derive(Clone, Debug, Args)]
pub struct WebhookArgs {
    /// Allow webhook destinations over plain http and on loopback or private addresses,
    /// for development and tests (cloud metadata addresses stay refused).
    #[arg(long, env = "QUIRE_WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = BoolishValueParser::new(),
          num_args = 0..=1, default_missing_value = "true")]
    pub webhook_allow_private: bool,

    /// How long a webhook delivery is retried before it is given up and its endpoint
    /// disabled (`24h`).
    #[arg(long, env = "QUIRE_WEBHOOK_RETRY_FOR", default_value = "24h",
          value_parser = quire_core::duration::parse)]
    pub webhook_retry_for: Duration,

    /// Delay before a failed webhook delivery's first retry; later retries follow the
    /// Standard Webhooks schedule scaled alike (`5s`).
    #[arg(long, env = "QUIRE_WEBHOOK_FIRST_RETRY", default_value = "5s",
          value_parser = quire_core::duration::parse)]
    pub webhook_first_retry: Duration,
}

/// The documented defaults (as if no flag or variable were given).
impl Default for WebhookArgs {
    fn default() -> Self {
        let settings = WebhookSettings::default();
        Self {
            webhook_allow_private: settings.allow_private,
            webhook_retry_for: settings.retry_for,
            webhook_first_retry: settings.first_retry,
        }
    }
}

impl WebhookArgs {
    pub fn settings(&self) -> WebhookSettings {
        WebhookSettings {
            allow_private: self.webhook_allow_private,
            retry_for: self.webhook_retry_for,
            first_retry: self.webhook_first_retry.max(Duration::from_millis(1)),
            ..WebhookSettings::default()
        }
    }
}

/// Why a destination URL is refused; the message is for the user who registers it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("`url` is not an absolute URL")]
    NotAUrl,
    #[error("`url` is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("`url` must use https")]
    NotHttps,
    #[error("`url` must use https or http")]
    NotHttp,
    #[error("`url` must not carry a user name or password; authenticate with the signature")]
    Credentials,
    #[error("`url` must name a host")]
    NoHost,
    #[error(
        "`url` points at a loopback, private, link-local or otherwise non-public address; \
         webhooks are only sent to public addresses"
    )]
    NotPublic,
    #[error("`url` points at a cloud metadata address; webhooks are never sent there")]
    CloudMetadata,
}

/// Checks a destination as registration does: scheme, no credentials, and an address host
/// allowed by the settings' policy. Names are checked on every delivery instead.
pub fn check_destination(raw: &str, settings: &WebhookSettings) -> Result<Url, DestinationError> {
    if raw.len() > MAX_URL_LEN {
        return Err(DestinationError::TooLong);
    }
    let url = Url::parse(raw).map_err(|_| DestinationError::NotAUrl)?;
    match (url.scheme(), settings.allow_private) {
        ("https", _) | ("http", true) => {}
        (_, false) => return Err(DestinationError::NotHttps),
        (_, true) => return Err(DestinationError::NotHttp),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(DestinationError::Credentials);
    }
    let host = url.host().ok_or(DestinationError::NoHost)?;
    if let Some(ip) = literal_ip(&host) {
        check_address(ip, settings.address_policy())?;
    }
    Ok(url)
}

/// The address of an IP-literal host (which connects without resolving).
pub(crate) fn literal_ip<S>(host: &Host<S>) -> Option<IpAddr> {
    match host {
        Host::Ipv4(ip) => Some((*ip).into()),
        Host::Ipv6(ip) => Some((*ip).into()),
        Host::Domain(_) => None,
    }
}

fn check_address(ip: IpAddr, policy: AddressPolicy) -> Result<(), DestinationError> {
    policy.check(ip).map_err(|refused| {
        if refused.metadata {
            DestinationError::CloudMetadata
        } else {
            DestinationError::NotPublic
        }
    })
}

/// A fresh signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The secret is not `whsec_<base64>` (only a corrupted row could make it so).
#[derive(Debug, thiserror::Error)]
#[error("the endpoint's signing secret is malformed")]
pub struct MalformedSecret;

/// The `webhook-signature` header value: `v1,` and the base64 of HMAC-SHA256 over
/// `{id}.{timestamp}.{body}`, keyed with the secret's decoded bytes.
pub fn signature(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, MalformedSecret> {
    let key = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .ok_or(MalformedSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Standard Webhooks' retry delays after the first, second, … failed attempt, in seconds.
const SCHEDULE_SECS: [u64; 7] = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600];

/// The delay after failed attempt number `attempts` (1 for the first), before jitter, or
/// `None` once the schedule is spent: [`SCHEDULE_SECS`] scaled so its first step is
/// `first_retry`.
pub(crate) fn retry_delay(attempts: i32, first_retry: Duration) -> Option<Duration> {
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    let step = SCHEDULE_SECS.get(index)?;
    let scale = first_retry.as_secs_f64() / SCHEDULE_SECS[0] as f64;
    Some(Duration::from_secs_f64(*step as f64 * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allow_private: bool) -> WebhookSettings {
        WebhookSettings {
            allow_private,
            ..WebhookSettings::default()
        }
    }

    #[test]
    fn registration_refuses_what_could_reach_inside() {
        let strict = settings(false);
        for (url, error) in [
            ("http://example.com/hook", DestinationError::NotHttps),
            ("ftp://example.com/hook", DestinationError::NotHttps),
            ("https://127.0.0.1/hook", DestinationError::NotPublic),
            ("https://10.0.0.8/hook", DestinationError::NotPublic),
            ("https://[::1]/hook", DestinationError::NotPublic),
            ("https://[::ffff:192.168.0.1]/", DestinationError::NotPublic),
            (
                "https://169.254.169.254/latest",
                DestinationError::CloudMetadata,
            ),
            ("https://[fd00:ec2::254]/", DestinationError::CloudMetadata),
            (
                "https://user:pw@example.com/",
                DestinationError::Credentials,
            ),
            ("not a url", DestinationError::NotAUrl),
        ] {
            assert_eq!(check_destination(url, &strict), Err(error), "{url}");
        }
        assert!(check_destination("https://hooks.example.com/quire", &strict).is_ok());
        assert!(check_destination("https://93.184.216.34:8443/", &strict).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(
            check_destination(&long, &strict),
            Err(DestinationError::TooLong)
        );
    }

    #[test]
    fn the_allowance_opens_http_and_private_addresses_but_never_metadata() {
        let dev = settings(true);
        assert!(check_destination("http://127.0.0.1:9000/hook", &dev).is_ok());
        assert!(check_destination("http://10.0.0.8/hook", &dev).is_ok());
        assert!(check_destination("http://localhost/hook", &dev).is_ok());
        assert_eq!(
            check_destination("http://169.254.169.254/latest/meta-data", &dev),
            Err(DestinationError::CloudMetadata)
        );
        assert_eq!(
            check_destination("http://100.100.100.200/", &dev),
            Err(DestinationError::CloudMetadata)
        );
        assert_eq!(
            check_destination("ftp://127.0.0.1/", &dev),
            Err(DestinationError::NotHttp)
        );
    }

    #[test]
    fn secrets_are_whsec_and_32_random_bytes() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        let encoded = a.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), SECRET_BYTES);
    }

    #[test]
    fn the_signature_matches_the_specification_example() {
        // The example of the Standard Webhooks specification (and its libraries' tests).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, id, 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(signature("not-a-secret", id, 1, body).is_err());
    }

    #[test]
    fn retries_follow_the_standard_schedule_scaled_by_the_first_delay() {
        let standard = Duration::from_secs(5);
        assert_eq!(retry_delay(1, standard), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(2, standard), Some(Duration::from_secs(300)));
        assert_eq!(retry_delay(7, standard), Some(Duration::from_secs(36_000)));
        assert_eq!(retry_delay(8, standard), None);
        assert_eq!(retry_delay(0, standard), None);
        let fast = Duration::from_millis(50);
        assert_eq!(retry_delay(1, fast), Some(Duration::from_millis(50)));
        assert_eq!(retry_delay(2, fast), Some(Duration::from_secs(3)));
    }
}
