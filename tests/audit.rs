//! The audit trail (SPEC §5): one redacted row per impersonated request, fail
//! closed, lifecycle events, who may read what, append-only and tamper-evident.

mod common;

use std::process::Command;

use awc::http::Method;
use common::{Backend, TestApp, ADMIN_PASSWORD};
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

async fn log_of(app: &TestApp, token: &str, session: &str) -> Vec<Value> {
    let res = app.get(&format!("/api/v1/impersonations/{session}/audit-log?limit=200"), Some(token)).await;
    res.assert_status(200)["items"].as_array().unwrap().clone()
}

fn statuses(rows: &[Value]) -> Vec<(String, i64)> {
    rows.iter()
        .map(|r| {
            (
                format!("{} {}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap()),
                r["status"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn every_impersonated_request_gets_exactly_one_row(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let before = app.scalar("SELECT COUNT(*) AS n FROM request_log");
    assert_eq!(before, 0, "requests without an impersonation token are not logged");
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    let ada = format!("/api/v1/users/{}", w.acme_member.0);
    let missing = format!("/api/v1/users/{}", Uuid::now_v7());
    let console = [("user-agent", "SupportConsole/2.1")];
    app.send_with(Method::GET, "/api/v1/me", Some(&token), None, &console).await.assert_status(200);
    app.get(&missing, Some(&token)).await.assert_problem(404, "not_found");
    app.delete("/api/v1/me/impersonation-consent", Some(&token)).await.assert_problem(403, "impersonation-restricted");
    app.patch(&ada, Some(&token), json!({"name": ""})).await.assert_problem(422, "validation_failed");
    app.get("/api/v1/nowhere", Some(&token)).await.assert_problem(404, "not_found");
    // An encoded control character is logged as sent (PostgreSQL text holds no NUL).
    app.get("/api/v1/no%00where", Some(&token)).await.assert_problem(404, "not_found");
    app.get("/.well-known/oauth-authorization-server/%00", Some(&token)).await.assert_problem(404, "not_found");
    // Escapes that are no text stay as sent; a direction override is shown escaped.
    app.get("/api/v1/users/%FF", Some(&token)).await.assert_problem(404, "not_found");
    app.get("/api/v1/users/%E2%80%AEfdp.exe", Some(&token)).await.assert_problem(404, "not_found");
    // An encoded `?` is part of the path, and stays encoded: no query to misread.
    app.get("/api/v1/me%3Fpassword=hunter2?x=1", Some(&token)).await.assert_problem(404, "not_found");
    app.send(Method::PUT, "/api/v1/me", Some(&token), None).await.assert_problem(405, "method_not_allowed");
    app.send(Method::POST, &format!("/api/v1/impersonations/{id}/stop"), Some(&token), None).await.assert_status(204);
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    // Admin calls made meanwhile are not logged.
    app.get("/api/v1/users", Some(&w.admin)).await.assert_status(200);

    let rows = log_of(&app, &w.admin, &id).await;
    let expected = vec![
        ("GET /api/v1/me".to_owned(), 401),
        (format!("POST /api/v1/impersonations/{id}/stop"), 204),
        ("PUT /api/v1/me".to_owned(), 405),
        ("GET /api/v1/me%3Fpassword=hunter2".to_owned(), 404),
        ("GET /api/v1/users/%E2%80%AEfdp.exe".to_owned(), 404),
        ("GET /api/v1/users/%FF".to_owned(), 404),
        ("GET /.well-known/oauth-authorization-server/%00".to_owned(), 404),
        ("GET /api/v1/no%00where".to_owned(), 404),
        ("GET /api/v1/nowhere".to_owned(), 404),
        (format!("PATCH {ada}"), 422),
        ("DELETE /api/v1/me/impersonation-consent".to_owned(), 403),
        (format!("GET {missing}"), 404),
        ("GET /api/v1/me".to_owned(), 200),
    ];
    assert_eq!(statuses(&rows), expected);
    assert_eq!(rows[3]["query"], "x=1");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM request_log"), 13);
    let first = rows.last().unwrap();
    assert_eq!((first["ip"].as_str(), first["user_agent"].as_str()), (Some("127.0.0.1"), Some("SupportConsole/2.1")));
    assert!(first["at"].is_string() && first["duration_ms"].as_i64().unwrap() >= 0);
}

async fn secrets_never_reach_the_database(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    let nested = json!({
        "name": "Ada",
        "password": "SECRET-PW-1",
        "profile": {"devices": [{"label": "phone", "push_token": "SECRET-TOKEN-2"}], "Authorization": "SECRET-AUTH-3", "Set-Cookie": "SECRET-COOKIE-19"},
        "password: SECRET-NAME-21": true,
        "list": [[{"api_key": "SECRET-KEY-4"}, {"apiKey": "SECRET-KEY-5"}]]
    });
    app.patch(&format!("/api/v1/users/{}", w.acme_member.0), Some(&token), nested)
        .await
        .assert_problem(422, "validation_failed");
    // Unknown parameters are refused, and logged (redacted) all the same.
    app.get(
        "/api/v1/users?q=ada&access_token=SECRET-QUERY-6&Client_Secret=SECRET-QUERY-7&cookie=SECRET-QUERY-20&authorization:Bearer%20SECRET-NAME-22",
        Some(&token),
    )
    .await
    .assert_problem(422, "validation_failed");
    let form = b"grant_type=x&subject_token=SECRET-FORM-8&password=SECRET-FORM-9&keep=visible".to_vec();
    app.send(Method::POST, "/api/v1/users", Some(&token), Some(("application/x-www-form-urlencoded", form))).await;
    let broken = br#"{"name" "x", "cookie": "SECRET-BROKEN-10"}"#.to_vec();
    app.send(Method::POST, "/api/v1/users", Some(&token), Some(("application/json", broken)))
        .await
        .assert_problem(400, "malformed_json");
    let text = b"note=hello\nsecret: SECRET-TEXT-11".to_vec();
    app.send(Method::POST, "/api/v1/users", Some(&token), Some(("text/plain", text))).await;
    let big = format!("{{\"name\": \"{}\", \"password\": \"SECRET-BIG-12\"}}", "x".repeat(20 * 1024));
    app.send(Method::POST, "/api/v1/users", Some(&token), Some(("application/json", big.into_bytes()))).await;
    let lines = b"Authorization: Bearer SECRET-LINE-13\npassword: correct horse SECRET-LINE-14\nnote: kept".to_vec();
    app.send(Method::POST, "/api/v1/users", Some(&token), Some(("text/plain", lines))).await;
    let escaped = br#"{"pass\u0077ord": "SECRET-ESCAPED-15", "#.to_vec();
    app.send(Method::POST, "/api/v1/users", Some(&token), Some(("application/json", escaped))).await;
    // JSON that serde refuses (a number out of range) holding a secret over
    // several lines, and a name spelt with the Kelvin sign.
    let refused = "{\"password\":[\n\"SECRET-LINES-17\"],\"to\u{212A}en\":\"SECRET-KELVIN-18\",\"n\":1e999}";
    app.send(Method::POST, "/api/v1/users", Some(&token), Some(("application/json", refused.into()))).await;
    let multipart =
        b"--B0und\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nSECRET-PART-16\r\n--B0und--\r\n";
    let multipart_type = "multipart/form-data; boundary=B0und";
    app.send(Method::POST, "/api/v1/users", Some(&token), Some((multipart_type, multipart.to_vec()))).await;

    let dump = app.request_log_dump();
    assert!(!dump.contains("SECRET-"), "a secret reached the request log:\n{dump}");
    let everything = app.database_dump();
    assert!(everything.contains(&id), "the dump covers the sessions");
    assert!(!everything.contains("SECRET-"), "a secret reached the database");
    assert!(dump.contains("[REDACTED]") && dump.contains("keep=visible"));
    let rows = log_of(&app, &w.admin, &id).await;
    let body = rows.iter().filter_map(|r| r["body"].as_str()).find(|b| b.starts_with("{\"name\":\"xxx")).unwrap();
    assert!(body.contains("…[truncated ") && body.len() < 17 * 1024, "{}", &body[body.len() - 60..]);
    let query_row = rows.iter().find(|r| r["method"] == "GET").unwrap();
    assert_eq!(
        query_row["query"],
        "q=ada&access_token=[REDACTED]&Client_Secret=[REDACTED]&cookie=[REDACTED]&authorization[REDACTED]=[REDACTED]"
    );
    let patch = rows.iter().find(|r| r["method"] == "PATCH").unwrap();
    assert!(patch["body"].as_str().unwrap().contains(r#""Set-Cookie":"[REDACTED]""#), "{}", patch["body"]);
}

async fn compressed_bodies_are_refused_not_acted_on_unread(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    // gzip of {"name":"Renamed quietly"}: had it been inflated and applied,
    // the log could only say "binary body" about what was changed.
    let gzipped: Vec<u8> = vec![
        31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 171, 86, 202, 75, 204, 77, 85, 178, 82, 10, 74, 5, 49, 82, 20, 10, 75, 51, 83,
        75, 114, 42, 149, 106, 1, 229, 162, 170, 174, 26, 0, 0, 0,
    ];
    let ada = format!("/api/v1/users/{}", w.acme_member.0);
    let name_before = app.get(&ada, Some(&w.admin)).await.assert_status(200)["name"].clone();
    for encoding in ["gzip", "deflate", "br"] {
        let res = app
            .send_with(
                Method::PATCH,
                &ada,
                Some(&token),
                Some(("application/json", gzipped.clone())),
                &[("content-encoding", encoding)],
            )
            .await;
        res.assert_problem(415, "unsupported_media_type");
        assert!(res.body["detail"].as_str().unwrap().contains("uncompressed"), "{}", res.text);
    }
    assert_eq!(app.get(&ada, Some(&w.admin)).await.assert_status(200)["name"], name_before);
    let form = gzipped.clone();
    let res = app
        .send_with(
            Method::POST,
            "/oauth/revoke",
            None,
            Some(("application/x-www-form-urlencoded", form)),
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!((res.status.as_u16(), res.body["code"].as_str()), (400, Some("unsupported_media_type")));
    assert_eq!(statuses(&log_of(&app, &w.admin, &id).await).len(), 3, "each refusal is logged");
    // `identity` is no encoding at all.
    let plain = br#"{"name":"Ada L."}"#.to_vec();
    app.send_with(
        Method::PATCH,
        &ada,
        Some(&token),
        Some(("application/json", plain)),
        &[("content-encoding", "identity")],
    )
    .await
    .assert_status(200);
}

async fn a_second_authorization_header_is_refused_and_logged(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    let impersonating = format!("Bearer {token}");
    let admin = format!("Bearer {}", w.admin);
    for pair in [["Bearer junk", impersonating.as_str()], [admin.as_str(), impersonating.as_str()]] {
        let headers = [("authorization", pair[0]), ("authorization", pair[1])];
        let res = app.send_with(Method::GET, "/api/v1/me", None, None, &headers).await;
        res.assert_problem(401, "unauthorized");
        assert!(res.body["detail"].as_str().unwrap().contains("one Authorization header"), "{}", res.text);
    }
    // Both in one header, comma-separated: refused the same way.
    for list in [format!("{admin}, {impersonating}"), format!("{impersonating},Bearer junk")] {
        let res = app.send_with(Method::GET, "/api/v1/me", None, None, &[("authorization", list.as_str())]).await;
        res.assert_problem(401, "unauthorized");
        assert!(res.body["detail"].as_str().unwrap().contains("one credential"), "{}", res.text);
    }
    // Neither credential counted, and the session's log shows every attempt.
    assert_eq!(statuses(&log_of(&app, &w.admin, &id).await), vec![("GET /api/v1/me".to_owned(), 401); 4]);
}

async fn the_log_is_written_with_the_request_or_not_at_all(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    let ada = format!("/api/v1/users/{}", w.acme_member.0);
    // The log cannot be written: the impersonated request is not performed.
    app.sql("ALTER TABLE request_log RENAME TO request_log_gone");
    let res = app.patch(&ada, Some(&token), json!({"name": "Changed by support"})).await;
    res.assert_problem(503, "service_unavailable");
    assert!(!res.text.contains("request_log"), "internal detail leaked: {}", res.text);
    // Nothing of it stayed; requests without an impersonation token go on.
    let read = app.get(&ada, Some(&w.admin)).await;
    assert_eq!(read.assert_status(200)["name"], "ada@acme.example");
    app.sql("ALTER TABLE request_log_gone RENAME TO request_log");
    app.patch(&ada, Some(&token), json!({"name": "Changed by support"})).await.assert_status(200);
    assert_eq!(app.get(&ada, Some(&w.admin)).await.body["name"], "Changed by support");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM request_log"), 1);
}

/// A request whose turn to write its row does not come in time (the SQLite
/// writer, or every turn of its session, held by requests stuck elsewhere)
/// is refused as unlogged: the fail-closed answer, saying so, not a vague
/// "busy". Once the turn is free again, the same call is answered and logged.
async fn a_request_whose_row_waits_too_long_is_refused_as_unlogged(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (session, token) = app.impersonate(&w, w.acme_member.0).await;
    let writer = match app.state.sqlite_writer.clone() {
        Some(writer) => Some(writer.lock_owned().await),
        None => None,
    };
    let mut turns = Vec::new();
    for _ in 0..actas::state::SessionTurns::CONNECTED {
        turns.push(app.state.session_turns.wait(session.parse().unwrap()).await);
    }
    let res = app.get("/api/v1/me", Some(&token)).await;
    res.assert_problem(503, "service_unavailable");
    let detail = res.body["detail"].as_str().unwrap();
    assert!(detail.starts_with("the audit log could not record this request"), "{detail}");
    assert!(res.header("retry-after").is_some());
    assert!(log_of(&app, &w.admin, &session).await.is_empty());
    drop((writer, turns));
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    assert_eq!(statuses(&log_of(&app, &w.admin, &session).await), [("GET /api/v1/me".to_owned(), 200)]);
}

/// A body that never finishes arriving is cut off after the deadline (408),
/// for anyone; with an impersonation token the cut-off call is logged.
async fn a_body_that_never_arrives_is_cut_off(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (session, token) = app.impersonate(&w, w.acme_member.0).await;
    // Announced by length, or chunked (one short chunk, then nothing).
    let stalled = |call: String, token: Option<String>, chunked: bool| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let framing = match chunked {
            true => "Transfer-Encoding: chunked\r\n\r\n4\r\n{\"na\r\n",
            false => "Content-Length: 100\r\n\r\n{\"na",
        };
        app.raw(format!("{call} HTTP/1.1\r\nHost: actas\r\n{auth}Content-Type: application/json\r\n{framing}"))
    };
    let started = std::time::Instant::now();
    let ada = format!("/api/v1/users/{}", w.acme_member.0);
    let (anonymous, chunked, impersonated) = futures_util::future::join3(
        stalled("POST /api/v1/auth/login".into(), None, false),
        stalled("POST /api/v1/auth/login".into(), None, true),
        stalled(format!("PATCH {ada}"), Some(token.clone()), false),
    )
    .await;
    // Answered at the deadline, and the connection closed with the answer.
    let waited = started.elapsed();
    for answer in [anonymous, chunked, impersonated] {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
    let deadline = actas::http::middleware::BODY_DEADLINE;
    assert!(waited >= deadline && waited < deadline * 2, "{waited:?}");
    let rows = log_of(&app, &w.admin, &session).await;
    assert_eq!(statuses(&rows), [(format!("PATCH {ada}"), 408)]);

    // A body announced larger than any endpoint takes is refused at once,
    // without waiting for it (a client asking `Expect: 100-continue` first).
    let too_large = |call: &str, auth: String, content_type: &str| {
        app.raw(format!(
            "{call} HTTP/1.1\r\nHost: actas\r\n{auth}Content-Type: {content_type}\r\n\
             Expect: 100-continue\r\nContent-Length: 2000000\r\n\r\n"
        ))
    };
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let started = std::time::Instant::now();
    let (impersonated, anonymous, form) = futures_util::future::join3(
        too_large(&format!("PATCH {ada}"), bearer, "application/json"),
        too_large("POST /api/v1/auth/login", String::new(), "application/json"),
        too_large("POST /oauth/token", String::new(), "application/x-www-form-urlencoded"),
    )
    .await;
    assert!(started.elapsed() < deadline, "{:?}", started.elapsed());
    for answer in [impersonated, anonymous, form] {
        assert!(answer.contains(" 413 "), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
    assert_eq!(log_of(&app, &w.admin, &session).await[0]["status"], 413);
}

/// Every list, walked two items at a time, gives exactly its one-page
/// listing: no gaps, no repeats, the same order, newest first.
async fn every_list_pages_without_gaps_or_repeats(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (session, token) = app.impersonate(&w, w.acme_member.0).await;
        for _ in 0..3 {
            app.get("/api/v1/me", Some(&token)).await.assert_status(200);
        }
        sessions.push(session);
    }
    app.create_org(&w.admin, "Initech", None).await;
    let last = sessions.last().unwrap();
    let lists = [
        (&w.admin, "/api/v1/organizations".to_owned(), "created_at"),
        (&w.admin, "/api/v1/users".to_owned(), "created_at"),
        (&w.admin, "/api/v1/impersonations".to_owned(), "started_at"),
        (&w.admin, "/api/v1/audit/events".to_owned(), "at"),
        (&w.admin, format!("/api/v1/impersonations/{last}/audit-log"), "at"),
        (&w.acme_member.1, "/api/v1/me/impersonation-sessions".to_owned(), "started_at"),
        (&w.acme_member.1, format!("/api/v1/me/impersonation-sessions/{last}/audit-log"), "at"),
    ];
    for (token, list, time) in lists {
        let whole = app.get(&format!("{list}?limit=200"), Some(token)).await;
        let whole = whole.assert_status(200)["items"].as_array().unwrap().clone();
        assert!(whole.len() >= 3, "{list}: {whole:?}");
        let times: Vec<&str> = whole.iter().map(|item| item[time].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{list} is not newest first: {times:?}");
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(cursor) => format!("{list}?limit=2&cursor={cursor}"),
                None => format!("{list}?limit=2"),
            };
            let page = app.get(&page_path, Some(token)).await;
            let page = page.assert_status(200);
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 2, "{list}");
            walked.extend(items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            assert!(walked.len() <= whole.len(), "{list} pages on past its items");
        }
        let ids = |items: &[Value]| items.iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&walked), ids(&whole), "{list}");
    }
}

async fn a_server_error_keeps_its_log_row_but_none_of_its_changes(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    // Stopping writes the session's end and then its event; make the event fail.
    match app.backend {
        Backend::Sqlite => app.sql(
            "CREATE TRIGGER refuse_stop BEFORE INSERT ON audit_events WHEN NEW.kind = 'impersonation_stopped' \
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
        ),
        Backend::Postgres => app.sql(
            "CREATE FUNCTION refuse_stop() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'refused by test'; END $$; \
             CREATE TRIGGER refuse_stop BEFORE INSERT ON audit_events FOR EACH ROW \
             WHEN (NEW.kind = 'impersonation_stopped') EXECUTE FUNCTION refuse_stop()",
        ),
    }
    let stop = format!("/api/v1/impersonations/{id}/stop");
    let res = app.send(Method::POST, &stop, Some(&token), None).await;
    res.assert_problem(500, "internal_error");
    assert!(!res.text.contains("refused by test"), "internal detail leaked: {}", res.text);
    // The session did not end: its token still works, and the failed call is on record.
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    let rows = log_of(&app, &w.admin, &id).await;
    assert_eq!(statuses(&rows), vec![("GET /api/v1/me".to_owned(), 200), (format!("POST {stop}"), 500)]);
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) AS n FROM impersonation_sessions WHERE id = '{id}' AND ended_at IS NULL")),
        1
    );
    assert_eq!(verify(&app, &w.admin).await["ok"], true);
}

async fn tokens_in_oauth_forms_are_logged_too(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    let form = |fields: &[(&str, &str)]| {
        ("application/x-www-form-urlencoded", serde_urlencoded::to_string(fields).unwrap().into_bytes())
    };
    let target = w.acme_eu_member.0.to_string();
    // A chaining attempt with the impersonation token as actor_token.
    // Spelled with an escape in the path: routed, and logged, all the same.
    let chained = app
        .send(
            Method::POST,
            "/%6fauth/token",
            None,
            Some(form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("actor_token", &token),
                ("actor_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                ("subject_token", &target),
                ("subject_token_type", "urn:actas:params:oauth:token-type:user-id"),
                ("password", "SECRET-PW-1"),
            ])),
        )
        .await;
    assert_eq!((chained.status.as_u16(), chained.body["code"].as_str()), (403, Some("chained_impersonation")));
    // The same attempt in an encoding the endpoint refuses is still the session's.
    let as_json = serde_json::to_vec(&json!({"grant_type": "x", "actor_token": token, "password": "SECRET-PW-2"}));
    let json_body = app.send(Method::POST, "/oauth/token", None, Some(("application/json", as_json.unwrap()))).await;
    assert_eq!((json_body.status.as_u16(), json_body.body["code"].as_str()), (400, Some("unsupported_media_type")));
    let multipart = format!("--b\r\nContent-Disposition: form-data; name=\"actor_token\"\r\n\r\n{token}\r\n--b--\r\n");
    let as_multipart = ("multipart/form-data; boundary=b", multipart.into_bytes());
    let multipart = app.send(Method::POST, "/oauth/revoke", None, Some(as_multipart)).await;
    assert_eq!(multipart.status.as_u16(), 400);
    // A service asking about the token does not use it: not in the session's log.
    let introspected =
        app.send(Method::POST, "/oauth/introspect", Some(&w.admin), Some(form(&[("token", &token)]))).await;
    assert_eq!(introspected.assert_status(200)["active"], true);
    // The tokens of two sessions in one request: neither is acted on, and
    // each session's log has the refusal.
    app.grant_consent(&w.acme_eu_member.1, 2).await;
    let (other_id, other) = app.impersonate(&w, w.acme_eu_member.0).await;
    let both = app.send(Method::POST, "/oauth/revoke", Some(&other), Some(form(&[("token", &token)]))).await;
    assert_eq!((both.status.as_u16(), both.body["code"].as_str()), (400, Some("several_sessions")));
    app.get("/api/v1/me", Some(&other)).await.assert_status(200);
    // Named in any field, the other session counts too: an ending never goes
    // unlogged in the session it ends.
    let aside = form(&[("actor_token", &other), ("token", &token)]);
    let both_in_form = app.send(Method::POST, "/oauth/revoke", None, Some(aside)).await;
    assert_eq!((both_in_form.status.as_u16(), both_in_form.body["code"].as_str()), (400, Some("several_sessions")));
    // Introspection asks about tokens, whatever the field: logged nowhere.
    let asked = form(&[("token", &token), ("subject_token", &token), ("actor_token", &other)]);
    app.send(Method::POST, "/oauth/introspect", Some(&w.admin), Some(asked)).await.assert_status(200);
    let revoked = app.send(Method::POST, "/oauth/%72evoke", None, Some(form(&[("token", &token)]))).await;
    assert_eq!(revoked.status.as_u16(), 200);
    // A login token in a form is not logged anywhere.
    app.send(Method::POST, "/oauth/revoke", None, Some(form(&[("token", &w.acme_member.1)]))).await;

    let rows = log_of(&app, &w.admin, &id).await;
    let expected = [
        ("POST /oauth/revoke", 200),
        ("POST /oauth/revoke", 400),
        ("POST /oauth/revoke", 400),
        ("POST /oauth/revoke", 400),
        ("POST /oauth/token", 400),
        ("POST /oauth/token", 403),
    ];
    assert_eq!(statuses(&rows), expected.map(|(call, status)| (call.to_owned(), status)));
    let other_rows = log_of(&app, &w.admin, &other_id).await;
    let expected = [("POST /oauth/revoke", 400), ("GET /api/v1/me", 200), ("POST /oauth/revoke", 400)];
    assert_eq!(statuses(&other_rows), expected.map(|(call, status)| (call.to_owned(), status)));
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM request_log"), 9);
    let dump = app.request_log_dump();
    assert!(!dump.contains(&token) && !dump.contains("SECRET-PW-1") && !dump.contains("SECRET-PW-2"), "{dump}");
    assert!(dump.contains("actor_token=[REDACTED]"), "{dump}");
}

/// Every way a session ends is an event naming its reason: logout, and each
/// side suspended or deleted (the other ways are in the test above).
async fn every_ending_is_an_event_with_its_reason(app: TestApp) {
    let w = app.world().await;
    for (_, token) in [&w.acme_member, &w.acme_eu_member, &w.globex_member] {
        app.grant_consent(token, 2).await;
    }
    let staff = format!("/api/v1/users/{}", w.owner_staff.0);
    let start = |target: Uuid, token: String| {
        let app = &app;
        async move {
            let body = json!({"target_user_id": target, "password": common::PASSWORD});
            let res = app.post("/api/v1/impersonations", Some(&token), body).await;
            res.assert_status(201)["session_id"].as_str().unwrap().to_owned()
        }
    };
    let by_staff = start(w.acme_member.0, w.owner_staff.1.clone()).await;
    app.post("/api/v1/auth/logout", Some(&w.owner_staff.1), json!({})).await.assert_status(204);
    let staff_token = app.login("sam@owner.example", common::PASSWORD).await;
    let of_eu = start(w.acme_eu_member.0, staff_token.clone()).await;
    let of_globex = start(w.globex_member.0, staff_token.clone()).await;
    let by_suspended = start(w.acme_member.0, staff_token).await;
    app.patch(&format!("/api/v1/users/{}", w.acme_eu_member.0), Some(&w.admin), json!({"status": "suspended"}))
        .await
        .assert_status(200);
    app.delete(&format!("/api/v1/users/{}", w.globex_member.0), Some(&w.admin)).await.assert_status(204);
    app.patch(&staff, Some(&w.admin), json!({"status": "suspended"})).await.assert_status(200);
    for (session, reason) in [
        (by_staff, "logout"),
        (of_eu, "target_suspended"),
        (of_globex, "target_deleted"),
        (by_suspended, "impersonator_suspended"),
    ] {
        let events = app.get(&format!("/api/v1/audit/events?session_id={session}"), Some(&w.admin)).await;
        let ended = events.body["items"][0].clone();
        assert_eq!(
            (ended["kind"].as_str(), ended["detail"]["end_reason"].as_str()),
            (Some("impersonation_ended"), Some(reason))
        );
        assert_eq!(events.body["items"].as_array().unwrap().len(), 2, "{}", events.text);
    }
}

async fn lifecycle_events_are_recorded_with_who_where_and_when(app: TestApp) {
    let w = app.world().await;
    let (ada_id, ada) = &w.acme_member;
    app.grant_consent(ada, 3).await;
    let body = serde_json::to_vec(&json!({"target_user_id": ada_id, "password": ADMIN_PASSWORD})).unwrap();
    let res = app
        .send_with(
            Method::POST,
            "/api/v1/impersonations",
            Some(&w.admin),
            Some(("application/json", body)),
            &[("user-agent", "support-console/2.0")],
        )
        .await;
    let started = res.assert_status(201).clone();
    let (s1, t1) =
        (started["session_id"].as_str().unwrap().to_owned(), started["access_token"].as_str().unwrap().to_owned());
    app.send(Method::POST, &format!("/api/v1/impersonations/{s1}/stop"), Some(&t1), None).await.assert_status(204);
    let (s2, _) = app.impersonate(&w, *ada_id).await;
    app.delete("/api/v1/me/impersonation-consent", Some(ada)).await.assert_status(204);
    app.grant_consent(ada, 1).await;
    let (s3, _) = app.impersonate(&w, *ada_id).await;
    app.state.clock.advance(Duration::minutes(31));
    assert_eq!(actas::server::housekeeping(&app.state).await.unwrap(), 1);

    let admin = app.admin().await;
    let all = app.get(&format!("/api/v1/audit/events?user_id={ada_id}&limit=200"), Some(&admin)).await;
    let kinds: Vec<(String, Option<String>)> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["detail"]["end_reason"].as_str().map(str::to_owned)))
        .collect();
    let k = |kind: &str, reason: Option<&str>| (kind.to_owned(), reason.map(str::to_owned));
    assert_eq!(
        kinds,
        vec![
            k("impersonation_ended", Some("expired")),
            k("impersonation_started", None),
            k("consent_granted", None),
            k("impersonation_ended", Some("consent_revoked")),
            k("consent_revoked", None),
            k("impersonation_started", None),
            k("impersonation_stopped", Some("stopped")),
            k("impersonation_started", None),
            k("consent_granted", None),
        ]
    );
    let admin_id = app.get("/api/v1/me", Some(&admin)).await.body["user"]["id"].clone();
    let started = &all.body["items"][7];
    assert_eq!(started["actor_id"], admin_id);
    assert_eq!(started["subject_id"], ada_id.to_string());
    assert_eq!(started["session_id"], s1);
    assert_eq!(started["ip"], "127.0.0.1");
    assert_eq!(started["user_agent"], "support-console/2.0");
    assert!(started["at"].is_string());
    let expired = &all.body["items"][0];
    assert_eq!((expired["session_id"].as_str(), expired["actor_id"].is_null()), (Some(s3.as_str()), true));
    // A time in `detail` is written the way the API writes every time.
    assert_eq!(all.body["items"][4]["detail"]["consent_granted_at"], all.body["items"][8]["at"]);

    // Filters: session, kind, time range.
    let by_session = app.get(&format!("/api/v1/audit/events?session_id={s2}"), Some(&admin)).await;
    assert_eq!(by_session.body["items"].as_array().unwrap().len(), 2);
    let by_kind = app.get("/api/v1/audit/events?kind=consent_granted", Some(&admin)).await;
    assert_eq!(by_kind.body["items"].as_array().unwrap().len(), 2);
    let cut = all.body["items"][1]["at"].as_str().unwrap().to_owned();
    let since = app.get(&format!("/api/v1/audit/events?from={cut}"), Some(&admin)).await;
    assert_eq!(since.body["items"].as_array().unwrap().len(), 2);
    let until = app.get(&format!("/api/v1/audit/events?to={cut}&user_id={ada_id}"), Some(&admin)).await;
    assert_eq!(until.body["items"].as_array().unwrap().len(), 7);
    // By impersonator: every event of their sessions, also the ones they did not cause.
    let by_admin = app.get(&format!("/api/v1/audit/events?user_id={}", admin_id.as_str().unwrap()), Some(&admin)).await;
    let admin_kinds: Vec<&str> =
        by_admin.body["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        admin_kinds,
        [
            "impersonation_ended",
            "impersonation_started",
            "impersonation_ended",
            "impersonation_started",
            "impersonation_stopped",
            "impersonation_started"
        ]
    );
    let backwards = app.get(&format!("/api/v1/audit/events?from={cut}&to=2020-01-01T00:00:00Z"), Some(&admin)).await;
    backwards.assert_problem(422, "validation_failed");
    assert_eq!(backwards.body["errors"][0]["field"], "to");
    app.get("/api/v1/audit/events?kind=nonsense", Some(&admin)).await.assert_problem(422, "validation_failed");
    // Valid RFC 3339, but before year 0000 or after 9999 once in UTC.
    for edge in ["to=9999-12-31T23:59:59-23:59", "from=0000-01-01T00:00:00%2B23:59"] {
        let res = app.get(&format!("/api/v1/audit/events?{edge}"), Some(&admin)).await;
        res.assert_problem(422, "validation_failed");
    }
    app.get("/api/v1/audit/events", Some(&w.owner_staff.1)).await.assert_problem(403, "forbidden");
    app.get("/api/v1/audit/verify", Some(&w.acme_admin.1)).await.assert_problem(403, "forbidden");
}

async fn the_user_reads_their_own_history_and_nobody_else_does(app: TestApp) {
    let w = app.world().await;
    let (ada_id, ada) = &w.acme_member;
    app.grant_consent(ada, 2).await;
    let res = app
        .post(
            "/api/v1/impersonations",
            Some(&w.owner_staff.1),
            json!({"target_user_id": ada_id, "password": common::PASSWORD, "reason": "Ticket #7"}),
        )
        .await;
    let started = res.assert_status(201).clone();
    let (id, token) =
        (started["session_id"].as_str().unwrap().to_owned(), started["access_token"].as_str().unwrap().to_owned());
    for _ in 0..3 {
        app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    }
    app.state.clock.advance(Duration::minutes(2));
    app.send(Method::POST, &format!("/api/v1/impersonations/{id}/stop"), Some(&w.owner_staff.1), None)
        .await
        .assert_status(204);

    let mine = app.get("/api/v1/me/impersonation-sessions", Some(ada)).await;
    let session = &mine.assert_status(200)["items"][0];
    assert_eq!(session["id"], id);
    assert_eq!(
        session["impersonator"],
        json!({"id": w.owner_staff.0.to_string(), "email": "sam@owner.example", "name": "sam@owner.example"})
    );
    assert_eq!((session["status"].as_str(), session["end_reason"].as_str()), (Some("ended"), Some("stopped")));
    assert_eq!(session["request_count"], 3);
    assert_eq!(session["reason"], "Ticket #7");
    assert!(session["duration_seconds"].as_i64().unwrap() >= 120);
    assert!(session["started_at"].is_string() && session["ended_at"].is_string());

    let log = app.get(&format!("/api/v1/me/impersonation-sessions/{id}/audit-log"), Some(ada)).await;
    assert_eq!(log.assert_status(200)["items"].as_array().unwrap().len(), 3);
    // The impersonator and super admins read it through the session; nobody else at all.
    assert_eq!(log_of(&app, &w.owner_staff.1, &id).await.len(), 3);
    assert_eq!(log_of(&app, &w.admin, &id).await.len(), 3);
    for other in [&w.acme_admin.1, &w.acme_eu_member.1, &w.globex_member.1] {
        app.get(&format!("/api/v1/me/impersonation-sessions/{id}/audit-log"), Some(other))
            .await
            .assert_problem(404, "not_found");
        app.get(&format!("/api/v1/impersonations/{id}/audit-log"), Some(other)).await.assert_problem(404, "not_found");
    }
    app.get(&format!("/api/v1/me/impersonation-sessions/{id}/audit-log"), Some(&w.admin))
        .await
        .assert_problem(404, "not_found");
    let others = app.get("/api/v1/me/impersonation-sessions", Some(&w.acme_eu_member.1)).await;
    assert_eq!(others.body["items"], json!([]));
}

async fn log_pages_are_stable_while_rows_are_added(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    for i in 0..5 {
        app.get(&format!("/api/v1/me?n={i}"), Some(&token)).await.assert_status(200);
    }
    let path = format!("/api/v1/me/impersonation-sessions/{id}/audit-log");
    let first = app.get(&format!("{path}?limit=2"), Some(&w.acme_member.1)).await;
    let first = first.assert_status(200).clone();
    let queries = |page: &Value| {
        page["items"].as_array().unwrap().iter().map(|r| r["query"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(queries(&first), vec!["n=4", "n=3"]);
    // New rows arrive between pages; the next page continues where the first ended.
    for i in 5..8 {
        app.get(&format!("/api/v1/me?n={i}"), Some(&token)).await.assert_status(200);
    }
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app.get(&format!("{path}?limit=2&cursor={cursor}"), Some(&w.acme_member.1)).await;
    assert_eq!(queries(second.assert_status(200)), vec!["n=2", "n=1"]);
    let cursor = second.body["next_cursor"].as_str().unwrap();
    let last = app.get(&format!("{path}?limit=2&cursor={cursor}"), Some(&w.acme_member.1)).await;
    assert_eq!(queries(last.assert_status(200)), vec!["n=0"]);
    assert!(last.body["next_cursor"].is_null());
}

async fn verify(app: &TestApp, token: &str) -> Value {
    app.get("/api/v1/audit/verify", Some(token)).await.assert_status(200).clone()
}

async fn tampering_is_refused_and_detected(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    for _ in 0..4 {
        app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    }
    let report = verify(&app, &w.admin).await;
    assert_eq!((report["ok"].as_bool(), report["first_bad_id"].is_null()), (Some(true), true));
    assert_eq!(report["checked"].as_u64().unwrap(), 4 + app.scalar("SELECT COUNT(*) AS n FROM audit_events") as u64);

    // The database itself refuses changes to audit rows.
    assert!(app.try_sql("UPDATE request_log SET status = 500").is_err(), "an UPDATE of the request log went through");
    assert!(app.try_sql("DELETE FROM audit_events").is_err(), "a DELETE of events went through");

    // Someone with the power to disable the guard edits the second row.
    let rows = log_of(&app, &w.admin, &id).await;
    let victim = rows[2]["id"].as_str().unwrap().to_owned();
    match app.backend {
        Backend::Postgres => app.sql(&format!(
            "ALTER TABLE request_log DISABLE TRIGGER request_log_append_only; UPDATE request_log SET status = 418 WHERE id = '{victim}'"
        )),
        Backend::Sqlite => app.sql(&format!("DROP TRIGGER request_log_no_update; UPDATE request_log SET status = 418 WHERE id = '{victim}'")),
    }
    let report = verify(&app, &w.admin).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad_id"], victim);
    assert_eq!(report["chains"][0]["first_bad_id"], victim);
    assert_eq!(report["chains"][1]["ok"], true);

    // The command line says the same, and fails, on either backend.
    let out = Command::new(env!("CARGO_BIN_EXE_actas"))
        .args(["audit", "verify"])
        .env("ACTAS_DATABASE_URL", &app.state.config.database_url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((printed["ok"].as_bool(), printed["first_bad_id"].as_str()), (Some(false), Some(victim.as_str())));
    // Migrating a migrated database is a no-op that succeeds, and changes no row.
    let out = Command::new(env!("CARGO_BIN_EXE_actas"))
        .arg("migrate")
        .env("ACTAS_DATABASE_URL", &app.state.config.database_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(verify(&app, &w.admin).await["first_bad_id"], victim);
}

async fn rows_added_behind_the_service_are_reported(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    // Copies of a genuine row, far beyond the head and below the start.
    let (beyond, below) = (Uuid::now_v7(), Uuid::now_v7());
    for (forged, seq) in [(beyond, 1_000_000), (below, -5)] {
        app.sql(&format!(
            "INSERT INTO request_log (id, seq, session_id, at, method, path, query, status, duration_ms, ip, user_agent, body, prev_hash, hash) \
             SELECT '{forged}', {seq}, session_id, at, 'DELETE', path, query, status, duration_ms, ip, user_agent, body, prev_hash, hash \
             FROM request_log ORDER BY seq LIMIT 1"
        ));
    }
    assert_eq!(log_of(&app, &w.admin, &id).await.len(), 3, "the forged rows are visible to readers");
    let report = verify(&app, &w.admin).await;
    assert_eq!(report["ok"], false);
    let flagged = report["first_bad_id"].as_str().unwrap().to_owned();
    assert!([beyond.to_string(), below.to_string()].contains(&flagged), "{report}");
    assert_eq!(report["chains"][0]["problem"], "a row was added outside the chain");
}

/// Rows cut from the end of a chain, or an event edited, are reported too.
async fn a_cut_tail_and_an_edited_event_are_reported(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    for _ in 0..3 {
        app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    }
    let (unguard_log, unguard_events) = match app.backend {
        Backend::Postgres => (
            "ALTER TABLE request_log DISABLE TRIGGER request_log_append_only",
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        ),
        Backend::Sqlite => ("DROP TRIGGER request_log_no_delete", "DROP TRIGGER audit_events_no_update"),
    };
    app.sql(&format!("{unguard_log}; DELETE FROM request_log WHERE seq = (SELECT MAX(seq) FROM request_log)"));
    let report = verify(&app, &w.admin).await;
    assert_eq!((report["ok"].as_bool(), report["chains"][1]["ok"].as_bool()), (Some(false), Some(true)), "{report}");
    assert_eq!(report["chains"][0]["problem"], "rows at the end of the chain are missing", "{report}");

    let events = app.get("/api/v1/audit/events", Some(&w.admin)).await;
    let victim = events.body["items"][0]["id"].as_str().unwrap().to_owned();
    app.sql(&format!("{unguard_events}; UPDATE audit_events SET ip = '10.6.6.6' WHERE id = '{victim}'"));
    let report = verify(&app, &w.admin).await;
    assert_eq!(report["chains"][1]["ok"], false, "{report}");
    assert_eq!(report["chains"][1]["first_bad_id"], victim, "{report}");
}

async fn concurrent_writers_keep_one_chain(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    app.grant_consent(&w.globex_member.1, 2).await;
    let (_, a) = app.impersonate(&w, w.acme_member.0).await;
    let (_, b) = app.impersonate(&w, w.globex_member.0).await;
    let calls = (0..24).map(|i| {
        let token = if i % 2 == 0 { a.clone() } else { b.clone() };
        let app = &app;
        async move { app.get("/api/v1/me", Some(&token)).await }
    });
    for res in futures_util::future::join_all(calls).await {
        res.assert_status(200);
    }
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM request_log"), 24);
    assert_eq!(app.scalar("SELECT MAX(seq) AS n FROM request_log"), 24);
    let report = verify(&app, &w.admin).await;
    assert_eq!(report["ok"], true, "{report}");
}

async fn expired_tokens_and_oversized_bodies_are_logged_too(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (id, token) = app.impersonate(&w, w.acme_member.0).await;
    let big = vec![b'x'; 1024 * 1024 + 10];
    let res = app.send(Method::POST, "/api/v1/users", Some(&token), Some(("text/plain", big))).await;
    res.assert_problem(413, "payload_too_large");
    app.state.clock.advance(Duration::minutes(31));
    app.get("/api/v1/me", Some(&token)).await.assert_problem(401, "unauthorized");
    let admin = app.admin().await;
    let rows = log_of(&app, &admin, &id).await;
    assert_eq!(statuses(&rows), vec![("GET /api/v1/me".to_owned(), 401), ("POST /api/v1/users".to_owned(), 413)]);
    assert!(rows[1]["body"].as_str().unwrap().starts_with("[body not read"));
}

async fn restricted_actions_are_refused_before_the_body_is_read(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    let junk = || Some(("application/json", b"{not json".to_vec()));
    let res = app.send(Method::POST, "/api/v1/impersonations", Some(&token), junk()).await;
    assert_eq!((res.status.as_u16(), res.body["code"].as_str()), (403, Some("chained_impersonation")), "{}", res.text);
    let res = app.send(Method::PUT, "/api/v1/me/impersonation-consent", Some(&token), junk()).await;
    res.assert_problem(403, "impersonation-restricted");
    let res = app.send(Method::PUT, "/api/v1/me/password", Some(&token), junk()).await;
    res.assert_problem(403, "impersonation-restricted");
}

async fn verify_stays_green_while_rows_are_appended(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    let traffic = (0..30).map(|_| {
        let app = &app;
        let token = token.clone();
        async move { app.get("/api/v1/me", Some(&token)).await.assert_status(200).clone() }
    });
    let checks = (0..6).map(|_| {
        let app = &app;
        let admin = w.admin.clone();
        async move { verify(app, &admin).await }
    });
    let (_, reports) =
        futures_util::future::join(futures_util::future::join_all(traffic), futures_util::future::join_all(checks))
            .await;
    for report in reports {
        assert_eq!(report["ok"], true, "a false alarm under load: {report}");
    }
}

async fn a_session_ends_once_whoever_ends_it(app: TestApp) {
    let admin = app.admin().await;
    let customers = app.create_org(&admin, "Customers", None).await;
    let mut sessions = Vec::new();
    for i in 0..8 {
        let email = format!("racer{i}@customers.example");
        let id = app.create_user(&admin, &email, customers, "member").await;
        let token = app.login(&email, common::PASSWORD).await;
        app.grant_consent(&token, 2).await;
        let res = app
            .post("/api/v1/impersonations", Some(&admin), json!({"target_user_id": id, "password": ADMIN_PASSWORD}))
            .await;
        sessions.push((res.assert_status(201)["session_id"].as_str().unwrap().to_owned(), token));
    }
    let races = sessions.iter().map(|(id, target_token)| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let stop_path = format!("/api/v1/impersonations/{id}/stop");
            let stop = app.send(Method::POST, &stop_path, Some(&admin), None);
            let revoke = app.delete("/api/v1/me/impersonation-consent", Some(target_token));
            let (stopped, revoked) = futures_util::future::join(stop, revoke).await;
            stopped.assert_status(204);
            revoked.assert_status(204);
        }
    });
    futures_util::future::join_all(races).await;
    for (id, _) in &sessions {
        let ends = app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM audit_events WHERE session_id = '{id}' AND kind IN ('impersonation_stopped', 'impersonation_ended')"
        ));
        assert_eq!(ends, 1, "session {id} ended {ends} times");
    }
    assert_eq!(verify(&app, &admin).await["ok"], true);
}

async fn metrics_count_sessions_and_logged_requests(app: TestApp) {
    let w = app.world().await;
    app.grant_consent(&w.acme_member.1, 2).await;
    let (_, token) = app.impersonate(&w, w.acme_member.0).await;
    app.get("/api/v1/me", Some(&token)).await.assert_status(200);
    app.get("/api/v1/users/not-a-uuid", Some(&token)).await.assert_problem(404, "not_found");
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status.as_u16(), 200);
    assert!(res.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    for line in [
        "actas_impersonation_sessions_active 1",
        "actas_impersonated_requests_total 2",
        "actas_request_log_rows 2",
        "actas_consents_active 1",
        "# TYPE actas_http_responses_total counter",
    ] {
        assert!(res.text.lines().any(|l| l == line), "missing {line:?} in\n{}", res.text);
    }
    let ok: u64 = res
        .text
        .lines()
        .find_map(|l| l.strip_prefix("actas_http_responses_total{class=\"2xx\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ok >= 10, "{ok}");
    // Probes never look at the caller: a stale impersonation token sent along
    // (a browser tab's stored header) neither fails them nor goes unlogged.
    app.post("/api/v1/auth/logout", Some(&token), json!({})).await.assert_status(204);
    let rows = app.scalar("SELECT COUNT(*) AS n FROM request_log");
    for probe in ["/healthz", "/readyz", "/metrics"] {
        app.get(probe, Some(&token)).await.assert_status(200);
    }
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM request_log"), rows + 3);
}

backend_tests!(
    a_cut_tail_and_an_edited_event_are_reported,
    every_list_pages_without_gaps_or_repeats,
    a_body_that_never_arrives_is_cut_off,
    a_request_whose_row_waits_too_long_is_refused_as_unlogged,
    every_ending_is_an_event_with_its_reason,
    a_second_authorization_header_is_refused_and_logged,
    compressed_bodies_are_refused_not_acted_on_unread,
    rows_added_behind_the_service_are_reported,
    tokens_in_oauth_forms_are_logged_too,
    a_server_error_keeps_its_log_row_but_none_of_its_changes,
    metrics_count_sessions_and_logged_requests,
    expired_tokens_and_oversized_bodies_are_logged_too,
    restricted_actions_are_refused_before_the_body_is_read,
    verify_stays_green_while_rows_are_appended,
    a_session_ends_once_whoever_ends_it,
    every_impersonated_request_gets_exactly_one_row,
    secrets_never_reach_the_database,
    the_log_is_written_with_the_request_or_not_at_all,
    lifecycle_events_are_recorded_with_who_where_and_when,
    the_user_reads_their_own_history_and_nobody_else_does,
    log_pages_are_stable_while_rows_are_added,
    tampering_is_refused_and_detected,
    concurrent_writers_keep_one_chain,
);
