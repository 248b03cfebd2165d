//! The committed OpenAPI document is the product's face: it must be exactly
//! what the server generates, and complete.

use std::process::Command;

use serde_json::Value;

fn generated() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_actas")).arg("openapi").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn committed_document_equals_what_actas_openapi_prints() {
    let committed: Value = serde_json::from_str(include_str!("../openapi/openapi.json")).unwrap();
    assert!(
        committed == generated(),
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}

#[test]
fn every_operation_is_documented_with_errors_examples_and_security() {
    let doc = generated();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    for required in [
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/organizations",
        "/api/v1/organizations/{id}",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/me/impersonation-consent",
        "/api/v1/impersonations",
        "/api/v1/impersonations/{id}",
        "/api/v1/impersonations/{id}/stop",
        "/api/v1/impersonations/{id}/audit-log",
        "/api/v1/me/impersonation-sessions",
        "/api/v1/me/impersonation-sessions/{id}/audit-log",
        "/api/v1/audit/events",
        "/api/v1/audit/verify",
        "/oauth/token",
        "/oauth/introspect",
        "/oauth/revoke",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/{issuer_path}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(required), "{required} is not documented");
    }
    let public = [
        "/api/v1/auth/login",
        "/healthz",
        "/readyz",
        "/metrics",
        "/oauth/token",
        "/oauth/revoke",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/{issuer_path}",
    ];
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            assert!(
                op["summary"].is_string() && op["description"].is_string(),
                "{name} lacks a summary or description"
            );
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                id.contains('_') || ["login", "logout", "metrics", "healthz", "readyz"].contains(&id),
                "{name}: operationId {id} does not say what it acts on"
            );
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is not unique");
            assert!(!op["tags"].as_array().unwrap().is_empty(), "{name} has no tag");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.keys().any(|s| s.starts_with('2')), "{name} has no success response");
            assert!(responses.contains_key("500"), "{name} does not document 500");
            if public.contains(&path.as_str()) {
                assert!(op.get("security").is_none(), "{name} should be public");
            } else {
                assert_eq!(op["security"][0]["bearer"], Value::Array(vec![]), "{name} lacks bearer security");
                assert!(responses.contains_key("401"), "{name} does not document 401");
            }
            let form = op["requestBody"]["content"].get("application/x-www-form-urlencoded").is_some();
            if form {
                // OAuth endpoints answer RFC 6749 errors, all under 400.
                assert!(responses.contains_key("400"), "{name} does not document 400");
            } else if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422", "503"] {
                    assert!(responses.contains_key(status), "{name} does not document {status}");
                }
            } else {
                // Any request carrying an impersonation token is logged with
                // its body, here too: a body too large or too slow, a log row
                // that cannot be written.
                for status in ["408", "413", "503"] {
                    assert!(responses.contains_key(status), "{name} does not document {status}");
                }
            }
            if path.contains('{') {
                assert!(responses.contains_key("404"), "{name} does not document 404");
            }
            // Every error shows what its body looks like: its own example or a shared response's.
            for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('4') || s.starts_with('5')) {
                let shared = response.get("$ref").is_some();
                let content = response["content"].as_object().into_iter().flat_map(|c| c.values());
                let exemplified =
                    content.into_iter().any(|c| c.get("example").is_some() || c.get("examples").is_some());
                assert!(shared || exemplified, "{name} {status} has no example");
            }
            // Every answer that says "try again later" says when.
            for status in ["429", "503"].into_iter().filter(|s| responses.contains_key(*s)) {
                let response = resolve(&doc, &responses[status]);
                assert!(response["headers"].get("Retry-After").is_some(), "{name} {status} lacks Retry-After");
            }
            // Every JSON success body shows an example: its own or its schema's.
            for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
                let Some(json) = response["content"].get("application/json") else { continue };
                let schema = resolve(&doc, &json["schema"]);
                let exemplified =
                    ["example", "examples"].iter().any(|k| json.get(k).is_some() || schema.get(k).is_some());
                assert!(exemplified, "{name} {status} has no example");
            }
            // Every parameter shows a value to try.
            for param in op["parameters"].as_array().into_iter().flatten() {
                let exemplified = param.get("example").is_some() || param["schema"].get("example").is_some();
                assert!(exemplified, "{name}: parameter {} has no example", param["name"]);
            }
            // A body says what it is for.
            if let Some(body) = op.get("requestBody") {
                assert!(body["description"].is_string(), "{name}: the request body has no description");
            }
            // A malformed id in a path is 404; 422 only where a body or query can be invalid.
            let has_query = op["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
            if op.get("requestBody").is_none() && !has_query {
                assert!(!responses.contains_key("422"), "{name} documents a 422 it cannot answer");
            }
        }
    }
    // Every schema and shared response carries an example or is built of ones that do.
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        // problem+json everywhere, RFC 6749 bodies for /oauth/*.
        let content = &response["content"];
        let example = if name.starts_with("OAuth") {
            &content["application/json"]["example"]
        } else {
            &content["application/problem+json"]["example"]
        };
        assert!(example["code"].is_string(), "{name} lacks an example");
    }
}

/// The object a `$ref` points to within the document, or the value itself.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).unwrap_or(&Value::Null),
        None => value,
    }
}

/// The audit trail finds tokens in the form bodies of these routes by path:
/// the paths it knows must be the routes there are.
#[test]
fn the_audit_trail_knows_the_oauth_routes() {
    use actas::http::controllers::oauth::{token_fields, REVOKE_PATH, TOKEN_PATH};
    let doc = generated();
    for path in [TOKEN_PATH, REVOKE_PATH] {
        assert!(doc["paths"][path]["post"].is_object(), "no POST {path}");
        assert!(token_fields(path).contains(&"actor_token"), "{path}");
    }
    assert!(token_fields("/oauth/introspect").is_empty());
}
