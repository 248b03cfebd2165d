//! Users: create, list, read, update, soft delete, and who may do what.

mod common;

use std::collections::HashSet;

use common::{TestApp, PASSWORD};
use serde_json::{json, Value};

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect()
}

async fn super_admin_manages_a_user_through_its_life(app: TestApp) {
    let w = app.world().await;
    let res = app
        .post("/api/v1/users", Some(&w.admin), json!({"email": "  New.Person@Acme.Example ", "name": " New Person ", "password": PASSWORD, "organization_id": w.acme}))
        .await;
    let created = res.assert_status(201).clone();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(res.header("location"), Some(format!("/api/v1/users/{id}")));
    assert_eq!(created["email"], "new.person@acme.example");
    assert_eq!(created["name"], "New Person");
    assert_eq!(created["role"], "member");
    assert_eq!(created["status"], "active");
    assert!(created.get("password_hash").is_none() && created.get("password").is_none());

    let read = app.get(&format!("/api/v1/users/{id}"), Some(&w.admin)).await;
    let mut read = read.assert_status(200).clone();
    let flag = read.as_object_mut().unwrap().remove("impersonation").unwrap();
    assert_eq!(read, created);
    assert_eq!(flag, json!({"available": false, "consent_expires_at": null}));

    let updated =
        app.patch(&format!("/api/v1/users/{id}"), Some(&w.admin), json!({"name": "Renamed", "role": "admin"})).await;
    let updated = updated.assert_status(200);
    assert_eq!((updated["name"].as_str(), updated["role"].as_str()), (Some("Renamed"), Some("admin")));

    let token = app.login("new.person@acme.example", PASSWORD).await;
    app.delete(&format!("/api/v1/users/{id}"), Some(&w.admin)).await.assert_status(204);
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    app.try_login("new.person@acme.example", PASSWORD).await.assert_problem(401, "invalid_credentials");
    let read = app.get(&format!("/api/v1/users/{id}"), Some(&w.admin)).await;
    assert_eq!(read.assert_status(200)["status"], "deleted");
    let listed = app.get("/api/v1/users?q=new.person", Some(&w.admin)).await;
    assert!(ids(listed.assert_status(200)).is_empty());
    let listed = app.get("/api/v1/users?q=new.person&status=deleted", Some(&w.admin)).await;
    assert_eq!(ids(listed.assert_status(200)), vec![id.clone()]);
    // Deleting again is a no-op; changing a deleted user is a conflict.
    app.delete(&format!("/api/v1/users/{id}"), Some(&w.admin)).await.assert_status(204);
    app.patch(&format!("/api/v1/users/{id}"), Some(&w.admin), json!({"name": "Back"}))
        .await
        .assert_problem(409, "user_deleted");
    // The email is free again.
    app.post(
        "/api/v1/users",
        Some(&w.admin),
        json!({"email": "new.person@acme.example", "name": "Again", "password": PASSWORD, "organization_id": w.acme}),
    )
    .await
    .assert_status(201);
}

async fn emails_are_unique_whatever_their_case(app: TestApp) {
    let w = app.world().await;
    let res = app
        .post(
            "/api/v1/users",
            Some(&w.admin),
            json!({"email": "ADA@acme.example", "name": "Twin", "password": PASSWORD, "organization_id": w.acme}),
        )
        .await;
    res.assert_problem(409, "email_taken");
}

async fn invalid_users_are_refused_field_by_field(app: TestApp) {
    let w = app.world().await;
    let res = app
        .post("/api/v1/users", Some(&w.admin), json!({"email": "not-an-email", "name": "", "password": "short"}))
        .await;
    res.assert_problem(422, "validation_failed");
    let fields: HashSet<&str> =
        res.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, HashSet::from(["email", "name", "password"]));
    // A look-alike of an existing address (an invisible character inside),
    // and a name that reorders how it displays.
    let body = json!({"email": "ada\u{200B}@acme.example", "name": "Ada \u{202E}nimda", "password": PASSWORD});
    let res = app.post("/api/v1/users", Some(&w.admin), body).await;
    res.assert_problem(422, "validation_failed");
    let fields: HashSet<&str> =
        res.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, HashSet::from(["email", "name"]));
    // A full-width look-alike, which mail systems deliver to the same mailbox.
    let body = json!({"email": "ａｄａ@acme.example", "name": "Ada", "password": PASSWORD});
    let res = app.post("/api/v1/users", Some(&w.admin), body).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "email");
    let res = app.post("/api/v1/users", Some(&w.admin), json!({"email": "x@y.example", "name": "X"})).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "password");
    let res = app
        .post(
            "/api/v1/users",
            Some(&w.admin),
            json!({"email": "x@y.example", "name": "X", "password": PASSWORD, "role": "god"}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    let res = app
        .post(
            "/api/v1/users",
            Some(&w.admin),
            json!({"email": "x@y.example", "name": "X", "password": PASSWORD, "is_admin": true}),
        )
        .await;
    res.assert_problem(422, "validation_failed");
    let res = app
        .post(
            "/api/v1/users",
            Some(&w.admin),
            json!({"email": "x@y.example", "name": "X", "password": PASSWORD, "organization_id": uuid::Uuid::now_v7()}),
        )
        .await;
    res.assert_problem(404, "not_found");
    // A change: null is not "leave it".
    let ada = format!("/api/v1/users/{}", w.acme_member.0);
    for field in ["name", "role", "status"] {
        let res = app.patch(&ada, Some(&w.admin), json!({ field: null })).await;
        res.assert_problem(422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], field, "{}", res.text);
    }
    // The answer to a change reads like the answer to GET.
    let changed = app.patch(&ada, Some(&w.admin), json!({"name": "Ada L."})).await;
    assert_eq!(changed.assert_status(200)["name"], "Ada L.");
    assert_eq!(changed.body, app.get(&ada, Some(&w.admin)).await.body);
}

async fn lists_page_newest_first_without_gaps_or_repeats(app: TestApp) {
    let w = app.world().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created
            .push(app.create_user(&w.admin, &format!("page{i}@globex.example"), w.globex, "member").await.to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?organization_id={}&limit=2&cursor={c}", w.globex),
            None => format!("/api/v1/users?organization_id={}&limit=2", w.globex),
        };
        let page = app.get(&path, Some(&w.admin)).await;
        let page = page.assert_status(200).clone();
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<String> = created.into_iter().rev().collect();
    expected.push(w.globex_member.0.to_string());
    assert_eq!(seen, expected);
    app.get("/api/v1/users?limit=0", Some(&w.admin)).await.assert_problem(422, "validation_failed");
    app.get("/api/v1/users?limit=abc", Some(&w.admin)).await.assert_problem(422, "validation_failed");
    app.get("/api/v1/users?cursor=!!", Some(&w.admin)).await.assert_problem(422, "validation_failed");
}

async fn search_matches_email_or_name_case_insensitively_and_literally(app: TestApp) {
    let w = app.world().await;
    let admin = &w.admin;
    app.post("/api/v1/users", Some(admin), json!({"email": "grace@navy.example", "name": "Grace HOPPER", "password": PASSWORD, "organization_id": w.globex})).await.assert_status(201);
    let by_name = app.get("/api/v1/users?q=hopper", Some(admin)).await;
    assert_eq!(by_name.assert_status(200)["items"][0]["email"], "grace@navy.example");
    let by_email = app.get("/api/v1/users?q=NAVY.EX", Some(admin)).await;
    assert_eq!(ids(by_email.assert_status(200)).len(), 1);
    // LIKE wildcards in the query match only themselves.
    for wildcard in ["%25", "_", "%5C"] {
        let res = app.get(&format!("/api/v1/users?q={wildcard}"), Some(admin)).await;
        assert!(ids(res.assert_status(200)).is_empty(), "q={wildcard} matched");
    }
}

async fn admins_see_and_manage_only_their_subtree(app: TestApp) {
    let w = app.world().await;
    let boss = &w.acme_admin.1;
    let listed = app.get("/api/v1/users", Some(boss)).await;
    let seen: HashSet<String> = ids(listed.assert_status(200)).into_iter().collect();
    let expected: HashSet<String> =
        [w.acme_admin.0, w.acme_member.0, w.acme_eu_member.0].iter().map(ToString::to_string).collect();
    assert_eq!(seen, expected);

    let globex_user = format!("/api/v1/users/{}", w.globex_member.0);
    app.get(&globex_user, Some(boss)).await.assert_problem(404, "not_found");
    app.patch(&globex_user, Some(boss), json!({"status": "suspended"})).await.assert_problem(404, "not_found");
    app.delete(&globex_user, Some(boss)).await.assert_problem(404, "not_found");
    let res = app
        .post(
            "/api/v1/users",
            Some(boss),
            json!({"email": "spy@globex.example", "name": "Spy", "password": PASSWORD, "organization_id": w.globex}),
        )
        .await;
    res.assert_problem(404, "not_found");
    app.get(&format!("/api/v1/users?organization_id={}", w.globex), Some(boss)).await.assert_problem(404, "not_found");

    // Within the subtree, everything works.
    app.create_user(boss, "new@eu.acme.example", w.acme_eu, "admin").await;
    let eve = format!("/api/v1/users/{}", w.acme_eu_member.0);
    app.patch(&eve, Some(boss), json!({"name": "Eve E."})).await.assert_status(200);
    app.get(&format!("/api/v1/users?organization_id={}", w.acme_eu), Some(boss)).await.assert_status(200);
}

async fn members_see_only_themselves(app: TestApp) {
    let w = app.world().await;
    let (ada_id, ada) = &w.acme_member;
    let listed = app.get("/api/v1/users", Some(ada)).await;
    assert_eq!(ids(listed.assert_status(200)), vec![ada_id.to_string()]);
    app.get(&format!("/api/v1/users/{ada_id}"), Some(ada)).await.assert_status(200);
    app.get(&format!("/api/v1/users/{}", w.acme_admin.0), Some(ada)).await.assert_problem(404, "not_found");
    let res = app
        .post("/api/v1/users", Some(ada), json!({"email": "x@acme.example", "name": "X", "password": PASSWORD}))
        .await;
    res.assert_problem(403, "forbidden");
    app.patch(&format!("/api/v1/users/{ada_id}"), Some(ada), json!({"name": "Ada L."})).await.assert_status(200);
    app.patch(&format!("/api/v1/users/{ada_id}"), Some(ada), json!({"role": "admin"}))
        .await
        .assert_problem(403, "forbidden");
    app.delete(&format!("/api/v1/users/{ada_id}"), Some(ada)).await.assert_problem(403, "forbidden");
}

async fn super_admin_is_granted_only_by_owner_organization_users(app: TestApp) {
    let w = app.world().await;
    let ada = format!("/api/v1/users/{}", w.acme_member.0);
    // A customer admin: not an owner-organization user.
    app.patch(&ada, Some(&w.acme_admin.1), json!({"role": "super_admin"})).await.assert_problem(403, "forbidden");
    // An owner-organization admin may not grant a role above their own.
    let staff_peer = app.create_user(&w.admin, "pat@owner.example", w.owner_org, "member").await;
    let res =
        app.patch(&format!("/api/v1/users/{staff_peer}"), Some(&w.owner_staff.1), json!({"role": "super_admin"})).await;
    res.assert_problem(403, "forbidden");
    // super_admin is a platform role: not for customer users, even from a super admin.
    app.patch(&ada, Some(&w.admin), json!({"role": "super_admin"})).await.assert_problem(422, "validation_failed");
    let res = app.patch(&format!("/api/v1/users/{staff_peer}"), Some(&w.admin), json!({"role": "super_admin"})).await;
    assert_eq!(res.assert_status(200)["role"], "super_admin");
    // Admins cannot touch a super admin.
    let res =
        app.patch(&format!("/api/v1/users/{staff_peer}"), Some(&w.owner_staff.1), json!({"status": "suspended"})).await;
    res.assert_problem(403, "forbidden");
}

async fn nobody_suspends_demotes_or_deletes_themself(app: TestApp) {
    let w = app.world().await;
    let me = app.get("/api/v1/me", Some(&w.admin)).await;
    let id = me.body["user"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/users/{id}");
    app.patch(&path, Some(&w.admin), json!({"status": "suspended"})).await.assert_problem(403, "forbidden");
    app.patch(&path, Some(&w.admin), json!({"role": "member"})).await.assert_problem(403, "forbidden");
    app.delete(&path, Some(&w.admin)).await.assert_problem(403, "forbidden");
    app.patch(&path, Some(&w.admin), json!({"status": "deleted"})).await.assert_problem(403, "forbidden");
}

async fn suspending_ends_sessions_and_reactivating_allows_login(app: TestApp) {
    let w = app.world().await;
    let (eve_id, eve) = &w.acme_eu_member;
    let path = format!("/api/v1/users/{eve_id}");
    app.get("/api/v1/me", Some(eve)).await.assert_status(200);
    let res = app.patch(&path, Some(&w.acme_admin.1), json!({"status": "suspended"})).await;
    assert_eq!(res.assert_status(200)["status"], "suspended");
    app.get("/api/v1/me", Some(eve)).await.assert_problem(401, "unauthorized");
    app.try_login("eve@eu.acme.example", PASSWORD).await.assert_problem(401, "invalid_credentials");
    app.patch(&path, Some(&w.acme_admin.1), json!({"status": "active"})).await.assert_status(200);
    // The old session stays ended; a new login works.
    app.get("/api/v1/me", Some(eve)).await.assert_problem(401, "unauthorized");
    app.login("eve@eu.acme.example", PASSWORD).await;
}

async fn a_role_change_ends_the_users_login_sessions(app: TestApp) {
    let w = app.world().await;
    let (eve_id, eve) = &w.acme_eu_member;
    let path = format!("/api/v1/users/{eve_id}");
    // Renaming, or "changing" to the same role, leaves the session alone.
    app.patch(&path, Some(&w.acme_admin.1), json!({"name": "Eve E.", "role": "member"})).await.assert_status(200);
    app.get("/api/v1/me", Some(eve)).await.assert_status(200);
    // Someone is acting as Eve when her role changes.
    let consent = json!({"duration_hours": 1});
    app.put("/api/v1/me/impersonation-consent", Some(eve), consent).await.assert_status(200);
    let start = json!({"target_user_id": eve_id, "password": common::ADMIN_PASSWORD});
    let started = app.post("/api/v1/impersonations", Some(&w.admin), start).await;
    let as_eve = started.assert_status(201)["access_token"].as_str().unwrap().to_owned();
    let res = app.patch(&path, Some(&w.acme_admin.1), json!({"role": "admin"})).await;
    assert_eq!(res.assert_status(200)["role"], "admin");
    // The old token says `member`: it must not live on beside the new role.
    app.get("/api/v1/me", Some(eve)).await.assert_problem(401, "unauthorized");
    app.get("/api/v1/me", Some(&as_eve)).await.assert_problem(401, "unauthorized");
    // The admin who made the change is not logged out.
    app.get("/api/v1/me", Some(&w.acme_admin.1)).await.assert_status(200);
    let fresh = app.login("eve@eu.acme.example", PASSWORD).await;
    let claims = fresh.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["role"], "admin");
}

async fn status_deleted_must_go_through_delete(app: TestApp) {
    let w = app.world().await;
    let res =
        app.patch(&format!("/api/v1/users/{}", w.acme_member.0), Some(&w.admin), json!({"status": "deleted"})).await;
    res.assert_problem(422, "validation_failed");
}

async fn members_cannot_change_or_delete_others(app: TestApp) {
    let w = app.world().await;
    let (_, ada) = &w.acme_member;
    for other in [w.acme_admin.0, w.acme_eu_member.0, w.globex_member.0] {
        let path = format!("/api/v1/users/{other}");
        app.patch(&path, Some(ada), json!({"name": "Mallory"})).await.assert_problem(404, "not_found");
        app.delete(&path, Some(ada)).await.assert_problem(404, "not_found");
    }
}

async fn customer_admins_cannot_create_super_admins(app: TestApp) {
    let w = app.world().await;
    let body = json!({"email": "x@acme.example", "name": "X", "password": PASSWORD, "organization_id": w.acme, "role": "super_admin"});
    app.post("/api/v1/users", Some(&w.acme_admin.1), body).await.assert_problem(403, "forbidden");
    let body = json!({"email": "y@acme.example", "name": "Y", "password": PASSWORD, "organization_id": w.acme, "role": "admin"});
    app.post("/api/v1/users", Some(&w.acme_admin.1), body).await.assert_status(201);
}

async fn search_folds_case_beyond_ascii(app: TestApp) {
    let w = app.world().await;
    let body = json!({"email": "elodie@globex.example", "name": "ÉLODIE Ørsted", "password": PASSWORD, "organization_id": w.globex});
    app.post("/api/v1/users", Some(&w.admin), body).await.assert_status(201);
    // é and Ø, percent-encoded as a browser would send them.
    for q in ["%C3%A9lodie", "%C3%98RSTED", "%C3%89LODIE"] {
        let res = app.get(&format!("/api/v1/users?q={q}"), Some(&w.admin)).await;
        assert_eq!(ids(res.assert_status(200)).len(), 1, "q={q}");
    }
    // Σ lower-cases to ς at the end of a word and to σ inside one: a search
    // for the start of a word still finds it.
    let body = json!({"email": "ΟΔΥΣΣΕΥΣ@globex.example", "name": "ΟΔΥΣΣΕΥΣ", "password": PASSWORD, "organization_id": w.globex});
    app.post("/api/v1/users", Some(&w.admin), body).await.assert_status(201);
    for q in ["ΟΔΥΣ", "οδυσσευς", "ΟΔΥΣΣΕΥΣ", "ευσ", "ΟΔΥΣΣΕΥΣ@GLOBEX", "οδυσσευς@globex"]
    {
        let encoded: String = q.bytes().map(|b| format!("%{b:02X}")).collect();
        let res = app.get(&format!("/api/v1/users?q={encoded}"), Some(&w.admin)).await;
        assert_eq!(ids(res.assert_status(200)).len(), 1, "q={q}");
    }
}

/// An admin suspended while their own request is on its way changes nobody:
/// the write decides on the caller as the database has them at that moment.
/// Here the suspension holds the admin's row (as the service's does) and
/// commits only after the request has been authenticated.
async fn a_caller_suspended_mid_request_changes_nobody(app: TestApp) {
    let w = app.world().await;
    let member = format!("/api/v1/users/{}", w.acme_member.0);
    let suspend = format!("UPDATE users SET status = 'suspended' WHERE id = '{}'", w.acme_admin.0);
    let change = app.patch(&member, Some(&w.acme_admin.1), json!({"status": "suspended"}));
    let delay = std::time::Duration::from_millis(500);
    let res = app.commit_during(("users", w.acme_admin.0), &suspend, delay, change, || {}).await;
    res.assert_problem(401, "unauthorized");
    let member = app.get(&member, Some(&w.admin)).await;
    assert_eq!(member.assert_status(200)["status"], "active");
    // Creating users and organizations is checked the same way.
    for (path, body) in [
        ("/api/v1/users", json!({"email": "late@acme.example", "name": "Late", "password": PASSWORD})),
        ("/api/v1/organizations", json!({"name": "Late Corp"})),
    ] {
        app.post(path, Some(&w.acme_admin.1), body).await.assert_problem(401, "unauthorized");
    }
}

/// A caller whose login runs out while the change waits for its turn is
/// judged when the turn comes: too late.
async fn a_login_that_expires_while_waiting_changes_nobody(app: TestApp) {
    let w = app.world().await;
    let member = format!("/api/v1/users/{}", w.acme_member.0);
    app.state.clock.advance(time::Duration::minutes(59));
    let admin = app.login("boss@acme.example", PASSWORD).await;
    app.state.clock.advance(time::Duration::minutes(59));
    // Someone else holds the member's row (PostgreSQL) or the writer (SQLite).
    let change = app.patch(&member, Some(&admin), json!({"status": "suspended"}));
    let delay = std::time::Duration::from_millis(500);
    let later = || app.state.clock.advance(time::Duration::minutes(2));
    let res = app.commit_during(("users", w.acme_member.0), "SELECT 1", delay, change, later).await;
    res.assert_problem(401, "unauthorized");
    assert_eq!(app.get(&member, Some(&app.admin().await)).await.body["status"], "active");
}

backend_tests!(
    a_login_that_expires_while_waiting_changes_nobody,
    a_caller_suspended_mid_request_changes_nobody,
    members_cannot_change_or_delete_others,
    customer_admins_cannot_create_super_admins,
    search_folds_case_beyond_ascii,
    super_admin_manages_a_user_through_its_life,
    emails_are_unique_whatever_their_case,
    invalid_users_are_refused_field_by_field,
    lists_page_newest_first_without_gaps_or_repeats,
    search_matches_email_or_name_case_insensitively_and_literally,
    admins_see_and_manage_only_their_subtree,
    members_see_only_themselves,
    super_admin_is_granted_only_by_owner_organization_users,
    nobody_suspends_demotes_or_deletes_themself,
    suspending_ends_sessions_and_reactivating_allows_login,
    a_role_change_ends_the_users_login_sessions,
    status_deleted_must_go_through_delete,
);
