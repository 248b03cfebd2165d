//! Standards (RFC 8693, 7662, 7009, 7517/8037, 8414) and token hardening.

mod common;

use awc::http::Method;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Backend, Response, TestApp, World, ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const USER_ID: &str = "urn:actas:params:oauth:token-type:user-id";

async fn form(app: &TestApp, path: &str, bearer: Option<&str>, fields: &[(&str, &str)]) -> Response {
    let body = serde_urlencoded::to_string(fields).unwrap();
    app.send(Method::POST, path, bearer, Some(("application/x-www-form-urlencoded", body.into_bytes()))).await
}

async fn exchange(app: &TestApp, actor: &str, target: Uuid, password: &str) -> Response {
    let target = target.to_string();
    let fields = [
        ("grant_type", EXCHANGE),
        ("actor_token", actor),
        ("actor_token_type", ACCESS),
        ("subject_token", target.as_str()),
        ("subject_token_type", USER_ID),
        ("password", password),
        ("reason", "Ticket #9"),
    ];
    form(app, "/oauth/token", None, &fields).await
}

#[track_caller]
fn assert_oauth_error(res: &Response, status: u16, error: &str, code: &str) {
    assert_eq!(res.status.as_u16(), status, "{}", res.text);
    assert_eq!(res.header("content-type").as_deref(), Some("application/json"), "{}", res.text);
    assert_eq!(res.body["error"], error, "{}", res.text);
    assert_eq!(res.body["code"], code, "{}", res.text);
    assert!(res.body["error_description"].is_string());
}

async fn with_consent(app: &TestApp) -> World {
    let w = app.world().await;
    app.put("/api/v1/me/impersonation-consent", Some(&w.acme_member.1), json!({"duration_hours": 2}))
        .await
        .assert_status(200);
    w
}

/// Verifies a token with jwt-compact (not our JWT code) using only the JWKS.
fn verify_with_jwks(jwks: &Value, token: &str) -> Value {
    use jwt_compact::alg::Ed25519;
    use jwt_compact::jwk::JsonWebKey;
    use jwt_compact::{AlgorithmExt, UntrustedToken};
    let untrusted = UntrustedToken::new(token).unwrap();
    let kid = untrusted.header().key_id.clone().expect("tokens name their key");
    let jwk_json =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("the kid is published");
    let jwk: JsonWebKey<'_> = serde_json::from_value(jwk_json.clone()).unwrap();
    let key = <Ed25519 as jwt_compact::Algorithm>::VerifyingKey::try_from(&jwk).unwrap();
    let checked = Ed25519.validator::<Value>(&key).validate(&untrusted).expect("signature verifies with the JWKS key");
    checked.claims().custom.clone()
}

async fn jwks_publishes_keys_that_verify_our_tokens_independently(app: TestApp) {
    let w = with_consent(&app).await;
    let jwks = app.get("/.well-known/jwks.json", None).await.assert_status(200).clone();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
    );
    assert_eq!(key["kid"], app.state.keys.current_kid());
    assert!(key.get("d").is_none(), "the private key must never be published");
    let login = app.admin().await;
    assert_eq!(verify_with_jwks(&jwks, &login)["sub"], common::claims(&login)["sub"]);
    let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let token = res.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    let verified = verify_with_jwks(&jwks, &token);
    assert_eq!(verified["sub"], w.acme_member.0.to_string());
    assert_eq!(verified["act"]["email"], ADMIN_EMAIL);
    // A changed payload does not verify.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut forged = common::claims(&token);
    forged["sub"] = json!(w.acme_admin.0.to_string());
    parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = parts.join(".");
    let untrusted = jwt_compact::UntrustedToken::new(&tampered).unwrap();
    let jwk: jwt_compact::jwk::JsonWebKey<'_> = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let key = <jwt_compact::alg::Ed25519 as jwt_compact::Algorithm>::VerifyingKey::try_from(&jwk).unwrap();
    use jwt_compact::AlgorithmExt;
    assert!(jwt_compact::alg::Ed25519.validator::<Value>(&key).validate(&untrusted).is_err());
}

async fn server_metadata_points_at_every_endpoint(app: TestApp) {
    let res = app.get("/.well-known/oauth-authorization-server", None).await;
    let m = res.assert_status(200);
    assert_eq!(m["issuer"], "https://actas.test");
    assert_eq!(m["token_endpoint"], "https://actas.test/oauth/token");
    assert_eq!(m["introspection_endpoint"], "https://actas.test/oauth/introspect");
    assert_eq!(m["revocation_endpoint"], "https://actas.test/oauth/revoke");
    assert_eq!(m["jwks_uri"], "https://actas.test/.well-known/jwks.json");
    assert_eq!(m["grant_types_supported"], json!([EXCHANGE]));
    assert_eq!(m["subject_token_types_supported"], json!([USER_ID]));
    assert_eq!(m["actor_token_types_supported"], json!([ACCESS]));
    assert_eq!(m["issued_token_types_supported"], json!([ACCESS]));
    assert_eq!(m["response_types_supported"], json!([]));
    assert_eq!(m["scopes_supported"], json!(["actas", "impersonation"]));
    assert_eq!(m["token_endpoint_auth_methods_supported"], json!(["none"]));
    assert_eq!(m["introspection_endpoint_auth_methods_supported"], json!(["Bearer"]));
    assert_eq!(m["revocation_endpoint_auth_methods_supported"], json!(["none"]));
    assert_eq!(m["service_documentation"], "https://actas.test/swagger-ui/");
    // Public documents: verifiers may cache them for a while.
    assert_eq!(res.header("cache-control").as_deref(), Some("public, max-age=300"));
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.header("cache-control").as_deref(), Some("public, max-age=300"));
    // Everything else is never cached.
    assert_eq!(app.get("/healthz", None).await.header("cache-control").as_deref(), Some("no-store"));
}

async fn token_exchange_creates_an_impersonation_session(app: TestApp) {
    let w = with_consent(&app).await;
    let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let body = res.assert_status(200).clone();
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1800);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(res.header("pragma").as_deref(), Some("no-cache"));
    assert_eq!(body["scope"], "actas impersonation");
    let token = body["access_token"].as_str().unwrap();
    let c = common::claims(token);
    assert_eq!(c["sub"], w.acme_member.0.to_string());
    let me = app.get("/api/v1/me", Some(token)).await;
    assert_eq!(me.assert_status(200)["impersonation"]["session_id"], c["sid"]);
    let session = app.get(&format!("/api/v1/impersonations/{}", c["sid"].as_str().unwrap()), Some(&w.admin)).await;
    assert_eq!(session.assert_status(200)["reason"], "Ticket #9");
    assert_eq!(session.body["status"], "ongoing");
}

async fn token_exchange_refusals_follow_rfc_6749(app: TestApp) {
    let w = with_consent(&app).await;
    let target = w.acme_member.0.to_string();
    let base = |grant: &'static str| {
        vec![
            ("grant_type", grant.to_owned()),
            ("actor_token", w.admin.clone()),
            ("actor_token_type", ACCESS.to_owned()),
            ("subject_token", target.clone()),
            ("subject_token_type", USER_ID.to_owned()),
            ("password", ADMIN_PASSWORD.to_owned()),
        ]
    };
    let send = |fields: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            form(app, "/oauth/token", None, &borrowed).await
        }
    };
    assert_oauth_error(&send(base("password")).await, 400, "unsupported_grant_type", "unsupported_grant_type");
    let mut missing = base(EXCHANGE);
    missing.retain(|(k, _)| *k != "password");
    assert_oauth_error(&send(missing).await, 400, "invalid_request", "validation_failed");
    let mut wrong_type = base(EXCHANGE);
    wrong_type[4].1 = ACCESS.to_owned();
    assert_oauth_error(&send(wrong_type).await, 400, "invalid_request", "validation_failed");
    let mut wrong_actor_type = base(EXCHANGE);
    wrong_actor_type[2].1 = "urn:ietf:params:oauth:token-type:id_token".to_owned();
    assert_oauth_error(&send(wrong_actor_type).await, 400, "invalid_request", "validation_failed");
    for name in ["actor_token", "actor_token_type", "subject_token", "subject_token_type", "grant_type"] {
        let mut missing = base(EXCHANGE);
        missing.retain(|(k, _)| *k != name);
        let res = send(missing).await;
        assert_oauth_error(&res, 400, "invalid_request", "validation_failed");
        assert!(res.body["error_description"].as_str().unwrap().contains(name), "{}", res.text);
    }
    let with_extra = |name: &'static str, value: &str| {
        let mut fields = base(EXCHANGE);
        fields.push((name, value.to_owned()));
        fields
    };
    let elsewhere = send(with_extra("audience", "https://other.example")).await;
    assert_oauth_error(&elsewhere, 400, "invalid_target", "invalid_target");
    assert_oauth_error(
        &send(with_extra("resource", "https://other.example/api")).await,
        400,
        "invalid_target",
        "invalid_target",
    );
    assert_oauth_error(&send(with_extra("scope", "actas admin")).await, 400, "invalid_scope", "invalid_scope");
    // RFC 6749 §3.1: empty parameters count as omitted; scopes may be spaced freely.
    let mut lenient = base(EXCHANGE);
    lenient.extend([("audience", String::new()), ("resource", String::new()), ("requested_token_type", String::new())]);
    lenient.push(("scope", "actas  impersonation".to_owned()));
    lenient[5].1 = "wrong password".to_owned();
    assert_oauth_error(&send(lenient).await, 400, "invalid_grant", "reauthentication_failed");
    // RFC 8693 §2.1: several audiences and resources may be named, all of them this service.
    let (audience, issuer) = (app.state.config.audience.clone(), app.state.config.issuer.clone());
    let mut several = base(EXCHANGE);
    several.extend([("audience", audience.clone()), ("audience", audience.clone())]);
    several.extend([("resource", issuer.clone()), ("resource", audience.clone())]);
    several[5].1 = "wrong password".to_owned();
    assert_oauth_error(&send(several.clone()).await, 400, "invalid_grant", "reauthentication_failed");
    several.push(("audience", "https://other.example".to_owned()));
    assert_oauth_error(&send(several).await, 400, "invalid_target", "invalid_target");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM impersonation_sessions"), 0, "a refused exchange starts nothing");
    let mut twice = base(EXCHANGE);
    twice.push(("password", "again".to_owned()));
    assert_oauth_error(&send(twice).await, 400, "invalid_request", "validation_failed");
    // An echoed name keeps to the characters RFC 6749 §5.2 allows in a description.
    let odd = format!("pa\"ram\\ü{}", "x".repeat(100));
    let res = form(&app, "/oauth/token", None, &[("grant_type", EXCHANGE), (&odd, "1"), (&odd, "2")]).await;
    assert_oauth_error(&res, 400, "invalid_request", "validation_failed");
    let description = res.body["error_description"].as_str().unwrap();
    let allowed = |c: char| matches!(c, ' '..='!' | '#'..='[' | ']'..='~');
    assert!(description.chars().all(allowed) && description.len() < 150, "{description}");
    assert!(description.contains("pa'ram/?xxx"), "{description}");
    let json_body = app.post("/oauth/token", None, json!({"grant_type": EXCHANGE})).await;
    assert_oauth_error(&json_body, 400, "invalid_request", "unsupported_media_type");
    let mut oversized = base(EXCHANGE);
    oversized.push(("reason", "x".repeat(70 * 1024)));
    assert_oauth_error(&send(oversized).await, 413, "invalid_request", "payload_too_large");
    let mut bad_actor = base(EXCHANGE);
    bad_actor[1].1 = "not.a.token".to_owned();
    let bad_actor = send(bad_actor).await;
    assert_oauth_error(&bad_actor, 400, "invalid_request", "unauthorized");
    assert!(bad_actor.body["error_description"].as_str().unwrap().starts_with("actor_token: "), "{}", bad_actor.text);
    // The request itself needs no authentication: no challenge to answer.
    assert!(bad_actor.header("www-authenticate").is_none());
    // The rules of SPEC §2, unchanged.
    assert_oauth_error(
        &exchange(&app, &w.admin, w.acme_eu_member.0, ADMIN_PASSWORD).await,
        400,
        "invalid_request",
        "consent_required",
    );
    assert_oauth_error(
        &exchange(&app, &w.acme_admin.1, w.acme_member.0, PASSWORD).await,
        400,
        "invalid_request",
        "not_permitted",
    );
    // Yourself; a super_admin; a suspended user.
    let own_id = app.get("/api/v1/me", Some(&w.admin)).await.body["user"]["id"].as_str().unwrap().parse().unwrap();
    assert_oauth_error(
        &exchange(&app, &w.admin, own_id, ADMIN_PASSWORD).await,
        400,
        "invalid_request",
        "self_impersonation",
    );
    let boss = app.create_user(&w.admin, "boss@owner.example", w.owner_org, "super_admin").await;
    let boss_token = app.login("boss@owner.example", PASSWORD).await;
    app.put("/api/v1/me/impersonation-consent", Some(&boss_token), json!({"duration_hours": 2}))
        .await
        .assert_status(200);
    assert_oauth_error(
        &exchange(&app, &w.admin, boss, ADMIN_PASSWORD).await,
        400,
        "invalid_request",
        "target_privileged",
    );
    app.put("/api/v1/me/impersonation-consent", Some(&w.globex_member.1), json!({"duration_hours": 2}))
        .await
        .assert_status(200);
    app.patch(&format!("/api/v1/users/{}", w.globex_member.0), Some(&w.admin), json!({"status": "suspended"}))
        .await
        .assert_status(200);
    assert_oauth_error(
        &exchange(&app, &w.admin, w.globex_member.0, ADMIN_PASSWORD).await,
        400,
        "invalid_request",
        "target_inactive",
    );
    let (_, impersonation) = {
        let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
        ((), res.assert_status(200)["access_token"].as_str().unwrap().to_owned())
    };
    assert_oauth_error(
        &exchange(&app, &impersonation, w.acme_member.0, PASSWORD).await,
        403,
        "invalid_request",
        "chained_impersonation",
    );
    // The admin's own token as actor, but an impersonation token as bearer:
    // refused before any password check, so none can run in the audited request.
    let target = w.acme_member.0.to_string();
    let fields = [
        ("grant_type", EXCHANGE),
        ("actor_token", w.admin.as_str()),
        ("actor_token_type", ACCESS),
        ("subject_token", target.as_str()),
        ("subject_token_type", USER_ID),
        ("password", ADMIN_PASSWORD),
    ];
    let with_bearer = form(&app, "/oauth/token", Some(&impersonation), &fields).await;
    assert_oauth_error(&with_bearer, 403, "invalid_request", "impersonation-restricted");
    for _ in 0..5 {
        assert_oauth_error(
            &exchange(&app, &w.admin, w.acme_member.0, "wrong password").await,
            400,
            "invalid_grant",
            "reauthentication_failed",
        );
    }
    let limited = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    assert_oauth_error(&limited, 429, "invalid_request", "rate_limited");
    assert!(limited.header("retry-after").is_some());
}

async fn introspection_says_active_only_while_the_session_lives(app: TestApp) {
    let w = with_consent(&app).await;
    let caller = app.login("sam@owner.example", PASSWORD).await;
    let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let token = res.assert_status(200)["access_token"].as_str().unwrap().to_owned();

    let unauthenticated = form(&app, "/oauth/introspect", None, &[("token", &token)]).await;
    assert_oauth_error(&unauthenticated, 401, "invalid_token", "unauthorized");
    // No credentials at all: a bare challenge, no error code (RFC 6750 §3.1).
    assert_eq!(unauthenticated.header("www-authenticate").as_deref(), Some("Bearer"));
    let garbage = form(&app, "/oauth/introspect", Some("not-a-token"), &[("token", &token)]).await;
    assert!(garbage.header("www-authenticate").unwrap().contains(r#"error="invalid_token""#));

    let active =
        form(&app, "/oauth/introspect", Some(&caller), &[("token", &token), ("token_type_hint", "access_token")]).await;
    let a = active.assert_status(200).clone();
    let c = common::claims(&token);
    assert_eq!(a["active"], true);
    for field in ["sub", "sid", "exp", "iat", "iss", "aud", "client_id"] {
        assert_eq!(a[field], c[field], "{field}");
    }
    assert_eq!(a["act"], json!({"sub": c["act"]["sub"], "email": ADMIN_EMAIL}));
    assert_eq!((a["scope"].as_str(), a["token_type"].as_str()), (Some("actas impersonation"), Some("Bearer")));
    let login = form(&app, "/oauth/introspect", Some(&caller), &[("token", &w.admin)]).await;
    assert_eq!((login.body["active"].as_bool(), login.body.get("act").is_none()), (Some(true), true));

    // A token whose role changed is no longer active: it would name a stale role.
    let acme_admin = form(&app, "/oauth/introspect", Some(&caller), &[("token", &w.acme_admin.1)]).await;
    assert_eq!(acme_admin.assert_status(200)["role"], "admin");
    app.patch(&format!("/api/v1/users/{}", w.acme_admin.0), Some(&w.admin), json!({"role": "member"}))
        .await
        .assert_status(200);
    let demoted = form(&app, "/oauth/introspect", Some(&caller), &[("token", &w.acme_admin.1)]).await;
    assert_eq!(demoted.assert_status(200), &json!({"active": false}));

    let inactive = |res: &Response| assert_eq!(res.assert_status(200), &json!({"active": false}));
    inactive(&form(&app, "/oauth/introspect", Some(&caller), &[("token", "garbage")]).await);
    let foreign = actas::crypto::keys::SigningKeys::ephemeral();
    let forged = actas::crypto::tokens::TokenIssuer { keys: &foreign, issuer: "https://actas.test", audience: "actas" }
        .sign(actas::crypto::tokens::TokenRequest {
            subject: w.acme_member.0,
            session_id: c["sid"].as_str().unwrap().parse().unwrap(),
            organization_id: w.acme,
            role: actas::domain::types::Role::Member,
            actor: None,
            issued_at: time::OffsetDateTime::now_utc(),
            expires_at: time::OffsetDateTime::now_utc() + Duration::minutes(5),
        });
    inactive(&form(&app, "/oauth/introspect", Some(&caller), &[("token", &forged)]).await);
    // Stopped.
    app.send(
        Method::POST,
        &format!("/api/v1/impersonations/{}/stop", c["sid"].as_str().unwrap()),
        Some(&w.admin),
        None,
    )
    .await
    .assert_status(204);
    inactive(&form(&app, "/oauth/introspect", Some(&caller), &[("token", &token)]).await);
    // Revoked by consent withdrawal, and expired.
    let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let revoked = res.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    app.delete("/api/v1/me/impersonation-consent", Some(&w.acme_member.1)).await.assert_status(204);
    inactive(&form(&app, "/oauth/introspect", Some(&caller), &[("token", &revoked)]).await);
    app.put("/api/v1/me/impersonation-consent", Some(&w.acme_member.1), json!({"duration_hours": 2}))
        .await
        .assert_status(200);
    let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let expiring = res.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    app.state.clock.advance(Duration::minutes(31));
    let caller = app.login("sam@owner.example", PASSWORD).await;
    inactive(&form(&app, "/oauth/introspect", Some(&caller), &[("token", &expiring)]).await);
    assert_oauth_error(
        &form(&app, "/oauth/introspect", Some(&caller), &[]).await,
        400,
        "invalid_request",
        "validation_failed",
    );
}

async fn revocation_stops_sessions_and_always_answers_200(app: TestApp) {
    let w = with_consent(&app).await;
    let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let token = res.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    let sid = common::claims(&token)["sid"].as_str().unwrap().to_owned();
    let revoked = form(&app, "/oauth/revoke", None, &[("token", &token), ("token_type_hint", "access_token")]).await;
    assert_eq!(revoked.status.as_u16(), 200, "{}", revoked.text);
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    let view = app.get(&format!("/api/v1/impersonations/{sid}"), Some(&w.admin)).await;
    assert_eq!((view.body["status"].as_str(), view.body["end_reason"].as_str()), (Some("ended"), Some("stopped")));
    for junk in ["garbage", token.as_str(), "a.b.c"] {
        assert_eq!(form(&app, "/oauth/revoke", None, &[("token", junk)]).await.status.as_u16(), 200);
    }
    // An "Exit" clicked twice: revocations racing each other all answer 200.
    let again = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let token = again.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    let fields = [("token", token.as_str())];
    let revoking = (0..6).map(|_| form(&app, "/oauth/revoke", None, &fields));
    for res in futures_util::future::join_all(revoking).await {
        assert_eq!(res.status.as_u16(), 200, "{}", res.text);
    }
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    // A login token: logged out.
    let login = app.login("sam@owner.example", PASSWORD).await;
    form(&app, "/oauth/revoke", None, &[("token", &login)]).await;
    app.get("/api/v1/me", Some(&login)).await.assert_problem(401, "unauthorized");
    assert_oauth_error(&form(&app, "/oauth/revoke", None, &[]).await, 400, "invalid_request", "validation_failed");
}

async fn oauth_errors_never_pretend_success(app: TestApp) {
    let w = with_consent(&app).await;
    let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let token = res.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    // Wrong method and unknown endpoint: RFC 6749 bodies, the status kept.
    let get = app.get("/oauth/token", None).await;
    assert_oauth_error(&get, 405, "invalid_request", "method_not_allowed");
    assert_eq!(get.header("allow").as_deref(), Some("POST"));
    assert_oauth_error(&form(&app, "/oauth/nowhere", None, &[]).await, 404, "invalid_request", "not_found");
    // When the sessions cannot be read, revocation and introspection fail
    // loudly instead of answering "revoked" or "inactive".
    app.sql("ALTER TABLE impersonation_sessions RENAME TO impersonation_sessions_gone");
    let revoked = form(&app, "/oauth/revoke", None, &[("token", &token)]).await;
    assert_oauth_error(&revoked, 500, "server_error", "internal_error");
    let introspected = form(&app, "/oauth/introspect", Some(&w.admin), &[("token", &token)]).await;
    assert_oauth_error(&introspected, 500, "server_error", "internal_error");
    assert!(!introspected.text.contains("impersonation_sessions"), "internal detail leaked: {}", introspected.text);
    app.sql("ALTER TABLE impersonation_sessions_gone RENAME TO impersonation_sessions");
    let active = form(&app, "/oauth/introspect", Some(&w.admin), &[("token", &token)]).await;
    assert_eq!(active.assert_status(200)["active"], true, "the failed revocation revoked nothing");
}

/// Signs arbitrary header and claims with the service's own key.
fn sign_raw(app: &TestApp, mut header: Value, claims: &Value) -> String {
    header["alg"] = json!("EdDSA");
    let mut h: jsonwebtoken::Header = serde_json::from_value(header).unwrap();
    h.alg = jsonwebtoken::Algorithm::EdDSA;
    jsonwebtoken::encode(&h, claims, app.state.keys.encoding_key()).unwrap()
}

async fn hostile_tokens_are_refused_and_touch_nothing(app: TestApp) {
    let w = with_consent(&app).await;
    let res = exchange(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let genuine = res.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    let good = common::claims(&genuine);
    let kid = app.state.keys.current_kid().to_owned();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let with = |changes: Value| {
        let mut c = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let header = json!({"typ": "at+jwt", "kid": kid, "alg": "EdDSA"});
    let mut hostile: Vec<(&str, String)> = Vec::new();
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    hostile.push((
        "alg none",
        format!("{}.{}.", encode(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})), encode(&good)),
    ));
    let public = URL_SAFE_NO_PAD.decode(app.state.keys.jwks()[0].x.as_bytes()).unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    hostile.push((
        "HS256 keyed with the public key",
        jsonwebtoken::encode(&hs, &good, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap(),
    ));
    hostile.push((
        "HS256 keyed with the JWK x",
        jsonwebtoken::encode(
            &hs,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(app.state.keys.jwks()[0].x.as_bytes()),
        )
        .unwrap(),
    ));
    hostile.push(("unknown kid", sign_raw(&app, json!({"typ": "at+jwt", "kid": "nope"}), &good)));
    hostile.push(("no kid", sign_raw(&app, json!({"typ": "at+jwt"}), &good)));
    let foreign = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let foreign_key = jsonwebtoken::EncodingKey::from_ed_der(foreign.to_pkcs8_der().unwrap().as_bytes());
    let mut fh = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    fh.typ = Some("at+jwt".into());
    fh.kid = Some(kid.clone());
    hostile.push(("a foreign key's signature under our kid", jsonwebtoken::encode(&fh, &good, &foreign_key).unwrap()));
    hostile.push(("typ missing", sign_raw(&app, json!({"kid": kid}), &good)));
    hostile.push((
        "an unknown critical extension",
        sign_raw(&app, json!({"typ": "at+jwt", "kid": kid, "crit": ["exp"]}), &good),
    ));
    hostile.push(("typ JWT", sign_raw(&app, json!({"typ": "JWT", "kid": kid}), &good)));
    hostile.push(("wrong iss", sign_raw(&app, header.clone(), &with(json!({"iss": "https://evil.example"})))));
    hostile.push(("wrong aud", sign_raw(&app, header.clone(), &with(json!({"aud": "someone-else"})))));
    hostile.push(("exp in the past", sign_raw(&app, header.clone(), &with(json!({"exp": now - 120})))));
    hostile.push(("nbf in the future", sign_raw(&app, header.clone(), &with(json!({"nbf": now + 300})))));
    hostile.push(("iat in the future", sign_raw(&app, header.clone(), &with(json!({"iat": now + 300})))));
    hostile.push((
        "nested act",
        sign_raw(
            &app,
            header.clone(),
            &with(json!({"act": {"sub": good["act"]["sub"], "email": ADMIN_EMAIL, "act": {"sub": Uuid::now_v7()}}})),
        ),
    ));
    hostile.push(("payload edited after signing", {
        let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
        parts[1] = encode(&with(json!({"role": "super_admin"})));
        parts.join(".")
    }));
    let sessions_before = app.scalar("SELECT COUNT(*) AS n FROM impersonation_sessions WHERE ended_at IS NULL");
    for (what, token) in &hostile {
        let res = app.get("/api/v1/me", Some(token)).await;
        assert_eq!(res.status.as_u16(), 401, "{what}: {}", res.text);
        assert_eq!(res.body["code"], "unauthorized", "{what}");
        let introspected = form(&app, "/oauth/introspect", Some(&w.admin), &[("token", token)]).await;
        assert_eq!(introspected.assert_status(200), &json!({"active": false}), "{what}");
        assert_eq!(form(&app, "/oauth/revoke", None, &[("token", token)]).await.status.as_u16(), 200, "{what}");
        let as_caller = form(&app, "/oauth/introspect", Some(token), &[("token", &genuine)]).await;
        assert_oauth_error(&as_caller, 401, "invalid_token", "unauthorized");
    }
    // Nothing was touched: the genuine tokens still work, no session ended or began.
    app.get("/api/v1/me", Some(&genuine)).await.assert_status(200);
    app.get("/api/v1/me", Some(&w.admin)).await.assert_status(200);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM impersonation_sessions WHERE ended_at IS NULL"), sessions_before);
}

backend_tests!(
    jwks_publishes_keys_that_verify_our_tokens_independently,
    server_metadata_points_at_every_endpoint,
    token_exchange_creates_an_impersonation_session,
    token_exchange_refusals_follow_rfc_6749,
    introspection_says_active_only_while_the_session_lives,
    revocation_stops_sessions_and_always_answers_200,
    hostile_tokens_are_refused_and_touch_nothing,
    oauth_errors_never_pretend_success,
);

#[actix_web::test]
async fn rotated_keys_keep_verifying_until_removed() {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = std::env::temp_dir().join(format!("actas-keys-{}", Uuid::new_v4().simple()));
        let (oldest, old, old_public, new) =
            (dir.join("oldest.pem"), dir.join("old.pem"), dir.join("old.pub.pem"), dir.join("new.pem"));
        // A retired key may stay as its private file or be reduced to its public half.
        actas::crypto::keys::load_or_generate(&oldest).unwrap();
        let old_key = actas::crypto::keys::load_or_generate(&old).unwrap();
        let public_pem = old_key.verifying_key().to_public_key_pem(Default::default()).unwrap();
        std::fs::write(&old_public, public_pem).unwrap();
        actas::crypto::keys::load_or_generate(&new).unwrap();
        let previous = format!("{},{}", old_public.to_str().unwrap(), oldest.to_str().unwrap());
        let env = [("ACTAS_SIGNING_KEY_FILE", new.to_str().unwrap()), ("ACTAS_PREVIOUS_SIGNING_KEY_FILES", &previous)];
        let Some(app) = TestApp::with_env(backend, &env).await else { continue };
        let jwks = app.get("/.well-known/jwks.json", None).await.body;
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        let old_keys = actas::crypto::keys::SigningKeys::new(&old_key, &[]);
        assert_eq!(kids.len(), 3);
        assert_eq!(kids[..2], [app.state.keys.current_kid(), old_keys.current_kid()]);
        // New tokens use the new key; a token the old key signed still works.
        let token = app.admin().await;
        let c = common::claims(&token);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["kid"], app.state.keys.current_kid());
        let old_signed = jsonwebtoken::encode(
            &{
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
                h.typ = Some("at+jwt".into());
                h.kid = Some(old_keys.current_kid().to_owned());
                h
            },
            &c,
            old_keys.encoding_key(),
        )
        .unwrap();
        app.get("/api/v1/me", Some(&old_signed)).await.assert_status(200);
        let introspected = form(&app, "/oauth/introspect", Some(&token), &[("token", &old_signed)]).await;
        assert_eq!(introspected.body["active"], true);
        assert_eq!(verify_with_jwks(&jwks, &old_signed)["sub"], c["sub"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[actix_web::test]
async fn a_previous_key_file_that_is_no_key_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("actas-keys-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bogus = dir.join("bogus.pem");
    std::fs::write(&bogus, "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n").unwrap();
    let config = actas::config::Config::from_lookup(|name| match name {
        "ACTAS_PREVIOUS_SIGNING_KEY_FILES" => Some(bogus.to_str().unwrap().to_owned()),
        "ACTAS_DATA_DIR" => Some(dir.to_str().unwrap().to_owned()),
        _ => None,
    })
    .unwrap();
    let error = actas::server::load_keys(&config).err().expect("a bogus key file is refused").to_string();
    assert!(error.contains("bogus.pem") && error.contains("public key"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_web::test]
async fn spas_on_allowed_origins_get_cors_headers() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        // Configured as pasted from an address bar; matched as browsers send it.
        let env = [("ACTAS_CORS_ALLOWED_ORIGINS", "HTTPS://App.example.com/")];
        let Some(app) = TestApp::with_env(backend, &env).await else { continue };
        let preflight = |origin: &'static str, headers: &'static str| {
            let app = &app;
            async move {
                let mut asked = vec![("origin", origin), ("access-control-request-method", "GET")];
                if !headers.is_empty() {
                    asked.push(("access-control-request-headers", headers));
                }
                app.send_with(Method::OPTIONS, "/api/v1/me", None, None, &asked).await
            }
        };
        let allowed = "https://app.example.com";
        let asked = preflight(allowed, "authorization").await;
        assert_eq!(asked.status.as_u16(), 200, "{}", asked.text);
        assert_eq!(asked.header("access-control-allow-origin").as_deref(), Some(allowed));
        // Preflights are answered like any other request: traceable, hardened.
        assert!(asked.header("x-request-id").is_some());
        assert_eq!(asked.header("x-content-type-options").as_deref(), Some("nosniff"));
        let token = app.admin().await;
        let res = app
            .send_with(Method::GET, "/api/v1/me", Some(&token), None, &[("origin", "https://app.example.com")])
            .await;
        assert_eq!(res.header("access-control-allow-origin").as_deref(), Some("https://app.example.com"));
        let other =
            app.send_with(Method::GET, "/api/v1/me", Some(&token), None, &[("origin", "https://evil.example")]).await;
        assert!(other.header("access-control-allow-origin").is_none());
        // The headers an error carries are readable by the SPA's script.
        let origin = [("origin", allowed)];
        let wrong_method = app.send_with(Method::DELETE, "/api/v1/me", Some(&token), None, &origin).await;
        wrong_method.assert_problem(405, "method_not_allowed");
        let unauthenticated = app.send_with(Method::GET, "/api/v1/me", None, None, &origin).await;
        unauthenticated.assert_problem(401, "unauthorized");
        for (res, exposed) in [(wrong_method, "allow"), (unauthenticated, "www-authenticate")] {
            assert!(res.header(exposed).is_some());
            let list = res.header("access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
            assert!(list.split(',').any(|h| h.trim() == exposed), "{exposed} not in {list:?}");
        }
        // HEAD works wherever GET does, from a browser too.
        let head = [("origin", allowed), ("access-control-request-method", "HEAD")];
        let head = app.send_with(Method::OPTIONS, "/api/v1/me", None, None, &head).await;
        assert_eq!(head.status.as_u16(), 200, "{}", head.text);
        // Tracing headers an SPA's instrumentation adds are fine.
        let traced = preflight(allowed, "authorization, traceparent, x-request-id").await;
        assert_eq!(traced.status.as_u16(), 200, "{}", traced.text);
        // A preflight from an origin not allowed is refused as a problem that says why.
        let refused = preflight("https://evil.example", "").await;
        refused.assert_problem(400, "cors_refused");
        assert!(refused.body["detail"].as_str().unwrap().contains("ACTAS_CORS_ALLOWED_ORIGINS"));
        assert!(refused.header("x-request-id").is_some());
        // Seen by the app's script or not, a simple request is answered.
        assert_eq!(other.status.as_u16(), 200, "{}", other.text);
    }
}

#[actix_web::test]
async fn without_allowed_origins_a_preflight_says_what_to_configure() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::with_env(backend, &[]).await else { continue };
        let asked = [("origin", "https://app.example.com"), ("access-control-request-method", "POST")];
        let refused = app.send_with(Method::OPTIONS, "/api/v1/impersonations", None, None, &asked).await;
        refused.assert_problem(400, "cors_refused");
        assert!(refused.header("access-control-allow-origin").is_none());
        assert!(refused.body["detail"].as_str().unwrap().contains("ACTAS_CORS_ALLOWED_ORIGINS"));
        // Same-origin pages (Swagger UI) send an Origin too, and need no CORS.
        let token = app.admin().await;
        let origin = [("origin", "http://127.0.0.1:8080")];
        let login = serde_json::to_vec(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}));
        let res = app
            .send_with(Method::POST, "/api/v1/auth/login", None, Some(("application/json", login.unwrap())), &origin)
            .await;
        res.assert_status(200);
        app.send_with(Method::GET, "/api/v1/me", Some(&token), None, &origin).await.assert_status(200);
        // A plain OPTIONS (no preflight) still lists the methods.
        let options = app.send_with(Method::OPTIONS, "/api/v1/users", Some(&token), None, &origin).await;
        assert!(options.header("allow").is_some_and(|a| a.contains("POST")), "{}", options.text);
    }
}

#[actix_web::test]
async fn an_issuer_with_a_path_has_its_metadata_under_that_path() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let env = [("ACTAS_ISSUER", "https://example.com/tenant/actas/")];
        let Some(app) = TestApp::with_env(backend, &env).await else { continue };
        // RFC 8414 §3.1: the well-known segment goes between host and path.
        for path in [
            "/.well-known/oauth-authorization-server/tenant/actas",
            "/.well-known/oauth-authorization-server/tenant/actas/",
        ] {
            let m = app.get(path, None).await;
            let m = m.assert_status(200);
            assert_eq!(m["issuer"], "https://example.com/tenant/actas/");
            assert_eq!(m["token_endpoint"], "https://example.com/tenant/actas/oauth/token");
        }
        for other in ["/.well-known/oauth-authorization-server/tenant", "/.well-known/oauth-authorization-server/actas"]
        {
            app.get(other, None).await.assert_problem(404, "not_found");
        }
        // The plain location keeps working for clients that ignore the path.
        app.get("/.well-known/oauth-authorization-server", None).await.assert_status(200);
    }
    // Without a path in the issuer there is nothing under the well-known name.
    let app = TestApp::sqlite().await;
    app.get("/.well-known/oauth-authorization-server/actas", None).await.assert_problem(404, "not_found");
}
