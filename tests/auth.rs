//! Login, logout, token checks and login rate limiting (SPEC §2 rule 5, §3).

mod common;

use std::time::Instant;

use actas::crypto::keys::SigningKeys;
use actas::crypto::tokens::{TokenIssuer, TokenRequest};
use actas::domain::types::Role;
use common::{Backend, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

async fn login_returns_an_eddsa_access_token_with_the_spec_claims(app: TestApp) {
    let res = app.try_login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let body = res.assert_status(200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["user"]["email"], ADMIN_EMAIL);
    assert_eq!(body["user"]["role"], "super_admin");
    assert!(body["user"].get("password_hash").is_none());
    let token = body["access_token"].as_str().unwrap();
    let header = common::jwt_part(token, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], app.state.keys.current_kid());
    let claims = common::jwt_part(token, 1);
    assert_eq!(claims["iss"], "https://actas.test");
    assert_eq!(claims["aud"], "actas");
    assert_eq!(claims["sub"], body["user"]["id"]);
    assert_eq!(claims["org"], body["user"]["organization_id"]);
    assert_eq!(claims["role"], "super_admin");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert!(claims["jti"].is_string() && claims["sid"].is_string());
    assert!(claims.get("act").is_none());
    // RFC 9068: the token says which client it was issued to, and its scope.
    assert_eq!((claims["client_id"].as_str(), claims["scope"].as_str()), (Some("actas"), Some("actas")));
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
}

async fn email_is_case_insensitive(app: TestApp) {
    app.try_login(&ADMIN_EMAIL.to_uppercase(), ADMIN_PASSWORD).await.assert_status(200);
}

async fn unknown_email_wrong_password_and_suspended_user_answer_alike(app: TestApp) {
    let admin = app.admin().await;
    let org = app.owner_org_id(&admin).await;
    let id = app.create_user(&admin, "sue@owner.example", org, "member").await;
    app.patch(&format!("/api/v1/users/{id}"), Some(&admin), json!({"status": "suspended"})).await.assert_status(200);

    let unknown = app.try_login("nobody@owner.example", PASSWORD).await;
    let wrong = app.try_login(ADMIN_EMAIL, "not the password at all").await;
    let suspended = app.try_login("sue@owner.example", PASSWORD).await;
    for res in [&unknown, &wrong, &suspended] {
        res.assert_problem(401, "invalid_credentials");
        assert_eq!(res.header("www-authenticate").as_deref(), Some("Bearer"), "every 401 names a scheme");
    }
    assert_eq!(unknown.body, wrong.body);
    assert_eq!(wrong.body, suspended.body);
    // Longer than any address can be: invalid, as documented, not "wrong".
    let long = format!("{}@owner.example", "a".repeat(250));
    let res = app.try_login(&long, PASSWORD).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "email");
}

async fn unknown_email_takes_as_long_as_a_wrong_password(app: TestApp) {
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for i in 0..7 {
        let started = Instant::now();
        app.try_login(&format!("ghost{i}@owner.example"), "not the password")
            .await
            .assert_problem(401, "invalid_credentials");
        unknown.push(started.elapsed());
        let started = Instant::now();
        app.try_login(ADMIN_EMAIL, "not the password").await.assert_problem(401, "invalid_credentials");
        wrong.push(started.elapsed());
    }
    unknown.sort();
    wrong.sort();
    let (u, w) = (unknown[3].as_secs_f64(), wrong[3].as_secs_f64());
    // Without the dummy hash an unknown email answers ~20x faster than a wrong
    // password; a factor of 3 either way leaves room for a busy machine.
    assert!(u > w / 3.0 && u < w * 3.0, "unknown email median {u:.4}s vs wrong password median {w:.4}s");
}

async fn logout_ends_the_session_at_once(app: TestApp) {
    let token = app.admin().await;
    let other = app.admin().await;
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    let res = app.send(awc::http::Method::POST, "/api/v1/auth/logout", Some(&token), None).await;
    res.assert_status(204);
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    // Only that session: another login of the same user goes on.
    app.get("/api/v1/me", Some(&other)).await.assert_status(200);
}

async fn missing_garbage_and_foreign_tokens_are_refused(app: TestApp) {
    let res = app.get("/api/v1/me", None).await;
    res.assert_problem(401, "unauthorized");
    assert_eq!(res.header("www-authenticate").as_deref(), Some("Bearer"));
    let res = app.get("/api/v1/me", Some("garbage")).await;
    res.assert_problem(401, "unauthorized");
    assert!(res.header("www-authenticate").unwrap().contains("invalid_token"));
    let res = app.send(awc::http::Method::GET, "/api/v1/me", None, None).await;
    res.assert_problem(401, "unauthorized");
    // "Bearer" pasted into Swagger UI's Authorize, which adds it again: said so.
    let token = app.admin().await;
    let res = app.get("/api/v1/me", Some(&format!("Bearer {token}"))).await;
    res.assert_problem(401, "unauthorized");
    assert!(res.body["detail"].as_str().unwrap().contains("\"Bearer\" appears twice"), "{}", res.text);

    // A well-formed token for a live session, signed by a key that is not ours.
    let claims = common::jwt_part(&token, 1);
    let foreign = SigningKeys::ephemeral();
    let now = OffsetDateTime::now_utc();
    let forged = TokenIssuer { keys: &foreign, issuer: "https://actas.test", audience: "actas" }.sign(TokenRequest {
        subject: claims["sub"].as_str().unwrap().parse().unwrap(),
        session_id: claims["sid"].as_str().unwrap().parse().unwrap(),
        organization_id: claims["org"].as_str().unwrap().parse().unwrap(),
        role: Role::SuperAdmin,
        actor: None,
        issued_at: now,
        expires_at: now + Duration::minutes(5),
    });
    app.get("/api/v1/me", Some(&forged)).await.assert_problem(401, "unauthorized");
    // Our key, but a session that does not exist.
    let unknown_session = app.state.tokens().sign(TokenRequest {
        subject: claims["sub"].as_str().unwrap().parse().unwrap(),
        session_id: Uuid::now_v7(),
        organization_id: claims["org"].as_str().unwrap().parse().unwrap(),
        role: Role::SuperAdmin,
        actor: None,
        issued_at: now,
        expires_at: now + Duration::minutes(5),
    });
    app.get("/api/v1/me", Some(&unknown_session)).await.assert_problem(401, "unauthorized");
}

async fn tokens_expire_with_their_session(app: TestApp) {
    let token = app.admin().await;
    app.state.clock.advance(Duration::minutes(59));
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    app.state.clock.advance(Duration::minutes(2));
    let res = app.get("/api/v1/me", Some(&token)).await;
    res.assert_problem(401, "unauthorized");
}

async fn failed_logins_are_limited_per_email(app: TestApp) {
    for _ in 0..5 {
        app.try_login(ADMIN_EMAIL, "wrong password!").await.assert_problem(401, "invalid_credentials");
    }
    // Locked: even the right password is refused until the window passes.
    let res = app.try_login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    res.assert_problem(429, "rate_limited");
    let retry_after: i64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry_after), "Retry-After {retry_after}");
    app.state.clock.advance(Duration::seconds(retry_after));
    app.try_login(ADMIN_EMAIL, ADMIN_PASSWORD).await.assert_status(200);
}

async fn failed_logins_are_limited_per_ip(app: TestApp) {
    for i in 0..5 {
        app.try_login(&format!("nobody{i}@owner.example"), "wrong password!")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let res = app.try_login("someone-else@owner.example", "wrong password!").await;
    res.assert_problem(429, "rate_limited");
    assert!(res.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)));
}

async fn a_successful_login_forgives_earlier_failures(app: TestApp) {
    for _ in 0..4 {
        app.try_login(ADMIN_EMAIL, "wrong password!").await.assert_problem(401, "invalid_credentials");
    }
    app.admin().await;
    // The per-IP window still counts the four failures: one more is allowed.
    app.try_login(ADMIN_EMAIL, "wrong password!").await.assert_problem(401, "invalid_credentials");
    app.try_login(ADMIN_EMAIL, "wrong password!").await.assert_problem(429, "rate_limited");
}

async fn concurrent_right_passwords_are_never_taken_for_failures(app: TestApp) {
    // An office behind one address logging in at nine: twelve people, one IP.
    let admin = app.admin().await;
    let org = app.create_org(&admin, "Office", None).await;
    let emails: Vec<String> = (0..12).map(|i| format!("clerk{i}@office.example")).collect();
    for email in &emails {
        app.create_user(&admin, email, org, "member").await;
    }
    let logins = emails.iter().map(|email| app.try_login(email, PASSWORD));
    let results = futures_util::future::join_all(logins).await;
    for res in &results {
        res.assert_status(200);
    }
    // The same account from several tabs at once.
    let tabs = (0..8).map(|_| app.try_login(ADMIN_EMAIL, ADMIN_PASSWORD));
    for res in futures_util::future::join_all(tabs).await {
        res.assert_status(200);
    }
    // And guesses still stop at the limit afterwards.
    for _ in 0..5 {
        app.try_login(ADMIN_EMAIL, "wrong password!").await.assert_problem(401, "invalid_credentials");
    }
    app.try_login(ADMIN_EMAIL, ADMIN_PASSWORD).await.assert_problem(429, "rate_limited");
}

async fn concurrent_guesses_cannot_slip_past_the_limit(app: TestApp) {
    let guesses = (0..12).map(|_| app.try_login(ADMIN_EMAIL, "wrong password!"));
    let results = futures_util::future::join_all(guesses).await;
    let checked = results.iter().filter(|r| r.status.as_u16() == 401).count();
    assert!((1..=5).contains(&checked), "{checked} concurrent guesses were checked, limit is 5");
    assert!(results.iter().all(|r| matches!(r.status.as_u16(), 401 | 429)));
}

backend_tests!(
    login_returns_an_eddsa_access_token_with_the_spec_claims,
    email_is_case_insensitive,
    unknown_email_wrong_password_and_suspended_user_answer_alike,
    logout_ends_the_session_at_once,
    missing_garbage_and_foreign_tokens_are_refused,
    tokens_expire_with_their_session,
    failed_logins_are_limited_per_email,
    failed_logins_are_limited_per_ip,
    a_successful_login_forgives_earlier_failures,
    concurrent_guesses_cannot_slip_past_the_limit,
    concurrent_right_passwords_are_never_taken_for_failures,
);

#[actix_web::test]
async fn login_timing_does_not_reveal_unknown_emails() {
    // Generous limits so that the measurement is not cut short by rate limiting.
    let env = [("ACTAS_RATE_LIMIT_MAX_FAILURES", "1000")];
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::with_env(backend, &env).await else { continue };
        unknown_email_takes_as_long_as_a_wrong_password(app).await;
    }
}

async fn tokens_must_be_access_tokens_for_their_own_session(app: TestApp) {
    let token = app.admin().await;
    let claims = common::jwt_part(&token, 1);
    let now = OffsetDateTime::now_utc();
    let sub: Uuid = claims["sub"].as_str().unwrap().parse().unwrap();
    let sid: Uuid = claims["sid"].as_str().unwrap().parse().unwrap();
    let org: Uuid = claims["org"].as_str().unwrap().parse().unwrap();
    let request = |subject: Uuid, actor: Option<actas::crypto::tokens::ActorClaim>| TokenRequest {
        subject,
        session_id: sid,
        organization_id: org,
        role: Role::SuperAdmin,
        actor,
        issued_at: now,
        expires_at: now + Duration::minutes(5),
    };
    // Our key and a live session, but `typ` is not at+jwt.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(app.state.keys.current_kid().to_owned());
    header.typ = Some("JWT".into());
    let plain_jwt = jsonwebtoken::encode(&header, &claims, app.state.keys.encoding_key()).unwrap();
    app.get("/api/v1/me", Some(&plain_jwt)).await.assert_problem(401, "unauthorized");
    // A login session's id presented as an impersonation (`act` forged in).
    let actor = actas::crypto::tokens::ActorClaim { sub, email: ADMIN_EMAIL.into(), act: None };
    let forged_act = app.state.tokens().sign(request(sub, Some(actor)));
    app.get("/api/v1/me", Some(&forged_act)).await.assert_problem(401, "unauthorized");
    // Someone else's `sub` on this session.
    let other = app.state.tokens().sign(request(Uuid::now_v7(), None));
    app.get("/api/v1/me", Some(&other)).await.assert_problem(401, "unauthorized");
    // The genuine token still works.
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
}

mod hardening {
    use super::*;
    backend_tests!(tokens_must_be_access_tokens_for_their_own_session);
}

/// PostgreSQL, two nodes on one database: failures counted on either node
/// add up, so spreading guesses over nodes gains nothing.
#[actix_web::test]
async fn the_login_limit_holds_across_nodes() {
    let Some(a) = TestApp::postgres().await else { return };
    let b = a.another_node().await;
    for node in [&a, &b, &a, &b, &a] {
        node.try_login(ADMIN_EMAIL, "wrong password!").await.assert_problem(401, "invalid_credentials");
    }
    for node in [&b, &a] {
        let res = node.try_login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        res.assert_problem(429, "rate_limited");
        assert!(res.header("retry-after").is_some());
    }
    // The per-address limit too: the five failures, spread over both nodes,
    // also used up this address's budget, for any other email on either node.
    for node in [&a, &b] {
        node.try_login("nobody@owner.example", "wrong password!").await.assert_problem(429, "rate_limited");
    }
}

#[actix_web::test]
async fn behind_a_trusted_proxy_the_last_forwarded_address_counts() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::with_env(backend, &[("ACTAS_TRUST_PROXY_HEADERS", "true")]).await else { continue };
        proxied_logins_count_the_proxy_s_address(app).await;
    }
}

async fn proxied_logins_count_the_proxy_s_address(app: TestApp) {
    let login = |email: String, forwarded: &'static str| {
        let app = &app;
        async move {
            let body = serde_json::to_vec(&json!({"email": email, "password": "wrong password!"})).unwrap();
            app.send_with(
                awc::http::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(("application/json", body)),
                &[("x-forwarded-for", forwarded)],
            )
            .await
        }
    };
    // The client varies the first entry; the proxy's own (last) entry stays.
    for (i, spoofed) in
        ["1.1.1.1, 9.9.9.9", "1.1.1.2, 9.9.9.9", "1.1.1.3,9.9.9.9", "1.1.1.4, 9.9.9.9", "1.1.1.5, 9.9.9.9"]
            .into_iter()
            .enumerate()
    {
        login(format!("a{i}@x.example"), spoofed).await.assert_problem(401, "invalid_credentials");
    }
    login("b@x.example".into(), "2.2.2.2, 9.9.9.9").await.assert_problem(429, "rate_limited");
    login("c@x.example".into(), "9.9.9.9, 8.8.8.8").await.assert_problem(401, "invalid_credentials");
}

/// SPEC §7: the token lifetime and audience are configurable (a token for
/// another audience is refused: see the token hardening tests).
#[actix_web::test]
async fn token_lifetime_and_audience_follow_the_configuration() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let env = [("ACTAS_ACCESS_TOKEN_MINUTES", "5"), ("ACTAS_AUDIENCE", "support-api")];
        let Some(app) = TestApp::with_env(backend, &env).await else { continue };
        let res = app.try_login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let body = res.assert_status(200);
        assert_eq!(body["expires_in"], 300);
        let token = body["access_token"].as_str().unwrap().to_owned();
        let claims = common::jwt_part(&token, 1);
        assert_eq!(claims["aud"], "support-api");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
        app.get("/api/v1/me", Some(&token)).await.assert_status(200);
        app.state.clock.advance(Duration::minutes(5));
        app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    }
}
