//! Consent and impersonation (SPEC §1–§3): the whole workflow, every refusal,
//! every way a session ends, and revocation racing a start or an impersonated write.

mod common;

use std::time::Duration as StdDuration;

use awc::http::Method;
use common::{Backend, Response, TestApp, World, ADMIN_PASSWORD, PASSWORD};
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

async fn grant(app: &TestApp, token: &str, hours: Value) -> Response {
    app.put("/api/v1/me/impersonation-consent", Some(token), json!({"duration_hours": hours})).await
}

async fn start(app: &TestApp, token: &str, target: Uuid, password: &str) -> Response {
    app.post(
        "/api/v1/impersonations",
        Some(token),
        json!({"target_user_id": target, "password": password, "reason": "Ticket #42"}),
    )
    .await
}

async fn session(app: &TestApp, w: &World, id: &str) -> Value {
    app.get(&format!("/api/v1/impersonations/{id}"), Some(&w.admin)).await.assert_status(200).clone()
}

async fn post_empty(app: &TestApp, path: &str, token: &str) -> Response {
    app.send(Method::POST, path, Some(token), None).await
}

async fn consent_is_granted_read_replaced_and_revoked(app: TestApp) {
    let w = app.world().await;
    let ada = &w.acme_member.1;
    let none = app.get("/api/v1/me/impersonation-consent", Some(ada)).await;
    assert_eq!(
        none.assert_status(200),
        &json!({"active": false, "granted_at": null, "expires_at": null, "duration_hours": null, "revoked_at": null})
    );

    let res = grant(&app, ada, json!(24)).await;
    let body = res.assert_status(200).clone();
    assert_eq!((body["active"].as_bool(), body["duration_hours"].as_i64()), (Some(true), Some(24)));
    let granted = time::OffsetDateTime::parse(
        body["granted_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires - granted, Duration::hours(24));
    assert_eq!(app.get("/api/v1/me/impersonation-consent", Some(ada)).await.body, body);

    // Granting again replaces it; the earlier grant stays in history.
    let again = grant(&app, ada, json!(168)).await;
    assert_eq!(again.assert_status(200)["duration_hours"], 168);
    let history = |condition: &str| {
        let query = format!("SELECT COUNT(*) AS n FROM consents WHERE user_id = '{}' {condition}", w.acme_member.0);
        app.scalar(&query)
    };
    assert_eq!((history(""), history("AND superseded_at IS NOT NULL")), (2, 1));

    app.delete("/api/v1/me/impersonation-consent", Some(ada)).await.assert_status(204);
    let revoked = app.get("/api/v1/me/impersonation-consent", Some(ada)).await;
    assert_eq!(revoked.body["active"], false);
    assert!(revoked.body["revoked_at"].is_string());
    // Revoking nothing is fine.
    app.delete("/api/v1/me/impersonation-consent", Some(ada)).await.assert_status(204);
    assert_eq!((history(""), history("AND revoked_at IS NOT NULL")), (2, 1));
}

/// SPEC §1: a reason is optional free text of at most 500 characters (not
/// bytes); text that reorders how it displays is refused too.
async fn reasons_are_at_most_500_characters_of_plain_text(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let with_reason = |reason: String| {
        let body = json!({"target_user_id": w.acme_member.0, "password": ADMIN_PASSWORD, "reason": reason});
        app.post("/api/v1/impersonations", Some(&w.admin), body)
    };
    for refused in ["é".repeat(501), "ticket \u{202E}24# tekcit".to_owned()] {
        let res = with_reason(refused).await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], "reason");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM impersonation_sessions"), 0);
    let res = with_reason("é".repeat(500)).await;
    let id = res.assert_status(201)["session_id"].as_str().unwrap().to_owned();
    let shown = session(&app, &w, &id).await;
    assert_eq!(shown["reason"].as_str().unwrap().chars().count(), 500);
    // With SPEC §1's field names: who, whom, and under which consent.
    let admin_id = app.get("/api/v1/me", Some(&w.admin)).await.body["user"]["id"].clone();
    assert_eq!((&shown["impersonator_id"], &shown["target_id"]), (&admin_id, &json!(w.acme_member.0)));
    let consent = format!("SELECT COUNT(*) AS n FROM consents WHERE id = '{}'", shown["consent_id"].as_str().unwrap());
    assert_eq!(app.scalar(&consent), 1);
}

/// A grant or revocation whose login runs out while it waits for its turn
/// is judged when the turn comes: too late, and nothing changes.
async fn a_consent_change_from_a_login_that_ended_meanwhile_changes_nothing(app: TestApp) {
    let w = app.world().await;
    let (ada_id, ada) = &w.acme_member;
    grant(&app, ada, json!(4)).await.assert_status(200);
    app.state.clock.advance(Duration::minutes(58));
    let delay = StdDuration::from_millis(500);
    let later = || app.state.clock.advance(Duration::minutes(3));
    let regrant = grant(&app, ada, json!(5));
    let res = app.commit_during(("users", *ada_id), "SELECT 1", delay, regrant, later).await;
    res.assert_problem(401, "unauthorized");
    let fresh = app.login("ada@acme.example", PASSWORD).await;
    let consent = app.get("/api/v1/me/impersonation-consent", Some(&fresh)).await;
    assert_eq!(consent.assert_status(200)["duration_hours"], 4);

    app.state.clock.advance(Duration::minutes(58));
    let revoke = app.delete("/api/v1/me/impersonation-consent", Some(&fresh));
    let later = || app.state.clock.advance(Duration::minutes(3));
    let res = app.commit_during(("users", *ada_id), "SELECT 1", delay, revoke, later).await;
    res.assert_problem(401, "unauthorized");
    let again = app.login("ada@acme.example", PASSWORD).await;
    let consent = app.get("/api/v1/me/impersonation-consent", Some(&again)).await;
    assert_eq!(consent.assert_status(200)["active"], true);
}

/// An impersonation hangs off the admin's login session: once that has
/// ended, however it ended, the impersonation token is refused.
async fn an_impersonation_ends_with_the_login_session_it_came_from(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    let login_sid = common::claims(&w.admin)["sid"].as_str().unwrap().to_owned();
    // Ended behind the service's back: no stop, no event; the check alone decides.
    app.sql(&format!(
        "UPDATE login_sessions SET ended_at = (SELECT started_at FROM impersonation_sessions LIMIT 1), \
         end_reason = 'logout' WHERE id = '{login_sid}'"
    ));
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    let fresh = app.admin().await;
    let form = format!("token={token}").into_bytes();
    let asked = app
        .send(Method::POST, "/oauth/introspect", Some(&fresh), Some(("application/x-www-form-urlencoded", form)))
        .await;
    assert_eq!(asked.assert_status(200), &json!({"active": false}));
}

async fn consent_durations_outside_1_to_168_whole_hours_are_refused(app: TestApp) {
    let w = app.world().await;
    let ada = &w.acme_member.1;
    for bad in [json!(0), json!(169), json!(-1), json!(1.5), json!(167.99), json!(1e300), json!("24"), json!(null)] {
        let res = grant(&app, ada, bad.clone()).await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], "duration_hours", "for {bad}");
        assert!(!res.text.contains("Number") && !res.text.contains("i64"), "Rust types leaked: {}", res.text);
    }
    // Numbers are read as written, not as the float they round to.
    let raw = |literal: &str| {
        let body = format!("{{\"duration_hours\": {literal}}}").into_bytes();
        app.send(Method::PUT, "/api/v1/me/impersonation-consent", Some(ada), Some(("application/json", body)))
    };
    for bad in ["0.99999999999999999", "1.0000000000000001", "168.00000000000001", "1e400", "-1e400"] {
        let res = raw(bad).await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], "duration_hours", "for {bad}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM consents"), 0, "a refused grant wrote a consent");
    assert_eq!(raw("2.4e1").await.assert_status(200)["duration_hours"], 24);
    // 24.0 is the whole number 24.
    assert_eq!(grant(&app, ada, json!(24.0)).await.assert_status(200)["duration_hours"], 24);
    let res = app.put("/api/v1/me/impersonation-consent", Some(ada), json!({})).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "duration_hours");
    grant(&app, ada, json!(1)).await.assert_status(200);
    grant(&app, ada, json!(168)).await.assert_status(200);
}

async fn the_whole_workflow_enable_impersonate_act_exit(app: TestApp) {
    let w = app.world().await;
    let (ada_id, ada) = &w.acme_member;
    grant(&app, ada, json!(2)).await.assert_status(200);

    let res = app
        .send_with(
            Method::POST,
            "/api/v1/impersonations",
            Some(&w.owner_staff.1),
            Some((
                "application/json",
                serde_json::to_vec(&json!({"target_user_id": ada_id, "password": PASSWORD, "reason": "Ticket #42"}))
                    .unwrap(),
            )),
            &[("user-agent", "support-console/1.0")],
        )
        .await;
    let started = res.assert_status(201).clone();
    let session_id = started["session_id"].as_str().unwrap().to_owned();
    assert_eq!(res.header("location"), Some(format!("/api/v1/impersonations/{session_id}")));
    assert_eq!(started["token_type"], "Bearer");
    assert_eq!(started["expires_in"], 30 * 60);
    assert_eq!(started["target"]["id"], ada_id.to_string());
    let token = started["access_token"].as_str().unwrap().to_owned();
    let c = common::claims(&token);
    assert_eq!(c["sub"], ada_id.to_string());
    assert_eq!(c["sid"], session_id);
    assert_eq!(c["act"], json!({"sub": w.owner_staff.0.to_string(), "email": "sam@owner.example"}));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 30 * 60);
    assert_eq!(c["role"], "member");
    assert_eq!(c["org"], w.acme.to_string());
    assert_eq!((c["client_id"].as_str(), c["scope"].as_str()), (Some("actas"), Some("actas impersonation")));

    // Act: exactly the target's view and permissions.
    let me = app.get("/api/v1/me", Some(&token)).await;
    let me = me.assert_status(200);
    assert_eq!(me["user"]["id"], ada_id.to_string());
    assert_eq!(me["impersonation"]["session_id"], session_id);
    assert_eq!(
        me["impersonation"]["impersonator"],
        json!({"id": w.owner_staff.0.to_string(), "email": "sam@owner.example", "name": "sam@owner.example"})
    );
    assert_eq!(me["impersonation"]["expires_at"], started["expires_at"]);
    assert!(me["impersonation"]["started_at"].is_string());
    let users = app.get("/api/v1/users", Some(&token)).await;
    let listed: Vec<&str> = users.body["items"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![ada_id.to_string()]);
    app.get(&format!("/api/v1/users/{}", w.acme_admin.0), Some(&token)).await.assert_problem(404, "not_found");
    app.get("/api/v1/organizations", Some(&token)).await.assert_problem(403, "forbidden");
    app.patch(&format!("/api/v1/users/{ada_id}"), Some(&token), json!({"name": "Ada (fixed by support)"}))
        .await
        .assert_status(200);

    // The session as the impersonator sees it.
    let view = app.get(&format!("/api/v1/impersonations/{session_id}"), Some(&w.owner_staff.1)).await;
    let view = view.assert_status(200).clone();
    assert_eq!(view["status"], "ongoing");
    assert_eq!(view["reason"], "Ticket #42");
    assert_eq!(view["ip"], "127.0.0.1");
    assert_eq!(view["user_agent"], "support-console/1.0");
    assert_eq!(view["target"]["email"], "ada@acme.example");
    assert!(view["ended_at"].is_null() && view["end_reason"].is_null());

    // Exit.
    post_empty(&app, &format!("/api/v1/impersonations/{session_id}/stop"), &w.owner_staff.1).await.assert_status(204);
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    let ended = app.get(&format!("/api/v1/impersonations/{session_id}"), Some(&w.owner_staff.1)).await;
    assert_eq!((ended.body["status"].as_str(), ended.body["end_reason"].as_str()), (Some("ended"), Some("stopped")));
    // The admin's own session goes on.
    app.get("/api/v1/me", Some(&w.owner_staff.1)).await.assert_status(200);
}

async fn restricted_actions_while_impersonating(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(2)).await.assert_status(200);
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    grant(&app, &token, json!(5)).await.assert_problem(403, "impersonation-restricted");
    app.delete("/api/v1/me/impersonation-consent", Some(&token)).await.assert_problem(403, "impersonation-restricted");
    let res = app
        .put(
            "/api/v1/me/password",
            Some(&token),
            json!({"current_password": PASSWORD, "new_password": "hijacked password!"}),
        )
        .await;
    res.assert_problem(403, "impersonation-restricted");
    // Chaining: refused with its own code, under the restricted problem type.
    grant(&app, &w.acme_eu_member.1, json!(2)).await.assert_status(200);
    let res = start(&app, &token, w.acme_eu_member.0, PASSWORD).await;
    assert_eq!(res.status.as_u16(), 403);
    assert_eq!(res.body["code"], "chained_impersonation");
    assert_eq!(res.body["type"], "urn:actas:problem:impersonation-restricted");
    // Reading consent is allowed, and the consent is untouched.
    let consent = app.get("/api/v1/me/impersonation-consent", Some(&token)).await;
    assert_eq!(consent.assert_status(200)["duration_hours"], 2);
    app.login("ada@acme.example", PASSWORD).await;
    // Logging in while carrying an impersonation token, even an ended one: its
    // password check would run inside the audited request's transaction.
    let body = serde_json::to_vec(&json!({"email": "ada@acme.example", "password": PASSWORD})).unwrap();
    let login = ("application/json", body);
    let res = app.send(Method::POST, "/api/v1/auth/login", Some(&token), Some(login.clone())).await;
    res.assert_problem(403, "impersonation-restricted");
    // Hidden behind a second Authorization header, it counts all the same.
    let bearer = format!("Bearer {token}");
    let two = [("authorization", "Bearer junk"), ("authorization", bearer.as_str())];
    let res = app.send_with(Method::POST, "/api/v1/auth/login", None, Some(login.clone()), &two).await;
    res.assert_problem(403, "impersonation-restricted");
    app.post("/api/v1/auth/logout", Some(&token), json!({})).await;
    let res = app.send(Method::POST, "/api/v1/auth/login", Some(&token), Some(login)).await;
    res.assert_problem(403, "impersonation-restricted");
}

async fn every_refusal_has_its_code_and_creates_no_session(app: TestApp) {
    let w = app.world().await;
    for (_, token) in [&w.acme_member, &w.acme_eu_member, &w.globex_member, &w.acme_admin] {
        grant(&app, token, json!(2)).await.assert_status(200);
    }
    let staff_peer = app.create_user(&w.admin, "pat@owner.example", w.owner_org, "member").await;
    grant(&app, &app.login("pat@owner.example", PASSWORD).await, json!(2)).await.assert_status(200);
    let super_peer = app.create_user(&w.admin, "root2@owner.example", w.owner_org, "super_admin").await;
    // With consent, so that only the role refuses.
    grant(&app, &app.login("root2@owner.example", PASSWORD).await, json!(2)).await.assert_status(200);
    let me = app.get("/api/v1/me", Some(&w.admin)).await.body["user"]["id"].as_str().unwrap().parse::<Uuid>().unwrap();

    let cases: Vec<(&str, &str, Uuid, &str, &str)> = vec![
        ("a member", &w.acme_member.1, w.acme_eu_member.0, PASSWORD, "not_permitted"),
        ("a customer admin", &w.acme_admin.1, w.acme_eu_member.0, PASSWORD, "not_permitted"),
        ("owner staff on owner staff", &w.owner_staff.1, staff_peer, PASSWORD, "not_permitted"),
        ("yourself", &w.admin, me, ADMIN_PASSWORD, "self_impersonation"),
        ("a super admin", &w.admin, super_peer, ADMIN_PASSWORD, "target_privileged"),
        ("owner staff on a super admin", &w.owner_staff.1, super_peer, PASSWORD, "target_privileged"),
        ("a user without consent", &w.admin, w.owner_staff.0, ADMIN_PASSWORD, "consent_required"),
        ("a wrong password", &w.admin, w.acme_member.0, "not my password", "reauthentication_failed"),
    ];
    for (what, token, target, password, code) in cases {
        let res = start(&app, token, target, password).await;
        assert_eq!(res.status.as_u16(), 403, "{what}: {}", res.text);
        assert_eq!(res.body["code"], code, "{what}");
        assert_eq!(res.header("content-type").as_deref(), Some("application/problem+json"), "{what}");
        assert!(res.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}");
    }
    start(&app, &w.admin, Uuid::now_v7(), ADMIN_PASSWORD).await.assert_problem(404, "not_found");
    let res = start(&app, &w.admin, w.acme_member.0, "").await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "password");
    start(&app, &w.owner_staff.1, Uuid::now_v7(), PASSWORD).await.assert_problem(404, "not_found");
    // Who may impersonate nobody learns nothing, not even whether an id exists.
    for target in [Uuid::now_v7(), w.globex_member.0] {
        start(&app, &w.acme_admin.1, target, PASSWORD).await.assert_problem(403, "not_permitted");
    }
    let sessions = app.get("/api/v1/impersonations", Some(&w.admin)).await;
    assert_eq!(sessions.body["items"], json!([]), "a refused start left a session");

    // Expired, revoked, suspended, deleted.
    grant(&app, &w.globex_member.1, json!(1)).await.assert_status(200);
    app.state.clock.advance(Duration::hours(1));
    // The admin's own login token expired with the hour too.
    let admin = app.admin().await;
    start(&app, &admin, w.globex_member.0, ADMIN_PASSWORD).await.assert_problem(403, "consent_required");
    let ada = app.login("ada@acme.example", PASSWORD).await;
    grant(&app, &ada, json!(2)).await.assert_status(200);
    app.delete("/api/v1/me/impersonation-consent", Some(&ada)).await.assert_status(204);
    start(&app, &admin, w.acme_member.0, ADMIN_PASSWORD).await.assert_problem(403, "consent_required");
    let eve = app.login("eve@eu.acme.example", PASSWORD).await;
    grant(&app, &eve, json!(2)).await.assert_status(200);
    app.patch(&format!("/api/v1/users/{}", w.acme_eu_member.0), Some(&admin), json!({"status": "suspended"}))
        .await
        .assert_status(200);
    start(&app, &admin, w.acme_eu_member.0, ADMIN_PASSWORD).await.assert_problem(403, "target_inactive");
    let boss = app.login("boss@acme.example", PASSWORD).await;
    grant(&app, &boss, json!(2)).await.assert_status(200);
    app.delete(&format!("/api/v1/users/{}", w.acme_admin.0), Some(&admin)).await.assert_status(204);
    start(&app, &admin, w.acme_admin.0, ADMIN_PASSWORD).await.assert_problem(403, "target_inactive");
    let sessions = app.get("/api/v1/impersonations", Some(&admin)).await;
    assert_eq!(sessions.body["items"], json!([]));
}

async fn wrong_passwords_are_rate_limited_per_impersonator(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(2)).await.assert_status(200);
    for _ in 0..3 {
        start(&app, &w.admin, w.acme_member.0, "not my password").await.assert_problem(403, "reauthentication_failed");
    }
    // Guesses through the password change count in the same budget.
    let change = json!({"current_password": "not my password", "new_password": "a brand new password"});
    for _ in 0..2 {
        app.put("/api/v1/me/password", Some(&w.admin), change.clone())
            .await
            .assert_problem(403, "reauthentication_failed");
    }
    app.put("/api/v1/me/password", Some(&w.admin), change).await.assert_problem(429, "rate_limited");
    let res = start(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    res.assert_problem(429, "rate_limited");
    let retry_after = res.header("retry-after").unwrap().parse::<i64>().unwrap();
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    // Another impersonator is not affected.
    start(&app, &w.owner_staff.1, w.acme_member.0, PASSWORD).await.assert_status(201);
    // Once the window has passed, the right password works again.
    app.state.clock.advance(Duration::seconds(retry_after - 2));
    let admin = app.admin().await;
    start(&app, &admin, w.acme_member.0, ADMIN_PASSWORD).await.assert_problem(429, "rate_limited");
    app.state.clock.advance(Duration::seconds(2));
    start(&app, &admin, w.acme_member.0, ADMIN_PASSWORD).await.assert_status(201);
}

async fn token_expiry_is_the_earlier_of_consent_and_cap(app: TestApp) {
    let w = app.world().await;
    // Consent of 1 hour, cap of 30 minutes: the cap wins.
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let res = start(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
    assert_eq!(res.assert_status(201)["expires_in"], 1800);
    // 40 minutes later only 20 minutes of consent are left: consent wins.
    app.state.clock.advance(Duration::minutes(40));
    let admin = app.admin().await;
    let res = start(&app, &admin, w.acme_member.0, ADMIN_PASSWORD).await;
    let body = res.assert_status(201);
    let consent =
        app.get("/api/v1/me/impersonation-consent", Some(&app.login("ada@acme.example", PASSWORD).await)).await;
    let instant = |v: &Value| {
        time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    // The token's expiry is the consent's, rounded down to whole seconds.
    assert_eq!(instant(&body["expires_at"]), instant(&consent.body["expires_at"]));
    let c = common::claims(body["access_token"].as_str().unwrap());
    assert!((c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() - 20 * 60).abs() <= 1);
}

async fn expired_sessions_are_refused_and_shown_expired(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(2)).await.assert_status(200);
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    app.state.clock.advance(Duration::minutes(29));
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    app.state.clock.advance(Duration::minutes(2));
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    let admin = app.admin().await;
    let view = app.get(&format!("/api/v1/impersonations/{id}"), Some(&admin)).await;
    assert_eq!((view.body["status"].as_str(), view.body["end_reason"].as_str()), (Some("expired"), Some("expired")));
    assert_eq!(view.body["ended_at"], view.body["expires_at"]);
    let expired = app.get("/api/v1/impersonations?status=expired", Some(&admin)).await;
    assert_eq!(expired.body["items"].as_array().unwrap().len(), 1);
    let ongoing = app.get("/api/v1/impersonations?status=ongoing", Some(&admin)).await;
    assert_eq!(ongoing.body["items"], json!([]));
}

async fn stopping_with_the_impersonation_token_and_logging_out(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(2)).await.assert_status(200);
    // Stop with the impersonation token itself.
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    post_empty(&app, &format!("/api/v1/impersonations/{id}/stop"), &token).await.assert_status(204);
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    assert_eq!(session(&app, &w, &id).await["end_reason"], "stopped");
    // Logout with the impersonation token stops it.
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    post_empty(&app, "/api/v1/auth/logout", &token).await.assert_status(204);
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    assert_eq!(session(&app, &w, &id).await["end_reason"], "stopped");
    app.get("/api/v1/me", Some(&w.admin)).await.assert_status(200);
    // Nobody else may stop it.
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    post_empty(&app, &format!("/api/v1/impersonations/{id}/stop"), &w.owner_staff.1)
        .await
        .assert_problem(404, "not_found");
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    // Logging out of the admin's login session ends everything it started.
    grant(&app, &w.globex_member.1, json!(2)).await.assert_status(200);
    let (other, other_token) = app.impersonate(&w, w.globex_member.0).await;
    post_empty(&app, "/api/v1/auth/logout", &w.admin).await.assert_status(204);
    for t in [&token, &other_token] {
        app.get("/api/v1/me", Some(t)).await.assert_problem(401, "unauthorized");
    }
    let admin = app.admin().await;
    for s in [&id, &other] {
        let view = app.get(&format!("/api/v1/impersonations/{s}"), Some(&admin)).await;
        assert_eq!((view.body["status"].as_str(), view.body["end_reason"].as_str()), (Some("ended"), Some("logout")));
    }
}

async fn revocation_ends_sessions_with_the_matching_reason(app: TestApp) {
    let w = app.world().await;
    let admin = &w.admin;
    let mut check = Vec::new();

    grant(&app, &w.acme_member.1, json!(2)).await.assert_status(200);
    let (s1, t1) = app.impersonate(&w, w.acme_member.0).await;
    app.delete("/api/v1/me/impersonation-consent", Some(&w.acme_member.1)).await.assert_status(204);
    check.push((s1, t1, "revoked", "consent_revoked"));

    grant(&app, &w.acme_eu_member.1, json!(2)).await.assert_status(200);
    let (s2, t2) = app.impersonate(&w, w.acme_eu_member.0).await;
    app.patch(&format!("/api/v1/users/{}", w.acme_eu_member.0), Some(admin), json!({"status": "suspended"}))
        .await
        .assert_status(200);
    check.push((s2, t2, "revoked", "target_suspended"));

    grant(&app, &w.globex_member.1, json!(2)).await.assert_status(200);
    let (s3, t3) = app.impersonate(&w, w.globex_member.0).await;
    app.delete(&format!("/api/v1/users/{}", w.globex_member.0), Some(admin)).await.assert_status(204);
    check.push((s3, t3, "revoked", "target_deleted"));

    grant(&app, &w.acme_admin.1, json!(2)).await.assert_status(200);
    let by_staff = start(&app, &w.owner_staff.1, w.acme_admin.0, PASSWORD).await;
    let by_staff = by_staff.assert_status(201).clone();
    app.patch(&format!("/api/v1/users/{}", w.owner_staff.0), Some(admin), json!({"status": "suspended"}))
        .await
        .assert_status(200);
    check.push((
        by_staff["session_id"].as_str().unwrap().to_owned(),
        by_staff["access_token"].as_str().unwrap().to_owned(),
        "revoked",
        "impersonator_suspended",
    ));

    for (id, token, status, reason) in check {
        app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
        let view = session(&app, &w, &id).await;
        assert_eq!(
            (view["status"].as_str(), view["end_reason"].as_str()),
            (Some(status), Some(reason)),
            "session {id}"
        );
        assert!(view["ended_at"].is_string());
    }
    let revoked = app.get("/api/v1/impersonations?status=revoked", Some(admin)).await;
    assert_eq!(revoked.body["items"].as_array().unwrap().len(), 4);
}

async fn deleting_the_impersonator_ends_their_sessions(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(2)).await.assert_status(200);
    let res = start(&app, &w.owner_staff.1, w.acme_member.0, PASSWORD).await;
    let body = res.assert_status(201).clone();
    app.delete(&format!("/api/v1/users/{}", w.owner_staff.0), Some(&w.admin)).await.assert_status(204);
    app.get("/api/v1/me", Some(body["access_token"].as_str().unwrap())).await.assert_problem(401, "unauthorized");
    let view = session(&app, &w, body["session_id"].as_str().unwrap()).await;
    assert_eq!(view["end_reason"], "impersonator_suspended");
}

async fn user_lists_say_who_can_be_impersonated(app: TestApp) {
    let w = app.world().await;
    let res = grant(&app, &w.acme_member.1, json!(3)).await;
    let expires = res.body["expires_at"].clone();
    let flags = |body: &Value, id: Uuid| -> Value {
        body["items"].as_array().unwrap().iter().find(|u| u["id"] == id.to_string()).unwrap()["impersonation"].clone()
    };
    let listed = app.get("/api/v1/users?limit=200", Some(&w.admin)).await;
    assert_eq!(flags(&listed.body, w.acme_member.0), json!({"available": true, "consent_expires_at": expires}));
    assert_eq!(flags(&listed.body, w.acme_eu_member.0), json!({"available": false, "consent_expires_at": null}));
    let me = app.get("/api/v1/me", Some(&w.admin)).await.body["user"]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(flags(&listed.body, me), json!({"available": false, "consent_expires_at": null}));
    let one = app.get(&format!("/api/v1/users/{}", w.acme_member.0), Some(&w.admin)).await;
    assert_eq!(one.body["impersonation"], json!({"available": true, "consent_expires_at": expires}));
    // Owner staff: available for customers; owner-org peers never.
    let staff_view = app.get("/api/v1/users?limit=200", Some(&w.owner_staff.1)).await;
    assert_eq!(flags(&staff_view.body, w.acme_member.0)["available"], true);
    grant(&app, &w.owner_staff.1, json!(3)).await.assert_status(200);
    let admin_view = app.get("/api/v1/users?limit=200", Some(&w.admin)).await;
    assert_eq!(flags(&admin_view.body, w.owner_staff.0)["available"], true);
    // Customer admins and members: the feature does not appear.
    let boss_view = app.get("/api/v1/users", Some(&w.acme_admin.1)).await;
    assert_eq!(flags(&boss_view.body, w.acme_member.0), json!({"available": false, "consent_expires_at": null}));
    let ada_view = app.get("/api/v1/users", Some(&w.acme_member.1)).await;
    assert_eq!(flags(&ada_view.body, w.acme_member.0), json!({"available": false, "consent_expires_at": null}));
}

async fn session_lists_are_own_or_all_for_super_admins(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(2)).await.assert_status(200);
    grant(&app, &w.globex_member.1, json!(2)).await.assert_status(200);
    let (by_admin, _) = app.impersonate(&w, w.acme_member.0).await;
    let res = start(&app, &w.owner_staff.1, w.globex_member.0, PASSWORD).await;
    let by_staff = res.assert_status(201)["session_id"].as_str().unwrap().to_owned();

    let all = app.get("/api/v1/impersonations", Some(&w.admin)).await;
    let ids: Vec<&str> = all.body["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![by_staff.as_str(), by_admin.as_str()]);
    let own = app.get("/api/v1/impersonations", Some(&w.owner_staff.1)).await;
    let ids: Vec<&str> = own.body["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![by_staff.as_str()]);
    app.get(&format!("/api/v1/impersonations/{by_admin}"), Some(&w.owner_staff.1))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/impersonations/{by_staff}"), Some(&w.acme_member.1))
        .await
        .assert_problem(404, "not_found");
    let page = app.get("/api/v1/impersonations?limit=1", Some(&w.admin)).await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let next = app.get(&format!("/api/v1/impersonations?limit=1&cursor={cursor}"), Some(&w.admin)).await;
    assert_eq!(next.body["items"][0]["id"], by_admin);
    // Each status filter lists exactly the sessions in that state.
    let stop = format!("/api/v1/impersonations/{by_staff}/stop");
    app.send(Method::POST, &stop, Some(&w.owner_staff.1), None).await.assert_status(204);
    for (status, expected) in [("ended", &by_staff), ("ongoing", &by_admin)] {
        let listed = app.get(&format!("/api/v1/impersonations?status={status}"), Some(&w.admin)).await;
        let listed = listed.assert_status(200)["items"].clone();
        assert_eq!(listed.as_array().unwrap().len(), 1, "{status}: {listed}");
        assert_eq!((listed[0]["id"].as_str(), listed[0]["status"].as_str()), (Some(expected.as_str()), Some(status)));
    }
    for status in ["expired", "revoked"] {
        let listed = app.get(&format!("/api/v1/impersonations?status={status}"), Some(&w.admin)).await;
        assert_eq!(listed.assert_status(200)["items"], json!([]), "{status}");
    }
    app.get("/api/v1/impersonations?status=bogus", Some(&w.admin)).await.assert_problem(422, "validation_failed");
}

/// Pairs of an owner-organization staff member and a customer who consented:
/// (staff token, customer id, customer token). The super admin's token first.
async fn consenting_pairs(app: &TestApp, count: usize) -> (String, Vec<(String, Uuid, String)>) {
    let admin = app.admin().await;
    let owner = app.owner_org_id(&admin).await;
    let customers = app.create_org(&admin, "Customers", None).await;
    let mut pairs = Vec::new();
    for i in 0..count {
        let staff_email = format!("staff{i}@owner.example");
        let target_email = format!("customer{i}@customers.example");
        app.create_user(&admin, &staff_email, owner, "member").await;
        let target = app.create_user(&admin, &target_email, customers, "member").await;
        let staff_token = app.login(&staff_email, PASSWORD).await;
        let target_token = app.login(&target_email, PASSWORD).await;
        grant(app, &target_token, json!(2)).await.assert_status(200);
        pairs.push((staff_token, target, target_token));
    }
    (admin, pairs)
}

async fn revoking_consent_while_starting_never_leaves_a_live_session(app: TestApp) {
    const PAIRS: usize = 12;
    let (admin, pairs) = consenting_pairs(&app, PAIRS).await;
    let races = pairs.iter().enumerate().map(|(i, (staff, target, target_token))| {
        let app = &app;
        async move {
            let starting = start(app, staff, *target, PASSWORD);
            let revoking = async {
                // Spread the revocations over the start's password check and commit.
                actix_web::rt::time::sleep(StdDuration::from_millis((i * 45) as u64)).await;
                app.delete("/api/v1/me/impersonation-consent", Some(target_token)).await
            };
            futures_util::future::join(starting, revoking).await
        }
    });
    let results = futures_util::future::join_all(races).await;
    let mut started = 0;
    for (started_res, revoked) in &results {
        revoked.assert_status(204);
        match started_res.status.as_u16() {
            201 => {
                started += 1;
                let token = started_res.body["access_token"].as_str().unwrap();
                app.get("/api/v1/me", Some(token)).await.assert_problem(401, "unauthorized");
            }
            _ => started_res.assert_problem(403, "consent_required"),
        }
    }
    let ongoing = app.get("/api/v1/impersonations?status=ongoing&limit=200", Some(&admin)).await;
    assert_eq!(ongoing.body["items"], json!([]), "a session outlived the revocation of its consent");
    let revoked = app.get("/api/v1/impersonations?status=revoked&limit=200", Some(&admin)).await;
    assert_eq!(revoked.body["items"].as_array().unwrap().len(), started);
    eprintln!("{started} of {PAIRS} starts won the race and were ended by the revocation");
}

async fn revoking_consent_while_the_impersonator_writes_commits_nothing_after_it(app: TestApp) {
    const PAIRS: usize = 12;
    let (admin, consenting) = consenting_pairs(&app, PAIRS).await;
    let mut pairs = Vec::new();
    for (staff_token, target, target_token) in consenting {
        let started = start(&app, &staff_token, target, PASSWORD).await;
        let session_id = started.assert_status(201)["session_id"].as_str().unwrap().to_owned();
        let token = started.body["access_token"].as_str().unwrap().to_owned();
        pairs.push((target, target_token, session_id, token));
    }
    let name_of = |target: Uuid| {
        let (app, admin) = (&app, &admin);
        async move {
            let user = app.get(&format!("/api/v1/users/{target}"), Some(admin)).await;
            user.assert_status(200)["name"].as_str().unwrap().to_owned()
        }
    };
    // Each pair writes three times around its revocation.
    const WRITES: usize = 3;
    let renamed = |n: usize| format!("Renamed by write {n}");
    let races = pairs.iter().enumerate().map(|(i, (target, target_token, _, token))| {
        let app = &app;
        async move {
            let writes = (0..WRITES).map(|n| async move {
                actix_web::rt::time::sleep(StdDuration::from_millis((n * 2 + i % 2) as u64)).await;
                let path = format!("/api/v1/users/{target}");
                app.patch(&path, Some(token), json!({"name": renamed(n)})).await
            });
            let revoking = async {
                actix_web::rt::time::sleep(StdDuration::from_millis((i % 5) as u64)).await;
                app.delete("/api/v1/me/impersonation-consent", Some(target_token)).await.assert_status(204);
                // What anyone sees once the revocation has answered must stay so.
                name_of(*target).await
            };
            futures_util::future::join(futures_util::future::join_all(writes), revoking).await
        }
    });
    let results = futures_util::future::join_all(races).await;
    let mut landed = 0;
    for ((target, _, session_id, _), (writes, seen_after_revoke)) in pairs.iter().zip(&results) {
        let final_name = name_of(*target).await;
        assert_eq!(&final_name, seen_after_revoke, "an impersonated change committed after the revocation answered");
        let mut committed = Vec::new();
        for (n, written) in writes.iter().enumerate() {
            match written.status.as_u16() {
                200 => committed.push(renamed(n)),
                _ => written.assert_problem(401, "unauthorized"),
            }
        }
        landed += committed.len();
        if committed.is_empty() {
            assert!(final_name.starts_with("customer"), "a refused write left its change: {final_name}");
        } else {
            assert!(committed.contains(&final_name), "the name is not one a 200 answered: {final_name}");
        }
        let log = app.get(&format!("/api/v1/impersonations/{session_id}/audit-log"), Some(&admin)).await;
        let mut logged: Vec<u64> = log.assert_status(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["status"].as_u64().unwrap())
            .collect();
        let mut answered: Vec<u64> = writes.iter().map(|w| u64::from(w.status.as_u16())).collect();
        logged.sort();
        answered.sort();
        assert_eq!(logged, answered, "every answered write has exactly one request-log row with its status");
    }
    eprintln!("{landed} of {} impersonated writes committed before the revocation", PAIRS * WRITES);
}

async fn the_open_consent_is_shown_whatever_the_clocks_said(app: TestApp) {
    let w = app.world().await;
    let ada = &w.acme_member.1;
    // A node whose clock is ten minutes fast takes the first grant; a node
    // with the right time takes the second, which replaces it.
    app.state.clock.advance(Duration::minutes(10));
    grant(&app, ada, json!(2)).await.assert_status(200);
    app.state.clock.advance(Duration::minutes(-10));
    grant(&app, ada, json!(5)).await.assert_status(200);
    let view = app.get("/api/v1/me/impersonation-consent", Some(ada)).await;
    let view = view.assert_status(200);
    assert_eq!((view["active"].as_bool(), view["duration_hours"].as_i64()), (Some(true), Some(5)), "{view}");
}

async fn concurrent_grants_leave_one_open_consent_in_order(app: TestApp) {
    let w = app.world().await;
    let ada = &w.acme_member.1;
    let grants = (1..=6).map(|hours| grant(&app, ada, json!(hours)));
    for res in futures_util::future::join_all(grants).await {
        res.assert_status(200);
    }
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM consents WHERE superseded_at IS NULL"), 1);
    // Each grant is stamped when it takes effect: none is replaced before it was granted.
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM consents WHERE superseded_at < granted_at"), 0);
    let view = app.get("/api/v1/me/impersonation-consent", Some(ada)).await;
    assert_eq!(view.assert_status(200)["active"], true);
}

/// A password change that commits while a start is confirming with the old
/// password wins: the start is refused, whichever finishes first.
async fn a_password_changed_during_a_start_refuses_it(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let new_hash = format!(
        "UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE email = 'root@owner.example') \
         WHERE id = '{}'",
        w.owner_staff.0
    );
    let starting = start(&app, &w.owner_staff.1, w.acme_member.0, PASSWORD);
    let res =
        app.commit_during(("users", w.owner_staff.0), &new_hash, StdDuration::from_millis(500), starting, || {}).await;
    res.assert_problem(403, "reauthentication_failed");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM impersonation_sessions"), 0);
    // The password given was right when it was checked: no failed attempt
    // is left to count against the admin.
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM auth_attempts WHERE scope = 'reauthentication'"), 0);
}

/// A stop that waited for the session's request in flight is timed after it:
/// the log never shows a call made after the session's end.
async fn an_end_is_timed_when_its_turn_comes(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let (id, _) = app.impersonate(&w, w.acme_member.0).await;
    let in_flight = ("impersonation_sessions", id.parse().unwrap());
    let stop = format!("/api/v1/impersonations/{id}/stop");
    let stopping = post_empty(&app, &stop, &w.admin);
    let later = || app.state.clock.advance(Duration::minutes(5));
    let res = app.commit_during(in_flight, "SELECT 1", StdDuration::from_millis(500), stopping, later).await;
    res.assert_status(204);
    let ended = session(&app, &w, &id).await;
    let at = |field: &str| {
        time::OffsetDateTime::parse(ended[field].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert!(at("ended_at") - at("started_at") >= Duration::minutes(5), "{ended}");

    // Likewise an end that reaches the session through its users (a logout
    // here): timed once it holds the session's row, after the calls in flight.
    let (id, _) = app.impersonate(&w, w.acme_member.0).await;
    let in_flight = ("impersonation_sessions", id.parse().unwrap());
    let logging_out = post_empty(&app, "/api/v1/auth/logout", &w.admin);
    let later = || app.state.clock.advance(Duration::minutes(5));
    let res = app.commit_during(in_flight, "SELECT 1", StdDuration::from_millis(500), logging_out, later).await;
    res.assert_status(204);
    let admin = app.admin().await;
    let ended = app.get(&format!("/api/v1/impersonations/{id}"), Some(&admin)).await.assert_status(200).clone();
    assert_eq!(ended["end_reason"], "logout");
    assert!(at_of(&ended, "ended_at") - at_of(&ended, "started_at") >= Duration::minutes(5), "{ended}");
    let events = app.get(&format!("/api/v1/audit/events?session_id={id}"), Some(&admin)).await;
    assert_eq!(events.body["items"][0]["at"].as_str(), ended["ended_at"].as_str(), "the event has the same time");
    // The login session ends no earlier than the impersonation it took along.
    let login_ended_first = app.scalar(&format!(
        "SELECT COUNT(*) AS n FROM impersonation_sessions i JOIN login_sessions l ON l.id = i.login_session_id \
         WHERE i.id = '{id}' AND (l.ended_at IS NULL OR l.ended_at < i.ended_at)"
    ));
    assert_eq!(login_ended_first, 0);
}

fn at_of(value: &Value, field: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(value[field].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
}

/// A read whose token was checked just before its session ended, but whose
/// row comes after the end, is refused: no call is answered (or logged as
/// answered) after its session's end.
async fn a_read_racing_the_end_of_its_session_is_refused(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let logged = |status: u16| app.scalar(&format!("SELECT COUNT(*) AS n FROM request_log WHERE status = {status}"));
    // Asking about a token with the impersonation token is such a read too.
    let form = serde_urlencoded::to_string([("token", &w.admin)]).unwrap().into_bytes();
    for (round, path) in ["/api/v1/me", "/oauth/introspect"].into_iter().enumerate() {
        let (id, token) = app.impersonate(&w, w.acme_member.0).await;
        let end = format!(
            "UPDATE impersonation_sessions SET ended_at = started_at, end_reason = 'stopped' WHERE id = '{id}'"
        );
        let session_row = ("impersonation_sessions", id.parse().unwrap());
        let body = (round == 1).then(|| ("application/x-www-form-urlencoded", form.clone()));
        let method = if round == 0 { Method::GET } else { Method::POST };
        let reading = app.send(method, path, Some(&token), body);
        let res = app.commit_during(session_row, &end, StdDuration::from_millis(500), reading, || {}).await;
        assert_eq!(res.status.as_u16(), 401, "{path}: {}", res.text);
        assert_eq!((logged(200), logged(401)), (0, round as i64 + 1), "{path}");
    }
}

/// A frontend firing parallel changes as one customer: they take turns, and
/// each gets its own answer, never a 503 from colliding with its sibling.
async fn parallel_changes_in_one_session_take_turns(app: TestApp) {
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    let own = format!("/api/v1/users/{}", w.acme_member.0);
    let changes = (0..24).map(|i| {
        let (app, own, token) = (&app, &own, &token);
        async move {
            // Refused (nobody changes their own status), but only after the rows are locked.
            let body = if i % 2 == 0 { json!({"status": "suspended"}) } else { json!({"name": format!("Ada {i}")}) };
            app.patch(own, Some(token), body).await
        }
    });
    for (i, res) in futures_util::future::join_all(changes).await.into_iter().enumerate() {
        if i % 2 == 0 {
            res.assert_problem(403, "forbidden");
        } else {
            assert_eq!(res.assert_status(200)["name"], format!("Ada {i}"));
        }
    }
    let renamed = app.get(&own, Some(&w.admin)).await;
    let name = renamed.assert_status(200)["name"].as_str().unwrap().to_owned();
    assert!((1..24).step_by(2).any(|i| name == format!("Ada {i}")), "{name}");
    assert_eq!(renamed.body["status"], "active");
}

/// Two tabs of one admin, each acting as a different customer admin, both
/// trying what neither may (delete the admin): refused at once, without
/// taking the rows the other tab holds.
async fn refused_changes_in_two_sessions_take_no_locks(app: TestApp) {
    let w = app.world().await;
    let second = app.create_user(&w.admin, "vic@acme.example", w.acme, "admin").await;
    let vic = app.login("vic@acme.example", PASSWORD).await;
    grant(&app, &w.acme_admin.1, json!(1)).await.assert_status(200);
    grant(&app, &vic, json!(1)).await.assert_status(200);
    let (_, as_boss) = app.impersonate(&w, w.acme_admin.0).await;
    let (_, as_vic) = app.impersonate(&w, second).await;
    let admin_id = app.get("/api/v1/me", Some(&w.admin)).await.body["user"]["id"].as_str().unwrap().to_owned();
    let root = format!("/api/v1/users/{admin_id}");
    let attempts = (0..16).map(|i| {
        let (app, root) = (&app, &root);
        let token = if i % 2 == 0 { as_boss.clone() } else { as_vic.clone() };
        async move {
            if i % 4 < 2 {
                app.delete(root, Some(&token)).await
            } else {
                app.patch(root, Some(&token), json!({"status": "suspended"})).await
            }
        }
    });
    for res in futures_util::future::join_all(attempts).await {
        res.assert_problem(404, "not_found");
    }
}

backend_tests!(
    an_impersonation_ends_with_the_login_session_it_came_from,
    a_consent_change_from_a_login_that_ended_meanwhile_changes_nothing,
    refused_changes_in_two_sessions_take_no_locks,
    parallel_changes_in_one_session_take_turns,
    a_read_racing_the_end_of_its_session_is_refused,
    reasons_are_at_most_500_characters_of_plain_text,
    an_end_is_timed_when_its_turn_comes,
    a_password_changed_during_a_start_refuses_it,
    an_owner_organization_member_may_impersonate_customers,
    consent_is_granted_read_replaced_and_revoked,
    the_open_consent_is_shown_whatever_the_clocks_said,
    concurrent_grants_leave_one_open_consent_in_order,
    consent_durations_outside_1_to_168_whole_hours_are_refused,
    the_whole_workflow_enable_impersonate_act_exit,
    restricted_actions_while_impersonating,
    every_refusal_has_its_code_and_creates_no_session,
    wrong_passwords_are_rate_limited_per_impersonator,
    token_expiry_is_the_earlier_of_consent_and_cap,
    expired_sessions_are_refused_and_shown_expired,
    stopping_with_the_impersonation_token_and_logging_out,
    revocation_ends_sessions_with_the_matching_reason,
    deleting_the_impersonator_ends_their_sessions,
    user_lists_say_who_can_be_impersonated,
    session_lists_are_own_or_all_for_super_admins,
    revoking_consent_while_starting_never_leaves_a_live_session,
    revoking_consent_while_the_impersonator_writes_commits_nothing_after_it,
);

/// PostgreSQL: a start that waits for a row lock is judged when its turn
/// comes. A consent that ran out while it waited refuses it, rather than
/// start a session that is over before its token is handed out.
#[actix_web::test]
async fn a_start_is_judged_when_it_is_written_not_when_it_began() {
    let Some(app) = TestApp::postgres().await else { return };
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    app.state.clock.advance(Duration::minutes(59));
    let staff = app.login("sam@owner.example", PASSWORD).await;
    let starting = start(&app, &staff, w.acme_member.0, PASSWORD);
    // By then the request has passed its checks and confirmed the password,
    // and waits for the target's row; the consent has a minute left.
    let later = || app.state.clock.advance(Duration::minutes(2));
    let res = app
        .commit_during(("users", w.acme_member.0), "SELECT 1", StdDuration::from_millis(1500), starting, later)
        .await;
    res.assert_problem(403, "consent_required");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM impersonation_sessions"), 0);
}

#[actix_web::test]
async fn a_longer_cap_lets_the_consent_decide() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let env = [("ACTAS_MAX_IMPERSONATION_MINUTES", "120")];
        let Some(app) = TestApp::with_env(backend, &env).await else { continue };
        let w = app.world().await;
        grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
        let res = start(&app, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
        let expires_in = res.assert_status(201)["expires_in"].as_i64().unwrap();
        assert!((3599..=3600).contains(&expires_in), "{backend:?}: expires_in {expires_in}");
    }
}

/// SPEC §2 rule 2: every owner-organization user, a plain member too, may
/// impersonate users below the owner organization (never another of its own).
async fn an_owner_organization_member_may_impersonate_customers(app: TestApp) {
    let w = app.world().await;
    app.create_user(&w.admin, "mo@owner.example", w.owner_org, "member").await;
    let member = app.login("mo@owner.example", PASSWORD).await;
    grant(&app, &w.acme_eu_member.1, json!(1)).await.assert_status(200);
    let res = start(&app, &member, w.acme_eu_member.0, PASSWORD).await;
    let token = res.assert_status(201)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(common::claims(&token)["sub"], w.acme_eu_member.0.to_string());
    grant(&app, &w.owner_staff.1, json!(1)).await.assert_status(200);
    start(&app, &member, w.owner_staff.0, PASSWORD).await.assert_problem(403, "not_permitted");
}

#[actix_web::test]
async fn a_shorter_new_consent_shortens_running_sessions() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::with_env(backend, &[("ACTAS_MAX_IMPERSONATION_MINUTES", "240")]).await else {
            continue;
        };
        let w = app.world().await;
        grant(&app, &w.acme_member.1, json!(3)).await.assert_status(200);
        let (id, token) = app.impersonate(&w, w.acme_member.0).await;
        assert!(
            (common::claims(&token)["exp"].as_i64().unwrap()
                - common::claims(&token)["iat"].as_i64().unwrap()
                - 3 * 3600)
                .abs()
                <= 1
        );
        // The user shortens their consent to one hour: the session follows,
        // and so do the banner and introspection, though the signed `exp` cannot.
        grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
        let banner = app.get("/api/v1/me", Some(&token)).await.assert_status(200)["impersonation"].clone();
        assert!((3590..=3600).contains(&banner["expires_in"].as_i64().unwrap()), "{banner}");
        let form = format!("token={token}").into_bytes();
        let admin = app.admin().await;
        let seen = app
            .send(Method::POST, "/oauth/introspect", Some(&admin), Some(("application/x-www-form-urlencoded", form)))
            .await;
        let expires_at = time::OffsetDateTime::parse(
            banner["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(seen.assert_status(200)["exp"].as_i64(), Some(expires_at.unix_timestamp()));
        // A longer consent granted now renews nothing: sessions never grow.
        grant(&app, &w.acme_member.1, json!(168)).await.assert_status(200);
        let banner = app.get("/api/v1/me", Some(&token)).await.assert_status(200)["impersonation"].clone();
        assert_eq!(
            banner["expires_at"].as_str(),
            Some(expires_at.format(&time::format_description::well_known::Rfc3339).unwrap().as_str())
        );
        app.state.clock.advance(Duration::minutes(59));
        let banner = app.get("/api/v1/me", Some(&token)).await.assert_status(200)["impersonation"].clone();
        assert!((50..=60).contains(&banner["expires_in"].as_i64().unwrap()), "{banner}");
        app.state.clock.advance(Duration::minutes(2));
        app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
        let admin = app.admin().await;
        let view = app.get(&format!("/api/v1/impersonations/{id}"), Some(&admin)).await;
        assert_eq!(view.body["status"], "expired", "{backend:?}");
    }
}

/// PostgreSQL: one admin impersonating two customer admins at once (two tabs),
/// each session editing the other's target while reading its own: the
/// sessions share their impersonator's row and touch each other's targets,
/// yet never wait for each other in a circle (no deadlock, no 503).
#[actix_web::test]
async fn two_sessions_of_one_admin_editing_each_others_targets_do_not_collide() {
    let Some(app) = TestApp::postgres().await else { return };
    let w = app.world().await;
    let (boss, ada) = (w.acme_admin.0, w.acme_member.0);
    app.patch(&format!("/api/v1/users/{ada}"), Some(&w.admin), json!({"role": "admin"})).await.assert_status(200);
    let ada_token = app.login("ada@acme.example", PASSWORD).await;
    grant(&app, &ada_token, json!(1)).await.assert_status(200);
    grant(&app, &w.acme_admin.1, json!(1)).await.assert_status(200);
    // Sam's row was created after both targets': a lock cycle needs that order.
    let staff = &w.owner_staff.1;
    let as_boss = start(&app, staff, boss, PASSWORD).await.assert_status(201)["access_token"].clone();
    let as_ada = start(&app, staff, ada, PASSWORD).await.assert_status(201)["access_token"].clone();
    let (as_boss, as_ada) = (as_boss.as_str().unwrap().to_owned(), as_ada.as_str().unwrap().to_owned());
    let mut calls = Vec::new();
    let app = &app;
    for i in 0..40 {
        let (token, other) = if i % 2 == 0 { (&as_boss, ada) } else { (&as_ada, boss) };
        let path = format!("/api/v1/users/{other}");
        calls.push(
            Box::pin(async move { app.patch(&path, Some(token), json!({"name": format!("Renamed {i}")})).await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = Response>>>,
        );
        calls.push(Box::pin(app.get("/api/v1/me/impersonation-consent", Some(token))));
    }
    let results = futures_util::future::join_all(calls).await;
    let refused: Vec<_> = results.iter().filter(|r| r.status.as_u16() != 200).map(|r| r.text.clone()).collect();
    assert!(refused.is_empty(), "{} of {} calls refused: {:?}", refused.len(), results.len(), refused.first());
}

/// PostgreSQL: a transaction that holds a user's row and never finishes (a
/// node paused mid-request) holds others up for at most `lock_timeout`, then
/// they get 503 with `Retry-After`; its own session is closed once idle in
/// its transaction for 30 s, which frees the row for everyone.
#[actix_web::test]
async fn a_stalled_lock_holder_delays_others_briefly_not_forever() {
    let Some(app) = TestApp::postgres().await else { return };
    let w = app.world().await;
    let mut stalled = app.state.pool.get().unwrap();
    let limits: Vec<String> = ["lock_timeout", "idle_in_transaction_session_timeout"]
        .iter()
        .map(|name| {
            #[derive(diesel::QueryableByName)]
            struct Setting {
                #[diesel(sql_type = diesel::sql_types::Text)]
                value: String,
            }
            let query = format!("SELECT current_setting('{name}') AS value");
            diesel::RunQueryDsl::get_result::<Setting>(diesel::sql_query(query), &mut *stalled).unwrap().value
        })
        .collect();
    assert_eq!(limits, ["10s", "30s"]);
    let lock = format!("BEGIN; SELECT id FROM users WHERE id = '{}' FOR UPDATE", w.acme_member.0);
    diesel::connection::SimpleConnection::batch_execute(&mut *stalled, &lock).unwrap();
    let started = std::time::Instant::now();
    let res = app.delete("/api/v1/me/impersonation-consent", Some(&w.acme_member.1)).await;
    res.assert_problem(503, "service_unavailable");
    assert_eq!(res.header("retry-after").as_deref(), Some("5"));
    assert!(started.elapsed() < StdDuration::from_secs(20), "waited {:?}", started.elapsed());
    diesel::connection::SimpleConnection::batch_execute(&mut *stalled, "ROLLBACK").unwrap();
    app.delete("/api/v1/me/impersonation-consent", Some(&w.acme_member.1)).await.assert_status(204);
}

/// PostgreSQL: a read that cannot be ordered against its session's end in
/// time (a change of the session stuck holding its row) answers 503 to retry,
/// and is logged as such.
#[actix_web::test]
async fn a_read_that_cannot_be_ordered_in_time_is_a_logged_503() {
    let Some(app) = TestApp::postgres().await else { return };
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    let mut stuck = app.state.pool.get().unwrap();
    let holding = format!("BEGIN; SELECT id FROM impersonation_sessions WHERE id = '{id}' FOR UPDATE");
    diesel::connection::SimpleConnection::batch_execute(&mut *stuck, &holding).unwrap();
    let res = app.get("/api/v1/me", Some(&token)).await;
    res.assert_problem(503, "service_unavailable");
    diesel::connection::SimpleConnection::batch_execute(&mut *stuck, "ROLLBACK").unwrap();
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM request_log WHERE status = 503"), 1);
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
}

/// SQLite: a write that cannot get the single writer in time (another write
/// stuck) is a 503 to retry, for impersonated requests and others alike.
#[actix_web::test]
async fn a_stuck_sqlite_writer_delays_others_briefly_not_forever() {
    let app = TestApp::sqlite().await;
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    let writer = app.state.sqlite_writer.clone().expect("SQLite has a single writer");
    let stuck = writer.lock().await;
    let started = std::time::Instant::now();
    let own = app.delete("/api/v1/me/impersonation-consent", Some(&w.acme_member.1));
    let impersonated = app.get("/api/v1/me/impersonation-consent", Some(&token));
    let (own, impersonated) = futures_util::future::join(own, impersonated).await;
    own.assert_problem(503, "service_unavailable");
    impersonated.assert_problem(503, "service_unavailable");
    // The impersonated request waits twice: for its transaction, then to log its 503.
    assert!(started.elapsed() < StdDuration::from_secs(28), "waited {:?}", started.elapsed());
    drop(stuck);
    app.delete("/api/v1/me/impersonation-consent", Some(&w.acme_member.1)).await.assert_status(204);
}

/// PostgreSQL, two nodes on one database: a token from either works on both,
/// and whatever ends a session on one node is refused on the other at once.
#[actix_web::test]
async fn revocation_on_one_node_is_refused_on_the_next_request_on_another() {
    let Some(a) = TestApp::postgres().await else { return };
    let b = a.another_node().await;
    let w = a.world().await;
    grant(&a, &w.acme_member.1, json!(1)).await.assert_status(200);
    grant(&b, &w.acme_eu_member.1, json!(1)).await.assert_status(200);
    let (_, on_a) = a.impersonate(&w, w.acme_member.0).await;
    let on_b = start(&b, &w.admin, w.acme_eu_member.0, ADMIN_PASSWORD).await.assert_status(201)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for node in [&a, &b] {
        node.get("/api/v1/me", Some(&on_a)).await.assert_status(200);
        node.get("/api/v1/me", Some(&on_b)).await.assert_status(200);
    }
    // The customer revokes on B: A refuses the session started on A.
    b.delete("/api/v1/me/impersonation-consent", Some(&w.acme_member.1)).await.assert_status(204);
    a.get("/api/v1/me", Some(&on_a)).await.assert_problem(401, "unauthorized");
    // A super admin suspends the other target on A: B refuses its session.
    let eu = format!("/api/v1/users/{}", w.acme_eu_member.0);
    a.patch(&eu, Some(&w.admin), json!({"status": "suspended"})).await.assert_status(200);
    b.get("/api/v1/me", Some(&on_b)).await.assert_problem(401, "unauthorized");
    // A login token logged out on B is refused on A.
    let token = a.login("sam@owner.example", PASSWORD).await;
    b.send(Method::POST, "/api/v1/auth/logout", Some(&token), None).await.assert_status(204);
    a.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    // Every other ending, made on one node, is refused on the other.
    grant(&a, &w.acme_member.1, json!(1)).await.assert_status(200);
    let (id, stopped) = a.impersonate(&w, w.acme_member.0).await;
    b.send(Method::POST, &format!("/api/v1/impersonations/{id}/stop"), Some(&w.admin), None).await.assert_status(204);
    a.get("/api/v1/me", Some(&stopped)).await.assert_problem(401, "unauthorized");
    let (_, logged_out) = a.impersonate(&w, w.acme_member.0).await;
    b.send(Method::POST, "/api/v1/auth/logout", Some(&logged_out), None).await.assert_status(204);
    a.get("/api/v1/me", Some(&logged_out)).await.assert_problem(401, "unauthorized");
    let (_, deleted) = a.impersonate(&w, w.acme_member.0).await;
    b.delete(&format!("/api/v1/users/{}", w.acme_member.0), Some(&w.admin)).await.assert_status(204);
    a.get("/api/v1/me", Some(&deleted)).await.assert_problem(401, "unauthorized");
    grant(&a, &w.globex_member.1, json!(1)).await.assert_status(200);
    let sam = a.login("sam@owner.example", PASSWORD).await;
    let by_sam = start(&a, &sam, w.globex_member.0, PASSWORD).await;
    let by_sam = by_sam.assert_status(201)["access_token"].as_str().unwrap().to_owned();
    let staff = format!("/api/v1/users/{}", w.owner_staff.0);
    b.patch(&staff, Some(&w.admin), json!({"status": "suspended"})).await.assert_status(200);
    a.get("/api/v1/me", Some(&by_sam)).await.assert_problem(401, "unauthorized");
    // Both nodes appended to one audit chain, and it holds.
    let verify = b.get("/api/v1/audit/verify", Some(&w.admin)).await;
    assert_eq!(verify.assert_status(200)["ok"], true);
}

/// PostgreSQL: wrong confirmations spread over two nodes count together.
#[actix_web::test]
async fn the_confirmation_limit_holds_across_nodes() {
    let Some(a) = TestApp::postgres().await else { return };
    let b = a.another_node().await;
    let w = a.world().await;
    grant(&a, &w.acme_member.1, json!(1)).await.assert_status(200);
    for node in [&a, &b, &a, &b, &a] {
        let res = start(node, &w.admin, w.acme_member.0, "not my password").await;
        res.assert_problem(403, "reauthentication_failed");
    }
    for node in [&b, &a] {
        let res = start(node, &w.admin, w.acme_member.0, ADMIN_PASSWORD).await;
        res.assert_problem(429, "rate_limited");
        assert!(res.header("retry-after").is_some());
    }
}

/// PostgreSQL: many parallel calls of one impersonation session, all stuck
/// behind a lock on the customer's row, hold at most two of the node's pooled
/// connections; the rest wait for their turn without one (SQLite has its
/// single-writer queue instead).
#[actix_web::test]
async fn a_burst_of_one_session_holds_at_most_two_connections() {
    let Some(app) = TestApp::postgres().await else { return };
    let w = app.world().await;
    grant(&app, &w.acme_member.1, json!(1)).await.assert_status(200);
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    // Someone else holds the customer's row (as a slow revocation would).
    let mut holder = app.state.pool.get().unwrap();
    let lock = format!("BEGIN; SELECT id FROM users WHERE id = '{}' FOR UPDATE", w.acme_member.0);
    diesel::connection::SimpleConnection::batch_execute(&mut *holder, &lock).unwrap();
    const CALLS: usize = 10;
    let burst = (0..CALLS).map(|_| app.get("/api/v1/me/impersonation-consent", Some(&token)));
    let observe_then_release = async {
        actix_web::rt::time::sleep(StdDuration::from_millis(700)).await;
        let pool = app.state.pool.state();
        let in_use = pool.connections - pool.idle_connections;
        diesel::connection::SimpleConnection::batch_execute(&mut *holder, "ROLLBACK").unwrap();
        in_use
    };
    let (answers, in_use) =
        futures_util::future::join(futures_util::future::join_all(burst), observe_then_release).await;
    for answer in &answers {
        answer.assert_status(200);
    }
    // The lock holder, and the session's two turns.
    assert!(in_use <= 3, "{in_use} connections in use while {CALLS} calls of one session waited");
}
