//! The OpenAPI document's frame: info, tags, the bearer scheme, and the error responses
//! every operation can really give. Errors are documented here, once, from what the
//! router's layers and extractors do, so a handler's annotation lists only its own
//! success and domain-specific answers and the document cannot forget the rest.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, OpenApi, PathItem, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _, PartialSchema, ToSchema};

use crate::error::ErrorDoc;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "opshub", description = "Migrations, procedures, webhooks, incoming webhook log and typed configuration."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "meta", description = "Health, readiness and metrics"),
        (name = "tokens", description = "API tokens (admin scope)"),
        (name = "kv", description = "Typed key-value configuration"),
        (name = "webhooks", description = "Outbound webhook endpoints, signing helpers"),
        (name = "events", description = "Publishing events to webhooks"),
        (name = "deliveries", description = "Delivery state and attempts"),
        (name = "migrations", description = "Versioned schema migrations: records, run, rollback, status, validation, history"),
        (name = "procedures", description = "Procedures, functions, triggers and views: deploy, drift detection against the live catalog, rollback"),
        (name = "webhook-log", description = "Ingest sources, the append-only incoming webhook log, and the public /ingest capture routes"),
    )
)]
struct ApiDoc;

/// The document before the routes are merged in.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Adds to every operation of the finished document the error statuses it can return
/// (see [`error_statuses`]), and gives every 4xx/5xx response without a body SPEC's
/// error body. Run after every router is merged.
pub fn document_errors(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorDoc::name().into_owned(), ErrorDoc::schema());
    let mut details = Vec::new();
    ErrorDoc::schemas(&mut details);
    components.schemas.extend(details);
    for (path, item) in openapi.paths.paths.iter_mut() {
        for op in operations(item) {
            for (status, description) in error_statuses(path, op) {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| ResponseBuilder::new().description(description).into());
            }
            for (status, response) in op.responses.responses.iter_mut() {
                if let RefOr::T(r) = response
                    && (status.starts_with('4') || status.starts_with('5'))
                    && r.content.is_empty()
                {
                    r.content.insert(
                        "application/json".into(),
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(ErrorDoc::name())))
                            .build()
                            .into(),
                    );
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// What the shared machinery answers, by the operation's shape: input that does not
/// parse (400: query, path or JSON syntax), authentication and scope (401, 403) unless the
/// route is public, an unknown id in the path (404), the body limit (413), a JSON body
/// with another content type (415) or of the wrong shape (422), and the request time limit
/// or an unreachable database (503).
fn error_statuses(path: &str, op: &Operation) -> Vec<(u16, &'static str)> {
    let params = op.parameters.as_deref().unwrap_or_default();
    let public = op
        .security
        .as_ref()
        .is_some_and(|reqs| serde_json::to_value(reqs).is_ok_and(|v| v == serde_json::json!([{}])));
    let json_body = op.request_body.as_ref().is_some_and(|b| match b {
        RefOr::T(b) => b.content.contains_key("application/json"),
        RefOr::Ref(_) => true,
    });
    let path_param = params.iter().any(|p| match p {
        RefOr::T(p) => p.parameter_in == ParameterIn::Path,
        RefOr::Ref(_) => false,
    }) || path.contains('{');
    let mut out = Vec::new();
    if !params.is_empty() || op.request_body.is_some() {
        out.push((400, "malformed input: query string, path or JSON syntax"));
    }
    if !public {
        out.push((401, "no bearer token, or not a valid one"));
        out.push((403, "the token's scope does not allow this"));
    }
    if path_param {
        out.push((404, "not found"));
    }
    if op.request_body.is_some() {
        out.push((413, "the request body is over the limit"));
    }
    if json_body {
        out.push((415, "the body is not sent as application/json"));
        out.push((
            422,
            "the body does not have the documented shape, or a value is invalid",
        ));
    }
    out.push((
        503,
        "the request timed out or the database is not answering",
    ));
    out
}
