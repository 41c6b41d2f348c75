//! The API's contract: OpenAPI 3.1 generated from the handlers and their types (utoipa),
//! served at `GET /openapi.json`, and Swagger UI at `GET /docs` with every asset inside
//! the binary (nothing is fetched from another host, at build time or at run time).
//!
//! Each handler documents its own answers; [`complete`] adds the ones every operation
//! shares (a malformed body, a missing token, an unknown id, an outage), so no status the
//! server can send is missing from the document. `docs/openapi.json` is a committed copy;
//! a test fails when it drifts from what the code serves.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr};
use utoipa::{Modify, OpenApi as _};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::error::ErrorBody;

/// Where the document and the docs page are served.
pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Quire",
        description = "Asynchronous reports: request one with `POST /reports`, follow it at \
`GET /reports/{id}` (or hold the request with `Prefer: wait=N`), download it once completed, \
or be told by a signed webhook. Sign up and sign in at `/auth/…`, then send the access token \
as `Authorization: Bearer <token>`.\n\nEvery error answers `{\"error\": <code>, \"message\": \
<text>}`. Download links (`/files/…` or S3 presigned URLs) are signed and need no token; they \
are not operations of this API.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "reports", description = "Request, follow, cancel and download reports"),
        (name = "catalogue", description = "What can be asked for"),
        (name = "webhooks", description = "Signed notifications when reports finish (Standard Webhooks)"),
        (name = "account", description = "Your account and its limits"),
        (name = "health", description = "Probes and metrics"),
    ),
)]
struct ApiDoc;

/// The document's skeleton: info, tags, security scheme and shared error schema. The operations
/// come from the routers ([`utoipa_axum::router::OpenApiRouter`]).
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// The Swagger UI at [`DOCS_PATH`], serving `document` at [`OPENAPI_PATH`]: operations
/// listed when the page opens, no validator badge (it would call validator.swagger.io).
pub fn docs(document: OpenApi) -> SwaggerUi {
    let config = Config::new([OPENAPI_PATH])
        .doc_expansion("list")
        .validator_url("none")
        .try_it_out_enabled(true)
        .persist_authorization(true)
        .display_request_duration(true);
    SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, document)
        .config(config)
}

/// `Authorization: Bearer <JWT access token>` as the scheme called `bearer`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The `access_token` from `POST /auth/signin` or `POST /auth/refresh`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the answers every operation shares to each operation of `openapi`, where its
/// handler did not document its own. Runs on the whole document: the `#[openapi]`
/// modifiers only see the skeleton, before the routers' operations are merged in.
pub fn complete(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let has_path_id = path.contains('{');
        for operation in [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            add_common_errors(operation, has_path_id);
        }
    }
}

fn add_common_errors(operation: &mut Operation, has_path_id: bool) {
    let has_body = operation.request_body.is_some();
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let mut add = |status: &str, response: Response| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert(RefOr::T(response));
    };
    if has_body {
        add(
            "400",
            error("The body is not valid JSON, or a header is malformed"),
        );
        add("413", error("The body is larger than the server accepts"));
        add(
            "415",
            error("The body is not `Content-Type: application/json`"),
        );
        add(
            "422",
            error("The body is JSON of the wrong shape (the message says where)"),
        );
    }
    if secured {
        add(
            "401",
            with_header(
                error("No access token, or an invalid, expired or revoked one"),
                "WWW-Authenticate",
                "`Bearer`",
            ),
        );
    }
    if has_path_id {
        add(
            "404",
            error("No such resource among yours (another user's reads the same)"),
        );
    }
    add(
        "500",
        error("A bug; the message is generic and the cause logged"),
    );
    add(
        "503",
        with_header(
            error(
                "A dependency (database, queue, storage, Kubernetes) is unreachable, or the request took too long; nothing was changed",
            ),
            "Retry-After",
            "Seconds to wait before retrying",
        ),
    );
}

fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn with_header(mut response: Response, name: &str, description: &str) -> Response {
    response.headers.insert(
        name.to_owned(),
        HeaderBuilder::new()
            .schema(
                utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String),
            )
            .description(Some(description))
            .build(),
    );
    response
}
