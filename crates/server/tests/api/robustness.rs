//! Bad input gets a clear 4xx and leaves nothing half-written.

use reqwest::{Method, StatusCode};
use serde_json::json;
use store::testing::test_backends;

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn malformed_requests_get_clear_errors_never_500() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let s = app.login("sysadmin").await;
        let raw = |body: Vec<u8>, ctype: &'static str| {
            let req = s
                .http
                .post(format!("{}/api/v1/users", s.base))
                .header("x-csrf-token", &s.csrf)
                .header("content-type", ctype)
                .body(body);
            async move {
                let r = req.send().await.unwrap();
                let st = r.status();
                (st, r.json::<serde_json::Value>().await.unwrap_or_default())
            }
        };
        let (st, body) = raw(b"{not json".to_vec(), "application/json").await;
        assert_error(st, &body, 400, "invalid_json");
        let (st, body) = raw(b"{\"username\": 5}".to_vec(), "application/json").await;
        assert_error(st, &body, 400, "invalid_json");
        let (st, body) = raw(vec![b'"', 0xff, 0xfe, b'"'], "application/json").await;
        assert_error(st, &body, 400, "invalid_json");
        let (st, body) = raw(b"username=x".to_vec(), "application/x-www-form-urlencoded").await;
        assert_error(st, &body, 415, "unsupported_media_type");
        let (st, body) = raw(vec![b' '; 3 * 1024 * 1024], "application/json").await;
        assert_error(st, &body, 413, "payload_too_large");
        let org = app.org_id("370102").await;
        let unknown_field = json!({"username": "x1x", "display_name": "某", "primary_org_id": org, "is_admin": true});
        let (st, body) = s.json(Method::POST, "/api/v1/users", Some(unknown_field)).await;
        assert_error(st, &body, 400, "invalid_json");
        let (st, body) =
            s.json(Method::POST, "/api/v1/orgs", Some(json!({"kind": "galaxy", "code": "g", "name": "银河"}))).await;
        assert_error(st, &body, 400, "invalid_json");
        let sneaky = json!({"username": "robert'); DROP TABLE users;--", "display_name": "x", "primary_org_id": org});
        let (st, body) = s.json(Method::POST, "/api/v1/users", Some(sneaky)).await;
        assert_error(st, &body, 422, "validation_failed");
        let (st, body) = s.json(Method::GET, "/api/v1/users?q=%27%20OR%201%3D1--&page_size=500", None).await;
        assert_error(st, &body, 400, "invalid_page");
        let (st, body) = s.json(Method::GET, "/api/v1/users?q=%27%20OR%201%3D1--", None).await;
        assert_eq!((st, body["total"].as_i64()), (StatusCode::OK, Some(0)));
        let (st, body) = s.json(Method::GET, "/api/v1/users?sort=password_hash", None).await;
        assert_error(st, &body, 400, "invalid_sort");
        let (st, body) = s.json(Method::GET, "/api/v1/users?sort=-username&page_size=3", None).await;
        assert_eq!(st, StatusCode::OK);
        let names: Vec<&str> =
            body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        assert_eq!(names, ["sysadmin", "secadmin", "lixia_admin"], "descending by username");
        let (st, body) = s.json(Method::GET, "/api/v1/users?page=abc", None).await;
        assert_error(st, &body, 400, "invalid_query");
        let (st, body) = s.json(Method::GET, "/api/v1/users/not-an-id", None).await;
        assert_error(st, &body, 404, "not_found");
        let (st, body) = s.json(Method::GET, "/api/v1/nowhere", None).await;
        assert_error(st, &body, 404, "route_not_found");
        let (st, body) = s.json(Method::DELETE, "/api/v1/users", None).await;
        assert_error(st, &body, 405, "method_not_allowed");
        let long_name = "长".repeat(300);
        let (st, body) = s
            .json(
                Method::POST,
                "/api/v1/orgs",
                Some(json!({"parent_id": org, "kind": "street", "code": "x-1", "name": long_name})),
            )
            .await;
        assert_error(st, &body, 422, "validation_failed");
        let bad_policy = json!({"lockout_threshold": 0});
        let sec = app.login("secadmin").await;
        let (st, body) = sec.json(Method::PUT, "/api/v1/security-policy", Some(bad_policy)).await;
        assert_error(st, &body, 422, "validation_failed");
    }
}

#[tokio::test]
async fn a_failed_change_leaves_nothing_behind() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let s = app.login("lixia_admin").await;
        let street = app.org_id("370102003").await;
        let sibling = app.org_id("370103").await;
        // The second org is out of scope: the whole creation fails, no user row remains.
        let (st, body) = s
            .json(Method::POST, "/api/v1/users", Some(json!({"username": "half_done", "display_name": "半成品", "primary_org_id": street, "org_ids": [sibling]})))
            .await;
        assert_error(st, &body, 403, "out_of_scope");
        assert!(app.state.identity.user_id_by_username("half_done").await.unwrap().is_none(), "{b:?}");
        // A duplicate username is a conflict, not a 500.
        let dup = json!({"username": "GridWorker", "display_name": "重名", "primary_org_id": street});
        let (st, body) = s.json(Method::POST, "/api/v1/users", Some(dup)).await;
        assert_error(st, &body, 409, "already_exists");
    }
}

#[tokio::test]
async fn health_readiness_metrics_and_api_docs_are_served() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let c = app.client();
        assert_eq!(c.get("/healthz").await.text().await.unwrap(), "ok");
        let ready: serde_json::Value = c.get("/readyz").await.json().await.unwrap();
        assert_eq!(ready["status"], "ready");
        assert_eq!(ready["database"], b.name());
        c.get("/api/v1/me").await;
        let metrics = c.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("zhongshu_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"401\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("zhongshu_db_read_pool_connections"));
        let docs = c.get("/api/docs/").await;
        assert_eq!(docs.status(), StatusCode::OK);
        assert!(docs.text().await.unwrap().contains("swagger"), "the docs page is served from the binary");
        let doc: serde_json::Value = c.get("/api/openapi.json").await.json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["paths"]["/api/v1/users"]["post"].is_object());
        // Every operation documents the errors any request can meet.
        let responses = &doc["paths"]["/api/v1/users"]["post"]["responses"];
        for code in ["400", "401", "403", "404", "409", "413", "415", "422", "429"] {
            assert!(responses[code].is_object(), "POST /users documents {code}");
        }
        // Same-named types of two capabilities do not overwrite each other's schema.
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["Delivery"]["properties"]["message_id"].is_object());
        assert!(schemas["PlatformDelivery"]["properties"]["platform_id"].is_object());
        assert!(schemas["AuditChannel"].is_object() && schemas["MessageChannel"].is_object());
        let r = c.get("/api/v1/me").await;
        assert!(r.headers().contains_key("x-request-id"));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn personal_data_is_encrypted_at_rest() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let s = app.login("lixia_admin").await;
        let street = app.org_id("370102003").await;
        let (st, body) = s
            .json(Method::POST, "/api/v1/users", Some(json!({"username": "baotu", "display_name": "趵突", "primary_org_id": street, "mobile": "13964019876"})))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(body["user"]["mobile"], "139****9876", "masked in the answer");
        app.state.sealer.seal_all().await.unwrap();
        let dump = match b {
            store::Backend::Sqlite => {
                let path = app.db.url.trim_start_matches("sqlite://").split('?').next().unwrap().to_string();
                let mut bytes = std::fs::read(&path).unwrap();
                bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
                String::from_utf8_lossy(&bytes).into_owned()
            }
            store::Backend::Postgres => {
                let mut text = String::new();
                for table in ["users", "audit_records", "sessions", "password_history"] {
                    let sql = format!("SELECT COALESCE(string_agg(row_to_json(t)::text, ''), '') FROM {table} t");
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(app.state.db.reader()).await.unwrap();
                    text.push_str(&store::Row::get::<String, _>(&row, 0));
                }
                text
            }
        };
        assert!(dump.contains("baotu"), "{b:?}: the dump holds the user");
        assert!(!dump.contains("13964019876"), "{b:?}: the mobile number is stored in plain text");
        // Exact lookups still work through the blind index.
        let idx = app.state.identity.keys().blind_index("users.mobile", "13964019876");
        let n: i64 = store::Row::get(
            &sqlx::query("SELECT COUNT(*) FROM users WHERE mobile_idx = $1")
                .bind(idx)
                .fetch_one(app.state.db.reader())
                .await
                .unwrap(),
            0,
        );
        assert_eq!(n, 1);
    }
}

#[tokio::test]
async fn reading_personal_data_in_full_is_audited() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let sec = app.login("secadmin").await;
        let (st, body) = sec
            .json(Method::POST, "/api/v1/roles", Some(json!({"code": "verifier", "name": "核查员", "permissions": ["portal.use", "user.read", "pi.unmask"]})))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let leader = app.user_id("leader").await;
        let (st, body) = sec
            .json(
                Method::POST,
                &format!("/api/v1/users/{leader}/grants"),
                Some(json!({"role": "verifier", "scope": "all"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let s = app.login("leader").await;
        let (st, rid, page) = s.traced(Method::GET, "/api/v1/users?q=gridworker", None).await;
        assert_eq!(st, StatusCode::OK);
        let mobile = page["items"][0]["mobile"].as_str().unwrap();
        assert!(!mobile.contains('*') && mobile.len() == 11, "{b:?}: full value for pi.unmask: {mobile}");
        let filter = audit::AuditFilter { request_id: Some(rid), ..Default::default() };
        let recs = audit::search(&app.state.db, &filter, Default::default()).await.unwrap();
        assert_eq!(recs.total, 1, "{b:?}");
        assert_eq!(recs.items[0].entry.action, "pi.read_unmasked");
        assert!(recs.items[0].entry.detail.as_deref().unwrap().contains(&app.user_id("gridworker").await));
        assert!(
            !recs.items[0].entry.detail.as_deref().unwrap().contains(mobile),
            "the audit names users, not their data"
        );
    }
}

#[tokio::test]
async fn over_tls_the_session_cookie_is_secure_hsts_is_sent_and_plain_http_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let app = TestApp::start_with(store::Backend::Sqlite, |cfg| {
        cfg.server.tls.cert_file = cert_file.display().to_string();
        cfg.server.tls.key_file = key_file.display().to_string();
    })
    .await;
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = trusting
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"username": "gridadmin", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_string();
    for part in ["; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert_eq!(r.headers()[reqwest::header::STRICT_TRANSPORT_SECURITY], "max-age=31536000");
    // A client that does not trust the certificate cannot talk to it.
    assert!(reqwest::Client::new().get(format!("{}/healthz", app.base)).send().await.is_err());
    // Plain HTTP to the same port gets no HTTP answer, so nothing is ever sent in the clear.
    let plain = app.base.replace("https://", "http://");
    let r = reqwest::Client::new()
        .post(format!("{plain}/api/v1/auth/login"))
        .json(&json!({"username": "gridadmin", "password": crate::helpers::PASSWORD}))
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP answered: {r:?}");
    // The server goes on serving after those failed handshakes.
    assert_eq!(trusting.get(format!("{}/healthz", app.base)).send().await.unwrap().status(), StatusCode::OK);

    // Without TLS (and without secure_cookies) neither Secure nor HSTS is claimed.
    let plain_app = TestApp::start(store::Backend::Sqlite).await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", plain_app.base))
        .json(&json!({"username": "gridadmin", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(!r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().contains("Secure"));
    assert!(!r.headers().contains_key(reqwest::header::STRICT_TRANSPORT_SECURITY));
}

#[test]
fn tls_files_that_are_missing_empty_or_mismatched_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cert = write("cert.pem", &a.cert.pem());
    let key = write("key.pem", &a.signing_key.serialize_pem());
    let other_key = write("other.pem", &b.signing_key.serialize_pem());
    let empty = write("empty.pem", "");
    assert!(zhongshu::tls::server_config(&cert, &key).is_ok());
    let err =
        |c: &std::path::Path, k: &std::path::Path| format!("{:#}", zhongshu::tls::server_config(c, k).unwrap_err());
    assert!(err(&dir.path().join("nope.pem"), &key).contains("cert_file"), "missing certificate named");
    assert!(err(&empty, &key).contains("no \"BEGIN CERTIFICATE\""), "{}", err(&empty, &key));
    assert!(err(&cert, &empty).contains("key_file"), "{}", err(&cert, &empty));
    assert!(err(&cert, &other_key).contains("does not fit"), "{}", err(&cert, &other_key));
}
