//! The HTTP surface shared by every module: health, readiness, error shape for bad
//! requests, request ids, metrics, OpenAPI and the docs page.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, Resp, TestApp};

backend_tests!(health_and_readiness_answer);

async fn health_and_readiness_answer(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let plain = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let r = Resp::from(
            plain
                .get(format!("{}{path}", app.base))
                .send()
                .await
                .expect("sent"),
        )
        .await;
        r.assert_status(200);
    }
    assert_eq!(app.get("/readyz").await.json["status"], "ready");
}

#[tokio::test]
async fn readiness_fails_with_json_when_database_is_gone() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    app.state.db.close().await;
    app.get("/readyz").await.assert_error(503, "unavailable");
    app.get("/healthz").await.assert_status(200);
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    app.get("/api/v1/nothing-here")
        .await
        .assert_error(404, "not_found");
    app.get("/nothing").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn wrong_method_is_json_405() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let r = Resp::from(
        app.req(Method::PATCH, "/api/v1/tokens")
            .send()
            .await
            .expect("sent"),
    )
    .await;
    r.assert_error(405, "method_not_allowed");
    assert!(
        r.headers.get("allow").is_some(),
        "405 keeps its Allow header"
    );
}

#[tokio::test]
async fn malformed_json_is_400() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let r = app
        .req(Method::POST, "/api/v1/tokens")
        .header("content-type", "application/json")
        .body("{\"name\": \"x\",")
        .send()
        .await
        .expect("sent");
    Resp::from(r).await.assert_error(400, "malformed_json");
}

#[tokio::test]
async fn wrong_field_types_are_422_and_write_nothing() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    for body in [
        json!({"name": 5, "scope": "read"}),
        json!({"name": "x", "scope": "root"}),
        json!({"name": "x"}),
        json!([1]),
    ] {
        app.post("/api/v1/tokens", body)
            .await
            .assert_error(422, "invalid_body");
    }
    app.post("/api/v1/tokens", json!({"name": "", "scope": "read"}))
        .await
        .assert_error(422, "invalid_token");
    let list = app.get("/api/v1/tokens").await;
    assert_eq!(
        list.json["items"].as_array().expect("items").len(),
        1,
        "only the bootstrap token exists"
    );
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let r = app
        .req(Method::POST, "/api/v1/tokens")
        .header("content-type", "text/plain")
        .body(r#"{"name":"x","scope":"read"}"#)
        .send()
        .await
        .expect("sent");
    Resp::from(r)
        .await
        .assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let big = format!(
        "{{\"name\":\"{}\",\"scope\":\"read\"}}",
        "a".repeat(1024 * 1024 + 1)
    );
    let r = app
        .req(Method::POST, "/api/v1/tokens")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("sent");
    let r = Resp::from(r).await;
    r.assert_error(413, "payload_too_large");
    assert_eq!(r.json["error"]["details"]["limitBytes"], 1024 * 1024);
}

#[tokio::test]
async fn body_limit_is_configurable() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, &[("OPSHUB_MAX_BODY_BYTES", "64")]).await
    else {
        return;
    };
    let body = json!({"name": "a".repeat(100), "scope": "read"});
    app.post("/api/v1/tokens", body)
        .await
        .assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn bad_query_parameters_are_400() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    app.get("/api/v1/tokens?limit=abc")
        .await
        .assert_error(400, "invalid_query");
    app.get("/api/v1/tokens?limit=0")
        .await
        .assert_error(400, "invalid_limit");
    app.get("/api/v1/tokens?limit=1001")
        .await
        .assert_error(400, "invalid_limit");
    app.get("/api/v1/tokens?cursor=@@@")
        .await
        .assert_error(400, "invalid_cursor");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let a = app.get("/healthz").await;
    let b = app.get("/healthz").await;
    let id = |r: &Resp| {
        r.headers
            .get("x-request-id")
            .expect("request id")
            .to_str()
            .expect("ascii")
            .to_string()
    };
    assert_ne!(id(&a), id(&b));
    assert!(uuid::Uuid::parse_str(&id(&a)).is_ok());
    let r = app
        .req(Method::GET, "/nothing")
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn metrics_need_a_token_and_count_requests() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let anon = reqwest::get(format!("{}/metrics", app.base))
        .await
        .expect("sent");
    assert_eq!(anon.status(), 401);
    app.get("/healthz").await;
    let r = app.get("/metrics").await;
    r.assert_status(200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    assert!(
        r.text.contains(
            "opshub_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"
        ),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("# TYPE opshub_http_request_duration_seconds histogram")
    );
}

/// Every route the service registers, as (method, path). A route added without its
/// OpenAPI entry, or documented but not served, fails here.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("get", "/api/v1/tokens/{id}"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/kv"),
    ("get", "/api/v1/kv/changes"),
    ("get", "/api/v1/kv/_export"),
    ("post", "/api/v1/kv/_import"),
    ("get", "/api/v1/kv/{key}"),
    ("put", "/api/v1/kv/{key}"),
    ("delete", "/api/v1/kv/{key}"),
    ("get", "/api/v1/kv/{key}/history"),
    ("post", "/api/v1/kv/{key}/rollback"),
    ("get", "/api/v1/webhooks"),
    ("post", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{id}"),
    ("patch", "/api/v1/webhooks/{id}"),
    ("delete", "/api/v1/webhooks/{id}"),
    ("post", "/api/v1/webhooks/{id}/rotate-secret"),
    ("post", "/api/v1/webhooks/{id}/test"),
    ("post", "/api/v1/webhooks/{id}/digest"),
    ("post", "/api/v1/events"),
    ("post", "/api/v1/events/route"),
    ("get", "/api/v1/deliveries"),
    ("get", "/api/v1/deliveries/{id}"),
    ("post", "/api/v1/deliveries/{id}/retry"),
    ("post", "/api/v1/deliveries/recover"),
    ("post", "/api/v1/digest"),
    ("post", "/api/v1/verify"),
    ("get", "/api/v1/migrations"),
    ("post", "/api/v1/migrations"),
    ("get", "/api/v1/migrations/{id}"),
    ("patch", "/api/v1/migrations/{id}"),
    ("delete", "/api/v1/migrations/{id}"),
    ("post", "/api/v1/migrations/run"),
    ("post", "/api/v1/migrations/rollback"),
    ("get", "/api/v1/migrations/status"),
    ("get", "/api/v1/migrations/validate"),
    ("get", "/api/v1/migrations/history"),
    ("post", "/api/v1/migrations/{id}/resolve"),
    ("post", "/api/v1/migrations/{id}/resume"),
    ("post", "/api/v1/migrations/baseline"),
    ("get", "/api/v1/procedures"),
    ("post", "/api/v1/procedures"),
    ("get", "/api/v1/procedures/{id}"),
    ("patch", "/api/v1/procedures/{id}"),
    ("delete", "/api/v1/procedures/{id}"),
    ("post", "/api/v1/procedures/{id}/deploy"),
    ("post", "/api/v1/procedures/deploy"),
    ("get", "/api/v1/procedures/drift"),
    ("post", "/api/v1/procedures/{id}/rollback"),
    ("get", "/api/v1/ingest-sources"),
    ("post", "/api/v1/ingest-sources"),
    ("get", "/api/v1/ingest-sources/{id}"),
    ("patch", "/api/v1/ingest-sources/{id}"),
    ("delete", "/api/v1/ingest-sources/{id}"),
    ("get", "/api/v1/webhook-logs"),
    ("get", "/api/v1/webhook-logs/verify"),
    ("get", "/api/v1/webhook-logs/{id}"),
    ("get", "/api/v1/webhook-logs/{id}/raw"),
    ("post", "/api/v1/webhook-logs/{id}/replay"),
    ("get", "/api/v1/webhook-logs/{id}/replay"),
    ("post", "/ingest/{source}"),
    ("post", "/ingest/{source}/{path}"),
];

#[tokio::test]
async fn openapi_is_valid_3_1_and_lists_every_route() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let r = Resp::from(
        reqwest::get(format!("{}/api/openapi.json", app.base))
            .await
            .expect("sent"),
    )
    .await;
    r.assert_status(200);
    let doc = &r.json;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "version {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("operations") {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has responses"
            );
        }
        // Each documented route is served (not 404) by the running router.
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{key}", "no-such-key");
        for method in item.as_object().expect("ops").keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let resp = app.req(m, &concrete).send().await.expect("sent");
            let streaming = resp
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if streaming {
                continue; // served (a live stream); its body never ends
            }
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_none_or(|m| !m.starts_with("no route")),
                "{method} {path} served"
            );
        }
    }
    assert_refs_resolve(doc, doc);
}

fn assert_refs_resolve(doc: &Value, node: &Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let pointer = r.strip_prefix('#').expect("local ref");
                assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
            }
            map.values().for_each(|v| assert_refs_resolve(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_refs_resolve(doc, v)),
        _ => {}
    }
}

#[tokio::test]
async fn docs_are_served_from_the_binary_without_outside_assets() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let page = Resp::from(
        reqwest::get(format!("{}/docs/", app.base))
            .await
            .expect("sent"),
    )
    .await;
    page.assert_status(200);
    assert!(page.text.to_lowercase().contains("swagger"));
    assert!(
        !page.text.contains("src=\"http"),
        "no script from another host: {}",
        page.text
    );
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        let r = Resp::from(
            reqwest::get(format!("{}{asset}", app.base))
                .await
                .expect("sent"),
        )
        .await;
        r.assert_status(200);
        assert!(!r.text.is_empty());
    }
}

/// Schemathesis found `/healthz` documented with the migrations' `Status` schema: two types
/// of one name overwrote each other in `components`. Each response points at its own shape,
/// and every operation documents its errors with SPEC's error body.
#[tokio::test]
async fn openapi_schemas_do_not_collide_and_errors_are_documented() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let doc = Resp::from(
        reqwest::get(format!("{}/api/openapi.json", app.base))
            .await
            .expect("sent"),
    )
    .await
    .json;
    let schemas = &doc["components"]["schemas"];
    let resolve = |path: &str, method: &str| {
        let r =
            doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has a 200 schema"))
                .rsplit('/')
                .next()
                .expect("name")
                .to_string();
        schemas[&r].clone()
    };
    assert!(resolve("/healthz", "get")["properties"]["status"].is_object());
    assert!(resolve("/api/v1/migrations/status", "get")["properties"]["executed"].is_object());
    // Both flatten their record reference: the own fields are the `allOf`'s second part.
    assert!(schemas["MigrationPlanItem"]["allOf"][1]["properties"]["statements"].is_object());
    assert!(schemas["ProcedurePlanItem"]["allOf"][1]["properties"]["upScript"].is_object());
    let error = &schemas["ErrorDetail"]["required"];
    assert_eq!(error, &json!(["code", "message", "details"]));
    let put = &doc["paths"]["/api/v1/kv/{key}"]["put"]["responses"];
    for status in [
        "400", "401", "403", "404", "412", "413", "415", "422", "503",
    ] {
        assert_eq!(
            put[status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "PUT /api/v1/kv/{{key}} documents {status}"
        );
    }
    let health = &doc["paths"]["/healthz"]["get"]["responses"];
    assert!(health["401"].is_null(), "public routes document no 401");
}
