//! `GET /me`: the signed-in account, its quota and what it uses of it.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use quire_core::model::Usage;
use serde::Serialize;
use uuid::Uuid;

use super::auth::AuthUser;
use super::error::{ApiError, Json};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/me", get(me))
}

/// The account and its quota; a limit is `null` when it is disabled.
#[derive(Debug, Serialize)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub limits: Limits,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct Limits {
    /// Reports pending, queued or running at once (`QUIRE_QUOTA_UNFINISHED`).
    pub unfinished: Option<u32>,
    /// Reports created per hour (`QUIRE_QUOTA_PER_HOUR`).
    pub per_hour: Option<u32>,
}

#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<Me>, ApiError> {
    let (account, usage) = tokio::try_join!(
        state.store().user(user.user_id),
        state.store().usage(user.user_id, Utc::now()),
    )?;
    let account = account.ok_or_else(|| {
        ApiError::Unauthorized(
            "the account this token was issued for no longer exists; sign in again".into(),
        )
    })?;
    let quota = state.config().quota();
    Ok(Json(Me {
        id: account.id,
        email: account.email,
        created_at: account.created_at,
        limits: Limits {
            unfinished: quota.unfinished,
            per_hour: quota.per_hour,
        },
        usage,
    }))
}
