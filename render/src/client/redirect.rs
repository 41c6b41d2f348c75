//! Which redirects a fetch follows: only those that stay at the source's origin.

use reqwest::redirect::Policy;
use url::Url;

/// Most redirects one fetch follows.
pub const MAX_REDIRECTS: usize = 3;

/// Why a redirect was not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefusal {
    /// The target's scheme, host or port differs from the source's URL.
    #[error("redirected to another origin; only same-origin redirects are followed")]
    CrossOrigin,
    /// An https source redirected to http.
    #[error("redirected from https to http, which is never followed")]
    Downgrade,
    /// More than [`MAX_REDIRECTS`] redirects in a row.
    #[error("redirected more than {max} times")]
    TooMany { max: usize },
}

impl RedirectRefusal {
    /// Only a chain too long may be a passing fault (a redirect loop while the upstream is
    /// redeployed); leaving the origin is how the source is configured, so retrying cannot help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::TooMany { .. })
    }
}

/// The redirect policy of every data-source client: follow [`check`]'s verdict, stopping the
/// request with the [`RedirectRefusal`] as its error.
pub(crate) fn policy() -> Policy {
    Policy::custom(|attempt| match check(attempt.url(), attempt.previous()) {
        Ok(()) => attempt.follow(),
        Err(refusal) => attempt.error(refusal),
    })
}

/// Whether a redirect to `next` may be followed, `previous` being the URLs requested so far
/// (the source's own URL first).
///
/// Only the source's origin (scheme, host and port) is allowed, so the source's configured
/// headers, often an API key, never reach anyone else, and the address check made for the
/// source's host covers every hop. Comparing with the first URL rather than the last is the
/// same thing, as every hop before was held to it.
pub(crate) fn check(next: &Url, previous: &[Url]) -> Result<(), RedirectRefusal> {
    // reqwest always passes the source's URL; without it nothing proves the origin.
    let Some(source) = previous.first() else {
        return Err(RedirectRefusal::CrossOrigin);
    };
    if source.scheme() == "https" && next.scheme() == "http" {
        Err(RedirectRefusal::Downgrade)
    } else if next.origin() != source.origin() {
        Err(RedirectRefusal::CrossOrigin)
    } else if previous.len() > MAX_REDIRECTS {
        Err(RedirectRefusal::TooMany { max: MAX_REDIRECTS })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("a valid URL")
    }

    fn verdict(next: &str, previous: &[&str]) -> Result<(), RedirectRefusal> {
        let previous: Vec<Url> = previous.iter().map(|u| url(u)).collect();
        check(&url(next), &previous)
    }

    #[test]
    fn same_origin_redirects_are_followed() {
        assert_eq!(
            verdict(
                "https://api.example.com/v2/rows",
                &["https://api.example.com/rows"]
            ),
            Ok(())
        );
        // The scheme's default port is the same origin spelled out.
        assert_eq!(
            verdict(
                "https://API.example.com:443/x",
                &["https://api.example.com/rows"]
            ),
            Ok(())
        );
        assert_eq!(
            verdict("http://10.0.0.5:8080/b", &["http://10.0.0.5:8080/a"]),
            Ok(())
        );
    }

    #[test]
    fn https_to_http_is_refused_even_on_the_same_host() {
        assert_eq!(
            verdict(
                "http://api.example.com/rows",
                &["https://api.example.com/rows"]
            ),
            Err(RedirectRefusal::Downgrade)
        );
    }

    #[test]
    fn other_hosts_ports_and_schemes_are_other_origins() {
        for next in [
            "https://evil.example.net/rows",
            "https://sub.api.example.com/rows",
            "https://api.example.com:8443/rows",
            "https://169.254.169.254/latest/meta-data/",
            "ftp://api.example.com/rows",
        ] {
            assert_eq!(
                verdict(next, &["https://api.example.com/rows"]),
                Err(RedirectRefusal::CrossOrigin),
                "{next}"
            );
        }
        // http to https is an upgrade, but still another origin.
        assert_eq!(
            verdict(
                "https://api.example.com/rows",
                &["http://api.example.com/rows"]
            ),
            Err(RedirectRefusal::CrossOrigin)
        );
        assert_eq!(
            verdict("http://localhost:8080/", &["http://127.0.0.1:8080/"]),
            Err(RedirectRefusal::CrossOrigin)
        );
    }

    #[test]
    fn the_origin_is_the_sources_not_the_last_hops() {
        assert_eq!(
            verdict(
                "https://b.example.com/",
                &["https://a.example.com/", "https://b.example.com/"]
            ),
            Err(RedirectRefusal::CrossOrigin)
        );
    }

    #[test]
    fn at_most_three_redirects_are_followed() {
        let hops = ["https://a.example.com/0"; MAX_REDIRECTS + 1];
        assert_eq!(
            verdict("https://a.example.com/x", &hops[..MAX_REDIRECTS]),
            Ok(())
        );
        assert_eq!(
            verdict("https://a.example.com/x", &hops),
            Err(RedirectRefusal::TooMany { max: 3 })
        );
        assert!(RedirectRefusal::TooMany { max: 3 }.is_retryable());
        assert!(!RedirectRefusal::CrossOrigin.is_retryable());
        assert!(!RedirectRefusal::Downgrade.is_retryable());
    }
}
