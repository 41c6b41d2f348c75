//! `/auth/*`: sign-up, sign-in, token refresh, sign-out and sign-out everywhere; and
//! [`AuthUser`], the extractor that makes a handler require a valid access token.

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use quire_core::model::{NewUser, RefreshToken, User};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::client::ClientAddr;
use super::error::{ApiError, ErrorBody, Json};
use crate::auth::credentials::{EmailError, check_email, check_password, normalize_email};
use crate::auth::password::{HashError, Priority};
use crate::auth::tokens;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(signin))
        .routes(routes!(refresh))
        .routes(routes!(signout))
        .routes(routes!(signout_all))
}

/// The signed-in user, from `Authorization: Bearer <access token>`. Extracting it answers
/// 401 with `WWW-Authenticate: Bearer` when the token is missing, malformed, expired,
/// signed for someone else, or from before the user signed out everywhere (one primary-key
/// read of the user's token generation per request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: Uuid,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = Bearer::from_request_parts(parts, state).await?;
        let generation = state.store().token_generation(bearer.user_id()).await?;
        bearer.check(generation)
    }
}

/// A correctly signed, unexpired access token whose generation is not checked yet: for a
/// handler that reads the generation together with what it needs (one query instead of
/// two), then calls [`Bearer::check`]. Everything else takes [`AuthUser`].
#[derive(Clone, Copy, Debug)]
pub struct Bearer {
    user_id: Uuid,
    generation: i64,
}

impl Bearer {
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    /// The signed-in user, if `current` (the user's token generation now; `None` when the
    /// account is gone) is the one the token was issued under.
    pub fn check(self, current: Option<i64>) -> Result<AuthUser, ApiError> {
        match current {
            Some(generation) if generation == self.generation => Ok(AuthUser {
                user_id: self.user_id,
            }),
            Some(_) => Err(ApiError::Unauthorized(
                "this session was signed out; sign in again".to_owned(),
            )),
            // A correctly signed token whose account is gone (a restored database, a secret
            // shared across environments): the client's credentials are the problem.
            None => Err(ApiError::Unauthorized(
                "the account this token was issued for no longer exists; sign in again".to_owned(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".to_owned()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                ApiError::Unauthorized("expected `Authorization: Bearer <token>`".to_owned())
            })?;
        let claims = state
            .access_tokens()
            .verify(token, Utc::now())
            .map_err(|e| {
                tracing::debug!(error = %e, "access token rejected");
                ApiError::Unauthorized("the access token is invalid or expired".to_owned())
            })?;
        Ok(Self {
            user_id: claims.sub,
            generation: claims.r#gen,
        })
    }
}

/// How soon a client refused because the password hasher is saturated should retry.
const HASHER_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A hashing failure as the client should see it: 503 with `Retry-After` when the hasher's
/// queue is full, else an internal error.
fn hash_failed(error: HashError) -> ApiError {
    match error {
        HashError::Busy => ApiError::ServiceUnavailable {
            message: "too many sign-ins and sign-ups at once; try again shortly".to_owned(),
            retry_after: HASHER_RETRY_AFTER,
        },
        e => ApiError::internal(e),
    }
}

/// An email and a password.
#[derive(Deserialize, utoipa::ToSchema)]
struct Credentials {
    #[schema(example = "ada@example.com")]
    email: String,
    /// At least 12 characters (sign-up).
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// A refresh token from sign-in or an earlier refresh.
#[derive(Deserialize, utoipa::ToSchema)]
struct RefreshRequest {
    #[schema(value_type = String, format = Password)]
    refresh_token: SecretString,
}

/// A short-lived access token (a JWT, for `Authorization: Bearer`) and a refresh token.
#[derive(Serialize, utoipa::ToSchema)]
struct TokenPair {
    access_token: String,
    /// Single use: each refresh returns a new one. Presenting a spent one revokes the
    /// whole sign-in.
    refresh_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds the access token lasts.
    expires_in: u64,
}

const INVALID_CREDENTIALS: &str = "invalid email or password";
const INVALID_REFRESH_TOKEN: &str = "the refresh token is invalid, expired or revoked";

/// Create an account
#[utoipa::path(
    post,
    path = "/auth/signup",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "The account", body = User),
        (status = 409, description = "The email is already registered", body = ErrorBody),
        (status = 422, description = "An invalid email or a weak password", body = ErrorBody),
        (status = 429, description = "Too many sign-ups from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[tracing::instrument(skip_all)]
async fn signup(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let refused = |e: EmailError| ApiError::UnprocessableEntity(e.to_string());
    let email = normalize_email(&body.email).map_err(refused)?;
    check_email(&email).map_err(refused)?;
    check_password(body.password.expose_secret())
        .map_err(|e| ApiError::UnprocessableEntity(e.to_string()))?;
    state
        .signin_limiter()
        .check_signup(address)
        .map_err(|limited| {
            tracing::info!(%address, "sign-up rate limited");
            ApiError::TooManyRequests {
                message: "too many sign-ups from this address; try again later".to_owned(),
                retry_after: limited.retry_after,
            }
        })?;
    let password_hash = state
        .hasher()
        .hash(body.password, Priority::Bulk)
        .await
        .map_err(hash_failed)?;
    let new_user = NewUser {
        id: Uuid::now_v7(),
        email,
        password_hash,
        created_at: Utc::now(),
    };
    let user = state
        .store()
        .create_user(new_user)
        .await
        .map_err(|e| match e {
            quire_core::Error::Conflict(_) => {
                ApiError::Conflict("an account with this email already exists".to_owned())
            }
            e => e.into(),
        })?;
    tracing::info!(user_id = %user.id, "user signed up");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Sign in
///
/// Trades an email and password for an access token and a refresh token.
#[utoipa::path(
    post,
    path = "/auth/signin",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "Invalid email or password", body = ErrorBody),
        (status = 429, description = "Too many attempts for this account or address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
#[tracing::instrument(skip_all)]
async fn signin(
    State(state): State<AppState>,
    address: ClientAddr,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    let answer = sign_in(&state, address, body).await;
    state.metrics().signin(match &answer {
        Ok(_) => "success",
        Err(ApiError::Unauthorized(_)) => "invalid_credentials",
        Err(ApiError::TooManyRequests { .. }) => "rate_limited",
        Err(ApiError::ServiceUnavailable { .. }) => "busy",
        Err(_) => "error",
    });
    answer
}

async fn sign_in(
    state: &AppState,
    ClientAddr(address): ClientAddr,
    body: Credentials,
) -> Result<Response, ApiError> {
    // An address that cannot be normalised (a look-alike, a domain IDNA cannot map) has no
    // account: it is limited under what was typed, and then goes through the same dummy-hash
    // verification and the same 401 as an unknown email.
    let email = normalize_email(&body.email).ok();
    let account = email.as_deref().unwrap_or_else(|| body.email.trim());
    state
        .signin_limiter()
        .check(account, address)
        .map_err(|limited| {
            tracing::info!(%address, "sign-in rate limited");
            ApiError::TooManyRequests {
                message: "too many sign-in attempts; try again later".to_owned(),
                retry_after: limited.retry_after,
            }
        })?;
    let credentials = match &email {
        Some(email) => state.store().credentials(email).await?,
        None => None,
    };
    let (user, hash) = match credentials {
        Some(credentials) => (Some(credentials.user), Some(credentials.password_hash)),
        None => (None, None),
    };
    // Always verify, against a dummy hash for an unknown email: both failures take as long
    // and read the same, so sign-in does not reveal which emails have accounts.
    let matched = state
        .hasher()
        .verify(body.password, hash)
        .await
        .map_err(hash_failed)?;
    let Some(user) = user.filter(|_| matched) else {
        return Err(ApiError::Unauthorized(INVALID_CREDENTIALS.to_owned()));
    };
    let now = Utc::now();
    let family = Family::new(state, now)?;
    let pair = issue_tokens(state, user.id, family, now).await?;
    tracing::info!(user_id = %user.id, "user signed in");
    Ok(no_store(Json(pair)))
}

/// Refresh tokens
///
/// Trades a refresh token for a new pair, spending it. Presenting a spent token means it
/// was stolen or replayed: the whole sign-in is revoked.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = TokenPair),
        (status = 401, description = "The refresh token is invalid, expired or revoked", body = ErrorBody),
    ),
)]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<Response, ApiError> {
    let mut refused = "invalid";
    let answer = exchange(&state, body, &mut refused).await;
    state.metrics().refresh(match &answer {
        Ok(_) => "success",
        Err(ApiError::Unauthorized(_)) => refused,
        Err(_) => "error",
    });
    answer
}

/// The exchange itself; a refusal because of a reuse sets `refused` to `reused`.
async fn exchange(
    state: &AppState,
    body: RefreshRequest,
    refused: &mut &'static str,
) -> Result<Response, ApiError> {
    let rejected = || ApiError::Unauthorized(INVALID_REFRESH_TOKEN.to_owned());
    let now = Utc::now();
    let Some(hash) = tokens::hash_presented(body.refresh_token.expose_secret()) else {
        return Err(rejected());
    };
    let Some(token) = state.store().refresh_token(&hash).await? else {
        return Err(rejected());
    };
    if token.revoked_at.is_some() || token.expires_at <= now || token.family_expires_at <= now {
        return Err(rejected());
    }
    // Spent already, or spent by a concurrent request between our read and now: a reuse.
    if token.spent_at.is_some() || !state.store().spend_refresh_token(token.id, now).await? {
        let revoked = state
            .store()
            .revoke_token_family(token.family_id, now)
            .await?;
        tracing::warn!(
            user_id = %token.user_id,
            family_id = %token.family_id,
            revoked,
            "refresh token reused; token family revoked"
        );
        *refused = "reused";
        return Err(rejected());
    }
    let family = Family {
        id: token.family_id,
        expires_at: token.family_expires_at,
    };
    let pair = issue_tokens(state, token.user_id, family, now).await?;
    // A reuse racing this refresh may have revoked the family after we spent the old token
    // but before the new one existed, missing it. The revocation is visible on the old
    // token: if it happened, revoke again (now covering the new token) and refuse.
    let revoked_meanwhile = state
        .store()
        .refresh_token(&hash)
        .await?
        .is_none_or(|old| old.revoked_at.is_some());
    if revoked_meanwhile {
        state
            .store()
            .revoke_token_family(token.family_id, now)
            .await?;
        *refused = "reused";
        return Err(rejected());
    }
    Ok(no_store(Json(pair)))
}

/// Sign out
///
/// Revokes the presented refresh token's sign-in. Idempotent: an unknown token is already
/// signed out.
#[utoipa::path(
    post,
    path = "/auth/signout",
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "Signed out")),
)]
#[tracing::instrument(skip_all)]
async fn signout(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    if let Some(hash) = tokens::hash_presented(body.refresh_token.expose_secret())
        && let Some(token) = state.store().refresh_token(&hash).await?
    {
        state
            .store()
            .revoke_token_family(token.family_id, Utc::now())
            .await?;
        tracing::info!(user_id = %token.user_id, "user signed out");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sign out everywhere
///
/// Every refresh token is revoked and every access token issued so far stops working at
/// once.
#[utoipa::path(
    post,
    path = "/auth/signout-all",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out on every device")),
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn signout_all(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<StatusCode, ApiError> {
    state
        .store()
        .sign_out_everywhere(user.user_id, Utc::now())
        .await?;
    tracing::info!(user_id = %user.user_id, "user signed out everywhere");
    Ok(StatusCode::NO_CONTENT)
}

/// A refresh-token family: one sign-in and its rotations, ending at `expires_at` at the
/// latest.
struct Family {
    id: Uuid,
    expires_at: DateTime<Utc>,
}

impl Family {
    /// A new family, started `now`, that lasts `refresh_family_ttl`.
    fn new(state: &AppState, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let ttl = chrono::Duration::from_std(state.config().refresh_family_ttl)
            .map_err(ApiError::internal)?;
        Ok(Self {
            id: Uuid::now_v7(),
            expires_at: now + ttl,
        })
    }
}

/// A new access token and a new refresh token of `family`, the latter stored. The refresh
/// token never outlives its family.
async fn issue_tokens(
    state: &AppState,
    user_id: Uuid,
    family: Family,
    now: DateTime<Utc>,
) -> Result<TokenPair, ApiError> {
    let generation = state
        .store()
        .token_generation(user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized(INVALID_REFRESH_TOKEN.to_owned()))?;
    let access_tokens = state.access_tokens();
    let access_token = access_tokens
        .issue(user_id, generation, now)
        .map_err(ApiError::internal)?;
    let refresh = tokens::generate();
    let ttl =
        chrono::Duration::from_std(state.config().refresh_token_ttl).map_err(ApiError::internal)?;
    state
        .store()
        .insert_refresh_token(RefreshToken {
            id: Uuid::now_v7(),
            user_id,
            family_id: family.id,
            token_hash: refresh.hash,
            created_at: now,
            expires_at: (now + ttl).min(family.expires_at),
            family_expires_at: family.expires_at,
            spent_at: None,
            revoked_at: None,
        })
        .await?;
    Ok(TokenPair {
        access_token,
        refresh_token: refresh.secret.expose_secret().to_owned(),
        token_type: "Bearer",
        expires_in: access_tokens.ttl().as_secs(),
    })
}

/// Token responses must not be cached by browsers or proxies (RFC 6749 §5.1).
fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
