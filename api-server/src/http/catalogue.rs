//! What can be asked for: `GET /report-types` and `GET /data-sources`.
//!
//! The parameter schemas are generated from the types `POST /reports` validates with, so
//! the catalogue cannot promise what the API refuses. Data sources are shown by name,
//! title and columns only: their URLs and headers are the operator's (internal hosts, API
//! keys) and never leave the server.

use std::sync::LazyLock;

use axum::extract::State;
use quire_core::{ReportFormat, ReportType};
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AuthUser;
use super::error::Json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report_types))
        .routes(routes!(data_sources))
}

/// Every report type.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportTypeList {
    pub items: Vec<ReportTypeInfo>,
}

/// One report type: its formats and the JSON Schema of its `parameters`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportTypeInfo {
    pub name: ReportType,
    pub formats: Vec<ReportFormat>,
    /// JSON Schema (2020-12) of the `parameters` object `POST /reports` accepts.
    #[schema(value_type = Object)]
    pub parameters_schema: Value,
}

/// The configured data sources.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DataSourceList {
    pub items: Vec<DataSourceInfo>,
}

/// One data source, as `dataset` reports name it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DataSourceInfo {
    /// The name to put in a dataset report's `source`.
    pub name: String,
    /// What PDF outputs are titled (the name unless the operator set a title).
    pub title: String,
    /// The columns a report gets when it names none; `null` when the source's rows decide
    /// (every key, in first-seen order).
    pub columns: Option<Vec<String>>,
}

/// The catalogue of types, built once: it depends on nothing but the code.
static REPORT_TYPES: LazyLock<Vec<ReportTypeInfo>> = LazyLock::new(|| {
    ReportType::ALL
        .iter()
        .map(|&report_type| ReportTypeInfo {
            name: report_type,
            formats: report_type.supported_formats().to_vec(),
            parameters_schema: quire_crds::parameters_schema(report_type),
        })
        .collect()
});

/// List report types
///
/// Each type, the formats it comes in and the JSON Schema of its parameters. A dataset
/// report's `source` is one of the configured data sources (`GET /data-sources`); the
/// schema lists them.
#[utoipa::path(
    get,
    path = "/report-types",
    tag = "catalogue",
    security(("bearer" = [])),
    responses((status = 200, description = "Every report type", body = ReportTypeList)),
)]
async fn report_types(State(state): State<AppState>, _user: AuthUser) -> Json<ReportTypeList> {
    let sources: Vec<Value> = state
        .config()
        .data_sources
        .names()
        .map(|name| Value::String(name.to_owned()))
        .collect();
    let items = REPORT_TYPES
        .iter()
        .map(|info| {
            let mut schema = info.parameters_schema.clone();
            if info.name == ReportType::Dataset
                && let Some(source) = schema.pointer_mut("/properties/source")
                && let Some(source) = source.as_object_mut()
            {
                // Only configured sources are accepted: say which.
                source.insert("enum".to_owned(), Value::Array(sources.clone()));
            }
            ReportTypeInfo {
                name: info.name,
                formats: info.formats.clone(),
                parameters_schema: schema,
            }
        })
        .collect();
    Json(ReportTypeList { items })
}

/// List data sources
///
/// The operator's data sources for `dataset` reports: names, titles and columns (never
/// where they are fetched from).
#[utoipa::path(
    get,
    path = "/data-sources",
    tag = "catalogue",
    security(("bearer" = [])),
    responses((status = 200, description = "Every configured data source", body = DataSourceList)),
)]
async fn data_sources(State(state): State<AppState>, _user: AuthUser) -> Json<DataSourceList> {
    let sources = &state.config().data_sources;
    let items = sources
        .names()
        .filter_map(|name| sources.get(name))
        .map(|source| DataSourceInfo {
            name: source.name().to_owned(),
            title: source.title().to_owned(),
            columns: source.columns().map(<[String]>::to_vec),
        })
        .collect();
    Json(DataSourceList { items })
}
