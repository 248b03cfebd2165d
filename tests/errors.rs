//! Every error is problem+json with a stable code (SPEC §6).

mod common;

use awc::http::Method;
use common::TestApp;
use serde_json::json;

async fn malformed_bodies_get_precise_problems(app: TestApp) {
    let login = "/api/v1/auth/login";
    let res = app.send(Method::POST, login, None, Some(("application/json", b"{\"email\":".to_vec()))).await;
    res.assert_problem(400, "malformed_json");
    for broken in [&b"["[..], b"[1,", b"nul"] {
        let res = app.send(Method::POST, login, None, Some(("application/json", broken.to_vec()))).await;
        res.assert_problem(400, "malformed_json");
    }
    let res = app.post(login, None, json!(["a@b.example", "password"])).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["message"], "must be a JSON object");
    let res = app.send(Method::POST, login, None, Some(("text/plain", b"{}".to_vec()))).await;
    res.assert_problem(415, "unsupported_media_type");
    let res = app.send(Method::POST, login, None, None).await;
    assert!(matches!(res.status.as_u16(), 400 | 415), "{}", res.text);
    assert_eq!(res.header("content-type").as_deref(), Some("application/problem+json"));
    let res = app.post(login, None, json!({"email": "a@b.example"})).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"], json!([{"field": "password", "message": "is required"}]));
    // Every missing field in one answer, not one per round trip.
    let res = app.post(login, None, json!({})).await;
    res.assert_problem(422, "validation_failed");
    let fields: Vec<&str> =
        res.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "password"]);
    let admin = app.admin().await;
    let res = app.post("/api/v1/users", Some(&admin), json!({"email": "x@acme.example", "rank": 1})).await;
    res.assert_problem(422, "validation_failed");
    let fields: Vec<&str> =
        res.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["rank", "name", "password"]);
    let res = app.post(login, None, json!({"email": 42, "password": "x"})).await;
    res.assert_problem(422, "validation_failed");
    let res = app.post(login, None, json!({"email": "a@b.example", "password": "x".repeat(70 * 1024)})).await;
    res.assert_problem(413, "payload_too_large");
}

/// A body the route does not read (or that never comes) ends the connection
/// after the answer, instead of the server waiting for it without limit.
async fn an_unread_body_closes_the_connection(app: TestApp) {
    let started = std::time::Instant::now();
    // Chunked, and not one chunk follows.
    let answer = app.raw("GET /healthz HTTP/1.1\r\nHost: actas\r\nTransfer-Encoding: chunked\r\n\r\n".into()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the server kept the connection open");
}

async fn unknown_routes_and_wrong_methods(app: TestApp) {
    let res = app.get("/api/v1/nothing-here", None).await;
    res.assert_problem(404, "not_found");
    let res = app.get("/", None).await;
    res.assert_problem(404, "not_found");
    // A stray trailing slash is named, with the path that exists.
    let res = app.get("/api/v1/me/", None).await;
    res.assert_problem(404, "not_found");
    assert!(res.body["detail"].as_str().unwrap().ends_with("did you mean /api/v1/me (without the trailing slash)?"));
    let res = app.send(Method::POST, "/oauth/introspect/", None, None).await;
    assert_eq!(res.status.as_u16(), 404);
    assert!(res.text.contains("did you mean /oauth/introspect"), "{}", res.text);
    assert!(!app.get("/api/v1/nothing/", None).await.text.contains("did you mean"));
    let res = app.delete("/api/v1/auth/login", None).await;
    res.assert_problem(405, "method_not_allowed");
    assert_eq!(res.header("allow").as_deref(), Some("POST"));
    let res = app.send(Method::PUT, &format!("/api/v1/users/{}", uuid::Uuid::now_v7()), None, None).await;
    res.assert_problem(405, "method_not_allowed");
    assert_eq!(res.header("allow").as_deref(), Some("GET, HEAD, DELETE, PATCH"));
    let res = app.send(Method::OPTIONS, "/api/v1/users", None, None).await;
    assert_eq!(res.status.as_u16(), 204);
    assert_eq!(res.header("allow").as_deref(), Some("GET, HEAD, POST"));
    // HEAD is GET without the body.
    let head = app.send(Method::HEAD, "/healthz", None, None).await;
    assert_eq!(head.status.as_u16(), 200);
    assert!(head.text.is_empty(), "{}", head.text);
    app.send(Method::HEAD, "/api/v1/users", None, None).await.assert_status(401);
    // The documentation answers 405 to other methods too.
    for path in ["/api-docs/openapi.json", "/swagger-ui/"] {
        let res = app.send(Method::POST, path, None, None).await;
        res.assert_problem(405, "method_not_allowed");
        assert_eq!(res.header("allow").as_deref(), Some("GET, HEAD"), "{path}");
    }
}

async fn invalid_ids_in_paths_are_not_found(app: TestApp) {
    let admin = app.admin().await;
    let res = app.get("/api/v1/users/not-a-uuid", Some(&admin)).await;
    res.assert_problem(404, "not_found");
    let res = app.get("/api/v1/organizations/123", Some(&admin)).await;
    res.assert_problem(404, "not_found");
}

async fn authentication_comes_before_everything_else(app: TestApp) {
    app.get("/api/v1/users", None).await.assert_problem(401, "unauthorized");
    app.post("/api/v1/users", None, json!({})).await.assert_problem(401, "unauthorized");
    app.send(Method::GET, "/api/v1/users", Some("a.b.c"), None).await.assert_problem(401, "unauthorized");
}

async fn an_ended_session_is_401_even_with_a_bad_body_or_path(app: TestApp) {
    let token = app.admin().await;
    app.send(Method::POST, "/api/v1/auth/logout", Some(&token), None).await.assert_status(204);
    let res =
        app.send(Method::POST, "/api/v1/users", Some(&token), Some(("application/json", b"{not json".to_vec()))).await;
    res.assert_problem(401, "unauthorized");
    app.send(Method::POST, "/api/v1/users", Some(&token), Some(("text/plain", b"x".to_vec())))
        .await
        .assert_problem(401, "unauthorized");
    app.get("/api/v1/users/not-a-uuid", Some(&token)).await.assert_problem(401, "unauthorized");
    app.get("/api/v1/users?limit=0", Some(&token)).await.assert_problem(401, "unauthorized");
}

async fn health_and_readiness(app: TestApp) {
    assert_eq!(app.get("/healthz", None).await.assert_status(200)["status"], "ok");
    assert_eq!(app.get("/readyz", None).await.assert_status(200)["status"], "ready");
}

async fn swagger_ui_and_the_served_document(app: TestApp) {
    let ui = app.get("/swagger-ui/", None).await;
    assert_eq!(ui.status.as_u16(), 200);
    assert!(ui.text.contains("swagger-ui"), "{}", &ui.text[..ui.text.len().min(200)]);
    for res in [&ui, &app.get("/api/v1/me", None).await] {
        assert_eq!(res.header("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(res.header("content-security-policy").as_deref(), Some("frame-ancestors 'none'"));
        assert_eq!(res.header("x-content-type-options").as_deref(), Some("nosniff"));
    }
    // Swagger UI's files may be cached; nothing else.
    assert_eq!(ui.header("cache-control").as_deref(), Some("public, max-age=3600"));
    assert_eq!(app.get("/api/v1/me", None).await.header("cache-control").as_deref(), Some("no-store"));
    let bare = app.get("/swagger-ui", None).await;
    assert_eq!(bare.status.as_u16(), 308);
    assert_eq!(bare.header("location").as_deref(), Some("/swagger-ui/"));
    let with_query = app.get("/swagger-ui?urls.primaryName=actas", None).await;
    assert_eq!(with_query.header("location").as_deref(), Some("/swagger-ui/?urls.primaryName=actas"));
    let served = app.get("/api-docs/openapi.json", None).await;
    let committed: serde_json::Value = serde_json::from_str(include_str!("../openapi/openapi.json")).unwrap();
    assert_eq!(served.assert_status(200), &committed);
}

async fn input_the_database_cannot_hold_is_refused_at_the_edge(app: TestApp) {
    let admin = app.admin().await;
    // PostgreSQL cannot store or compare NUL characters: 422 on every backend, never 500.
    let res =
        app.post("/api/v1/auth/login", None, json!({"email": "a\u{0}@x.example", "password": "whatever!!"})).await;
    res.assert_problem(422, "validation_failed");
    let res = app.get("/api/v1/users?q=a%00b", Some(&admin)).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "q");
    let org = app.owner_org_id(&admin).await;
    let res = app.post("/api/v1/users", Some(&admin), json!({"email": "n@x.example", "name": "N\u{0}", "organization_id": org, "role": "member", "password": "long enough pw"})).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "name", "the error names the field with the NUL");
    // A JSON array is not an object, even where serde would read one.
    let res = app.post("/api/v1/auth/login", None, json!(["admin@actas.test", "x"])).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["message"], "must be a JSON object");
    assert!(!res.text.contains("struct"), "Rust type names leaked: {}", res.text);
    // However deep the array.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes();
    let res = app.send(Method::POST, "/api/v1/auth/login", None, Some(("application/json", deep))).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["message"], "must be a JSON object");
}

async fn query_errors_name_the_parameter_and_empty_means_absent(app: TestApp) {
    let admin = app.admin().await;
    for (query, field) in [
        ("organization_id=xyz", "organization_id"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=1&limit=2", "limit"),
    ] {
        let res = app.get(&format!("/api/v1/users?{query}"), Some(&admin)).await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], field, "{query}: {}", res.text);
    }
    let res = app.get("/api/v1/impersonations?status=bogus", Some(&admin)).await;
    assert_eq!(res.body["errors"][0]["field"], "status", "{}", res.text);
    app.get("/api/v1/impersonations?status=&limit=&cursor=", Some(&admin)).await.assert_status(200);
    app.get("/api/v1/users?q=&organization_id=", Some(&admin)).await.assert_status(200);
    // A cursor belongs to its list.
    let org = app.owner_org_id(&admin).await;
    app.create_user(&admin, "second@owner.example", org, "member").await;
    let users = app.get("/api/v1/users?limit=1", Some(&admin)).await;
    let cursor = users.assert_status(200)["next_cursor"].as_str().unwrap().to_owned();
    app.get(&format!("/api/v1/users?limit=1&cursor={cursor}"), Some(&admin)).await.assert_status(200);
    let foreign = app.get(&format!("/api/v1/impersonations?cursor={cursor}"), Some(&admin)).await;
    foreign.assert_problem(422, "validation_failed");
    assert_eq!(foreign.body["errors"][0]["field"], "cursor");
    // An unknown parameter is refused: a mistyped filter must not silently list everything.
    for (path, name) in [("/api/v1/users?nope=1", "nope"), ("/api/v1/audit/events?session=x", "session")] {
        let res = app.get(path, Some(&admin)).await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], name);
        assert_eq!(res.body["errors"][0]["message"], "is not a known parameter");
    }
}

mod contract {
    use super::*;
    backend_tests!(
        an_unread_body_closes_the_connection,
        input_the_database_cannot_hold_is_refused_at_the_edge,
        query_errors_name_the_parameter_and_empty_means_absent,
        malformed_bodies_get_precise_problems,
        unknown_routes_and_wrong_methods,
        invalid_ids_in_paths_are_not_found,
        authentication_comes_before_everything_else,
        an_ended_session_is_401_even_with_a_bad_body_or_path,
        health_and_readiness,
        swagger_ui_and_the_served_document,
    );
}

async fn readiness_fails_when_the_database_cannot_answer(app: TestApp) {
    app.sql("ALTER TABLE organizations RENAME TO organizations_moved");
    let res = app.get("/readyz", None).await;
    res.assert_problem(503, "service_unavailable");
    assert!(!res.text.contains("organizations"), "internal detail leaked: {}", res.text);
    assert_eq!(app.get("/healthz", None).await.assert_status(200)["status"], "ok");
    // Every table and column counts, not only the first one looked at (an
    // older backup restored, a migration undone by hand).
    app.sql("ALTER TABLE organizations_moved RENAME TO organizations");
    app.get("/readyz", None).await.assert_status(200);
    app.sql("ALTER TABLE users RENAME TO users_moved");
    app.get("/readyz", None).await.assert_problem(503, "service_unavailable");
    app.sql("ALTER TABLE users_moved RENAME TO users");
    app.sql("ALTER TABLE audit_chain_heads RENAME COLUMN hash TO hash_moved");
    app.get("/readyz", None).await.assert_problem(503, "service_unavailable");
    app.sql("ALTER TABLE audit_chain_heads RENAME COLUMN hash_moved TO hash");
    app.get("/readyz", None).await.assert_status(200);
    // A migration that changed data only: its record is what tells.
    app.sql(
        "DELETE FROM __diesel_schema_migrations WHERE version = (SELECT MAX(version) FROM __diesel_schema_migrations)",
    );
    app.get("/readyz", None).await.assert_problem(503, "service_unavailable");
}

backend_tests!(readiness_fails_when_the_database_cannot_answer);
