//! `GET /me` and changing one's own password.

mod common;

use common::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD};
use serde_json::json;

async fn me_shows_the_user_and_their_organization(app: TestApp) {
    let w = app.world().await;
    let res = app.get("/api/v1/me", Some(&w.acme_eu_member.1)).await;
    let body = res.assert_status(200);
    assert_eq!(body["user"]["id"], w.acme_eu_member.0.to_string());
    assert_eq!(body["user"]["email"], "eve@eu.acme.example");
    assert_eq!(body["user"]["role"], "member");
    assert_eq!(body["user"]["organization"]["id"], w.acme_eu.to_string());
    assert_eq!(body["user"]["organization"]["parent_id"], w.acme.to_string());
    assert_eq!(body["user"]["organization"]["depth"], 2);
    assert_eq!(body["impersonation"], serde_json::Value::Null);
}

/// SPEC §2: super admins hold `impersonate:users`; other owner-organization
/// users may impersonate the customers; nobody else, and nobody while
/// impersonating (no chaining).
async fn me_lists_the_impersonation_permission_the_caller_holds(app: TestApp) {
    let w = app.world().await;
    let permissions = |token: String| {
        let app = &app;
        async move { app.get("/api/v1/me", Some(&token)).await.assert_status(200)["permissions"].clone() }
    };
    assert_eq!(permissions(w.admin.clone()).await, json!(["impersonate:users"]));
    assert_eq!(permissions(w.owner_staff.1.clone()).await, json!(["impersonate:customers"]));
    assert_eq!(permissions(w.acme_admin.1.clone()).await, json!([]));
    assert_eq!(permissions(w.acme_member.1.clone()).await, json!([]));
    // A super admin impersonating owner staff gets none of the staff's.
    app.put("/api/v1/me/impersonation-consent", Some(&w.owner_staff.1), json!({"duration_hours": 1}))
        .await
        .assert_status(200);
    let start = json!({"target_user_id": w.owner_staff.0, "password": ADMIN_PASSWORD});
    let started = app.post("/api/v1/impersonations", Some(&w.admin), start).await;
    let token = started.assert_status(201)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(permissions(token).await, json!([]));
}

async fn changing_the_password_needs_the_current_one_and_ends_other_sessions(app: TestApp) {
    let current = app.admin().await;
    let other = app.admin().await;
    let new_password = "an entirely new passphrase";

    let wrong = app
        .put(
            "/api/v1/me/password",
            Some(&current),
            json!({"current_password": "nope nope nope", "new_password": new_password}),
        )
        .await;
    wrong.assert_problem(403, "reauthentication_failed");
    let short = app
        .put(
            "/api/v1/me/password",
            Some(&current),
            json!({"current_password": ADMIN_PASSWORD, "new_password": "short"}),
        )
        .await;
    short.assert_problem(422, "validation_failed");
    assert_eq!(short.body["errors"][0]["field"], "new_password");
    let same = app
        .put(
            "/api/v1/me/password",
            Some(&current),
            json!({"current_password": ADMIN_PASSWORD, "new_password": ADMIN_PASSWORD}),
        )
        .await;
    same.assert_problem(422, "validation_failed");
    // Nothing changed so far.
    app.get("/api/v1/me", Some(&other)).await.assert_status(200);

    let res = app
        .put(
            "/api/v1/me/password",
            Some(&current),
            json!({"current_password": ADMIN_PASSWORD, "new_password": new_password}),
        )
        .await;
    res.assert_status(204);
    app.get("/api/v1/me", Some(&current)).await.assert_status(200);
    app.get("/api/v1/me", Some(&other)).await.assert_problem(401, "unauthorized");
    app.try_login(ADMIN_EMAIL, ADMIN_PASSWORD).await.assert_problem(401, "invalid_credentials");
    app.login(ADMIN_EMAIL, new_password).await;
}

async fn wrong_current_passwords_are_rate_limited(app: TestApp) {
    let token = app.admin().await;
    // An empty one is not a guess: refused as invalid, and not counted.
    for _ in 0..6 {
        let body = json!({"current_password": "", "new_password": PASSWORD});
        app.put("/api/v1/me/password", Some(&token), body).await.assert_problem(422, "validation_failed");
    }
    for _ in 0..5 {
        let res = app
            .put(
                "/api/v1/me/password",
                Some(&token),
                json!({"current_password": "wrong guess!", "new_password": PASSWORD}),
            )
            .await;
        res.assert_problem(403, "reauthentication_failed");
    }
    let res = app
        .put("/api/v1/me/password", Some(&token), json!({"current_password": ADMIN_PASSWORD, "new_password": PASSWORD}))
        .await;
    res.assert_problem(429, "rate_limited");
    assert!(res.header("retry-after").is_some());
}

async fn of_two_concurrent_password_changes_exactly_one_wins(app: TestApp) {
    // Two sessions that both know the current password, each choosing a new one:
    // whoever commits first ends the other's session, so the other must not commit.
    let (first, second) = (app.admin().await, app.admin().await);
    let change = |token: &str, new_password: &str| {
        let body = json!({"current_password": ADMIN_PASSWORD, "new_password": new_password});
        let path = "/api/v1/me/password";
        let (app, token) = (&app, token.to_owned());
        async move { app.put(path, Some(&token), body).await }
    };
    let (a, b) = futures_util::future::join(
        change(&first, "the first new passphrase"),
        change(&second, "the second new passphrase"),
    )
    .await;
    let (winner, loser, winning_password, losing_password) = match (a.status.as_u16(), b.status.as_u16()) {
        (204, _) => (&first, &b, "the first new passphrase", "the second new passphrase"),
        (_, 204) => (&second, &a, "the second new passphrase", "the first new passphrase"),
        statuses => panic!("neither change won: {statuses:?}"),
    };
    assert_ne!(loser.status.as_u16(), 204, "both changes committed");
    assert!([401, 403].contains(&loser.status.as_u16()), "the loser got {}", loser.status);
    app.get("/api/v1/me", Some(winner)).await.assert_status(200);
    app.try_login(ADMIN_EMAIL, losing_password).await.assert_problem(401, "invalid_credentials");
    app.login(ADMIN_EMAIL, winning_password).await;

    // Twice from the same session (a double submit): the session stays, so
    // only the check that the verified password is still the current one stops
    // the second.
    let body = |new_password: &str| json!({"current_password": winning_password, "new_password": new_password});
    let (a, b) = futures_util::future::join(
        app.put("/api/v1/me/password", Some(winner), body("the third new passphrase")),
        app.put("/api/v1/me/password", Some(winner), body("the fourth new passphrase")),
    )
    .await;
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [204, 403], "exactly one change of the double submit commits");
}

backend_tests!(
    me_lists_the_impersonation_permission_the_caller_holds,
    me_shows_the_user_and_their_organization,
    changing_the_password_needs_the_current_one_and_ends_other_sessions,
    wrong_current_passwords_are_rate_limited,
    of_two_concurrent_password_changes_exactly_one_wins,
);
