//! The organization tree and who may see which part of it.

mod common;

use std::collections::HashSet;

use common::TestApp;
use serde_json::json;

async fn super_admin_builds_a_tree_under_the_owner(app: TestApp) {
    let w = app.world().await;
    let res = app.get(&format!("/api/v1/organizations/{}", w.acme_eu), Some(&w.admin)).await;
    let org = res.assert_status(200);
    assert_eq!(org["name"], "Acme EU");
    assert_eq!(org["parent_id"], w.acme.to_string());
    assert_eq!(org["depth"], 2);
    assert_eq!(org["is_owner"], false);
    let owner = app.get(&format!("/api/v1/organizations/{}", w.owner_org), Some(&w.admin)).await;
    let owner = owner.assert_status(200);
    assert_eq!(
        (owner["parent_id"].is_null(), owner["depth"].as_i64(), owner["is_owner"].as_bool()),
        (true, Some(0), Some(true))
    );

    let all = app.get("/api/v1/organizations", Some(&w.admin)).await;
    let names: Vec<&str> = all.body["items"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Globex", "Acme EU", "Acme", "Owner organization"]);
    let children = app.get(&format!("/api/v1/organizations?parent_id={}", w.owner_org), Some(&w.admin)).await;
    assert_eq!(children.body["items"].as_array().unwrap().len(), 2);
    let res = app.post("/api/v1/organizations", Some(&w.admin), json!({"name": "Initech"})).await;
    assert_eq!(res.assert_status(201)["parent_id"], w.owner_org.to_string());
    assert!(res.header("location").unwrap().starts_with("/api/v1/organizations/"));
}

async fn admins_work_only_in_their_subtree(app: TestApp) {
    let w = app.world().await;
    let boss = &w.acme_admin.1;
    let res = app.post("/api/v1/organizations", Some(boss), json!({"name": "Acme US"})).await;
    let us = res.assert_status(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(res.body["parent_id"], w.acme.to_string());
    let seen: HashSet<String> = app.get("/api/v1/organizations", Some(boss)).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, HashSet::from([w.acme.to_string(), w.acme_eu.to_string(), us]));
    app.get(&format!("/api/v1/organizations/{}", w.globex), Some(boss)).await.assert_problem(404, "not_found");
    app.get(&format!("/api/v1/organizations/{}", w.owner_org), Some(boss)).await.assert_problem(404, "not_found");
    app.post("/api/v1/organizations", Some(boss), json!({"name": "Sneaky", "parent_id": w.globex}))
        .await
        .assert_problem(404, "not_found");
}

async fn members_cannot_manage_organizations(app: TestApp) {
    let w = app.world().await;
    let ada = &w.acme_member.1;
    app.get("/api/v1/organizations", Some(ada)).await.assert_problem(403, "forbidden");
    app.get(&format!("/api/v1/organizations/{}", w.acme), Some(ada)).await.assert_problem(403, "forbidden");
    app.post("/api/v1/organizations", Some(ada), json!({"name": "Mine"})).await.assert_problem(403, "forbidden");
}

async fn invalid_organizations_are_refused(app: TestApp) {
    let w = app.world().await;
    app.post("/api/v1/organizations", Some(&w.admin), json!({"name": "   "}))
        .await
        .assert_problem(422, "validation_failed");
    app.post("/api/v1/organizations", Some(&w.admin), json!({"name": "x".repeat(201)}))
        .await
        .assert_problem(422, "validation_failed");
    app.post("/api/v1/organizations", Some(&w.admin), json!({"name": "Orphan", "parent_id": uuid::Uuid::now_v7()}))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/organizations/{}", uuid::Uuid::now_v7()), Some(&w.admin))
        .await
        .assert_problem(404, "not_found");
}

/// Nesting is bounded, the same on both backends (a path too long to index
/// would otherwise be a PostgreSQL error).
async fn organizations_nest_at_most_sixteen_levels(app: TestApp) {
    let w = app.world().await;
    // Acme EU is at depth 2; Acme's admin builds below it down to depth 16.
    let mut parent = w.acme_eu;
    for depth in 3..=16 {
        let body = json!({"name": format!("Level {depth}"), "parent_id": parent});
        let res = app.post("/api/v1/organizations", Some(&w.acme_admin.1), body).await;
        let org = res.assert_status(201);
        assert_eq!(org["depth"], depth);
        parent = org["id"].as_str().unwrap().parse().unwrap();
    }
    let res = app.post("/api/v1/organizations", Some(&w.admin), json!({"name": "Too deep", "parent_id": parent})).await;
    res.assert_problem(422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "parent_id");
    // Users still go anywhere in the tree.
    let user =
        json!({"email": "deep@acme.example", "name": "Deep", "password": common::PASSWORD, "organization_id": parent});
    app.post("/api/v1/users", Some(&w.admin), user).await.assert_status(201);
}

backend_tests!(
    organizations_nest_at_most_sixteen_levels,
    super_admin_builds_a_tree_under_the_owner,
    admins_work_only_in_their_subtree,
    members_cannot_manage_organizations,
    invalid_organizations_are_refused,
);
