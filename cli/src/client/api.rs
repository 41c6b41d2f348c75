//! The HTTP side of the client: one `reqwest` client, the server's base URL, the stored
//! session with its refresh, and the one place a response becomes an [`Error`].

use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{CredentialStore, Credentials, TokenPair};
use super::error::{Error, chain};

/// A connection that cannot be opened in this long is a server that is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while reading an answer: long enough for the server to hold a
/// `Prefer: wait` request, short enough that a dead connection is noticed.
const READ_TIMEOUT: Duration = Duration::from_secs(90);

/// A client of one Quire server, signed in or not.
pub struct Api {
    http: reqwest::Client,
    /// The base URL, without a trailing slash: paths are appended to it.
    server: String,
    store: CredentialStore,
    /// The session for `server`, once loaded.
    session: Option<Credentials>,
}

/// The error body every API error has.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl Api {
    pub fn new(server: &str, store: CredentialStore) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            // Redirects are followed by hand: a download link (presigned S3, or the
            // server's signed `/files` link) must not receive the bearer token.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("quire-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::BadResponse(format!("building the HTTP client: {}", chain(&e))))?;
        Ok(Self {
            http,
            server: normalize_server(server)?,
            store,
            session: None,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn store(&self) -> &CredentialStore {
        &self.store
    }

    /// `path` on this server (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// Sends a request that needs no session; an error status becomes an [`Error`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Error> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        check(response).await
    }

    /// Sends a request as the signed-in user: refreshes the access token first when it is
    /// about to expire, and once more if the server answers 401 anyway (revoked, a clock
    /// skew, a server restarted with another secret). `build` is called once per attempt.
    pub async fn send_authed(
        &mut self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let token = self.access_token().await?;
        let response = self.send_bearer(&build, &token).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return check(response).await;
        }
        self.refresh(&token).await?;
        let token = self.access_token().await?;
        let response = self.send_bearer(&build, &token).await?;
        match check(response).await {
            Err(Error::Api { status, message }) if status == StatusCode::UNAUTHORIZED => {
                Err(Error::not_signed_in(message))
            }
            other => other,
        }
    }

    /// One attempt of [`send_authed`](Self::send_authed) with `token`, unchecked.
    async fn send_bearer(
        &self,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
        token: &str,
    ) -> Result<Response, Error> {
        build(&self.http)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))
    }

    /// Signs in and stores the session.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Result<&Credentials, Error> {
        let request = self
            .http
            .post(self.url("/auth/signin"))
            .json(&json!({"email": email, "password": password}));
        let pair: TokenPair = decode(self.send(request).await?).await?;
        let credentials = Credentials::new(&self.server, email, pair, Utc::now());
        self.store.save(&credentials)?;
        Ok(self.session.insert(credentials))
    }

    /// The session for this server from the credentials file.
    fn session(&mut self) -> Result<&Credentials, Error> {
        if self.session.is_none() {
            let stored = self
                .store
                .load()?
                .ok_or_else(|| Error::not_signed_in("not signed in"))?;
            if stored.server != self.server {
                return Err(Error::not_signed_in(format!(
                    "signed in to {}, not to {}",
                    stored.server, self.server
                )));
            }
            self.session = Some(stored);
        }
        self.session
            .as_ref()
            .ok_or_else(|| Error::not_signed_in("not signed in"))
    }

    /// A current access token, refreshed first if it is about to expire.
    async fn access_token(&mut self) -> Result<String, Error> {
        let session = self.session()?;
        if session.is_fresh(Utc::now()) {
            return Ok(session.access_token.clone());
        }
        let stale = session.access_token.clone();
        self.refresh(&stale).await?;
        Ok(self.session()?.access_token.clone())
    }

    /// Trades the refresh token for a new pair and stores it, unless another `quire`
    /// process already did so since `stale` was read (then its pair is used: the refresh
    /// token we hold is spent, and presenting it again would revoke the sign-in).
    async fn refresh(&mut self, stale: &str) -> Result<(), Error> {
        let _lock = self.store.lock()?;
        let current = self
            .store
            .load()?
            .filter(|c| c.server == self.server)
            .ok_or_else(|| Error::not_signed_in("not signed in"))?;
        if current.access_token != stale && current.is_fresh(Utc::now()) {
            self.session = Some(current);
            return Ok(());
        }
        let request = self
            .http
            .post(self.url("/auth/refresh"))
            .json(&json!({"refresh_token": current.refresh_token}));
        let response = match self.send(request).await {
            Ok(response) => response,
            Err(Error::Api { status, .. })
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST =>
            {
                return Err(Error::not_signed_in(
                    "the session has expired or was revoked",
                ));
            }
            Err(e) => return Err(e),
        };
        let pair: TokenPair = decode(response).await?;
        let renewed = Credentials::new(&self.server, &current.email, pair, Utc::now());
        self.store.save(&renewed)?;
        self.session = Some(renewed);
        Ok(())
    }

    fn unreachable(&self, error: &reqwest::Error) -> Error {
        Error::Unreachable {
            server: self.server.clone(),
            cause: chain(error),
        }
    }
}

/// `server` as a base URL: http or https, no query, no trailing slash.
fn normalize_server(server: &str) -> Result<String, Error> {
    let url = url::Url::parse(server.trim())
        .map_err(|e| Error::Usage(format!("--server `{server}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::Usage(format!(
            "--server `{server}` must be an http:// or https:// URL"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Usage(format!(
            "--server `{server}` must not have a query or a fragment"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The response if its status is a success or a redirect, else the server's error as an
/// [`Error`] (its JSON `message`, or the status's reason when the body is not ours).
pub async fn check(response: Response) -> Result<Response, Error> {
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.unwrap_or_default();
    let mut message = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(ErrorBody { message }) => message,
        Err(_) => format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        ),
    };
    if let Some(seconds) = retry_after {
        message.push_str(&format!(" (retry after {seconds} s)"));
    }
    Err(Error::Api { status, message })
}

/// The body as JSON of type `T`.
pub async fn decode<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, Error> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::BadResponse(chain(&e)))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadResponse(format!("not the JSON expected: {e}")))
}

/// The body as a JSON document, whatever its shape (`--output json` prints it as it is).
pub async fn document(response: Response) -> Result<Value, Error> {
    decode(response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_normalised_and_checked() {
        assert_eq!(
            normalize_server("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalize_server("https://quire.example/api/").unwrap(),
            "https://quire.example/api"
        );
        assert!(normalize_server("ftp://x").is_err());
        assert!(normalize_server("not a url").is_err());
        assert!(normalize_server("http://x/?a=1").is_err());
    }
}
