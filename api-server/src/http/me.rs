//! `GET /me`: the signed-in account, its quota and what it uses of it.

use axum::extract::State;
use chrono::{DateTime, Utc};
use quire_core::model::Usage;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::AuthUser;
use super::error::{ApiError, Json};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// The account and its quota; a limit is `null` when it is disabled.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub limits: Limits,
    pub usage: Usage,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Limits {
    /// Reports pending, queued or running at once (`QUIRE_QUOTA_UNFINISHED`).
    pub unfinished: Option<u32>,
    /// Reports created per hour (`QUIRE_QUOTA_PER_HOUR`).
    pub per_hour: Option<u32>,
}

/// Show your account
///
/// The account, its per-user limits (`null`: no limit) and what it uses of them now.
#[utoipa::path(
    get,
    path = "/me",
    tag = "account",
    security(("bearer" = [])),
    responses((status = 200, description = "The signed-in account", body = Me)),
)]
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
