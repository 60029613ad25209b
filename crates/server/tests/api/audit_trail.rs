//! Every change is audited in its transaction; the auditor finds, exports and verifies it.

use reqwest::{Method, StatusCode};
use serde_json::json;
use store::testing::test_backends;

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn every_change_and_denial_is_audited_and_the_auditor_finds_it() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("lixia_admin").await;
        let street = app.org_id("370102004").await;
        let (st, created) = admin
            .json(Method::POST, "/api/v1/users", Some(json!({"username": "furong_staff", "display_name": "芙蓉", "primary_org_id": street, "mobile": "13964012345"})))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{created}");
        let uid = created["user"]["id"].as_str().unwrap().to_string();
        // A denied change is audited as denied.
        let (st, _) = admin.json(Method::PUT, "/api/v1/security-policy", Some(json!({}))).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let auditor = app.login("auditor").await;
        let (st, page) =
            auditor.json(Method::GET, &format!("/api/v1/audit/records?action=user.create&object_id={uid}"), None).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(page["total"], 1, "{b:?}: {page}");
        let rec = &page["items"][0];
        assert_eq!(rec["actor_name"], "lixia_admin");
        assert_eq!(rec["result"], "success");
        assert!(rec["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(rec["source_ip"].as_str().is_some_and(|s| s.starts_with("127.")));
        assert!(!rec.to_string().contains("13964012345"), "no unmasked personal data in the log");
        let (_, denied) =
            auditor.json(Method::GET, "/api/v1/audit/records?actor=lixia_admin&result=denied", None).await;
        assert_eq!(denied["total"], 1, "{denied}");
        assert_eq!(denied["items"][0]["reason"], "forbidden");
        // Export as CSV.
        let csv = auditor.get("/api/v1/audit/records.csv?action=user.").await;
        assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
        let text = csv.text().await.unwrap();
        assert!(text.contains("furong_staff"), "{text}");
        // Verification over the API.
        let (st, report) = auditor.json(Method::POST, "/api/v1/audit/verify", None).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(report["ok"], true, "{report}");
        assert!(report["records_checked"].as_i64().unwrap() > 20);
        // The auditor's own reading is audited.
        let (_, own) = auditor.json(Method::GET, "/api/v1/audit/records?action=audit.", None).await;
        assert!(own["total"].as_i64().unwrap() >= 3, "{own}");
    }
}

#[tokio::test]
async fn no_api_changes_or_deletes_audit_records() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let auditor = app.login("auditor").await;
        for (m, path) in [
            (Method::DELETE, "/api/v1/audit/records"),
            (Method::PUT, "/api/v1/audit/records"),
            (Method::PATCH, "/api/v1/audit/records"),
        ] {
            let (st, body) = auditor.json(m, path, None).await;
            assert_error(st, &body, 405, "method_not_allowed");
        }
    }
}

#[tokio::test]
async fn tampering_in_the_database_is_named_by_the_verifier() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        app.state.sealer.seal_all().await.unwrap();
        let sql = match b {
            store::Backend::Sqlite => "DROP TRIGGER audit_records_no_update",
            store::Backend::Postgres => "ALTER TABLE audit_records DISABLE TRIGGER USER",
        };
        sqlx::raw_sql(sql).execute(app.state.db.writer()).await.unwrap();
        sqlx::raw_sql("UPDATE audit_records SET actor_name = 'someone_else' WHERE id = 12")
            .execute(app.state.db.writer())
            .await
            .unwrap();
        let auditor = app.login("auditor").await;
        let (_, report) = auditor.json(Method::POST, "/api/v1/audit/verify", None).await;
        assert_eq!(report["ok"], false, "{b:?}");
        assert_eq!(report["problem"]["kind"], "altered");
        assert_eq!(report["problem"]["record_id"], 12);
    }
}

/// The audit records of one request, by its request id.
async fn records_of(app: &TestApp, request_id: &str) -> Vec<audit::AuditRecord> {
    let filter = audit::AuditFilter { request_id: Some(request_id.to_string()), ..Default::default() };
    audit::search(&app.state.db, &filter, kernel::PageRequest::new(None, Some(200)).unwrap()).await.unwrap().items
}

#[tokio::test]
async fn every_successful_state_change_writes_its_audit_record() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let sys = app.login("sysadmin").await;
        let sec = app.login("secadmin").await;
        let street = app.org_id("370102005").await;
        let mut seen = Vec::new();
        let mut call = async |s: &crate::helpers::Session,
                              m: Method,
                              path: String,
                              body: Option<serde_json::Value>,
                              action: &str| {
            let (st, rid, resp) = s.traced(m, &path, body).await;
            assert!(st.is_success(), "{b:?} {path}: {st} {resp}");
            let recs = records_of(&app, &rid).await;
            assert!(
                recs.iter().any(|r| r.entry.action == action && r.entry.result == audit::AuditResult::Success),
                "{b:?}: {path} left no '{action}' record: {recs:?}"
            );
            seen.push(action.to_string());
            resp
        };
        let org = call(
            &sys,
            Method::POST,
            "/api/v1/orgs".into(),
            Some(json!({"parent_id": street, "kind": "community", "code": "370102005099", "name": "明湖东社区"})),
            "org.create",
        )
        .await;
        let org_id = org["id"].as_str().unwrap().to_string();
        call(
            &sys,
            Method::PATCH,
            format!("/api/v1/orgs/{org_id}"),
            Some(json!({"name": "明湖东路社区"})),
            "org.update",
        )
        .await;
        let user = call(
            &sys,
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"username": "minghu", "display_name": "明湖", "primary_org_id": street})),
            "user.create",
        )
        .await;
        let uid = user["user"]["id"].as_str().unwrap().to_string();
        call(
            &sys,
            Method::PATCH,
            format!("/api/v1/users/{uid}"),
            Some(json!({"mobile": "13964011111"})),
            "user.update",
        )
        .await;
        call(&sys, Method::POST, format!("/api/v1/users/{uid}/reset-password"), None, "user.reset_password").await;
        call(&sys, Method::POST, format!("/api/v1/users/{uid}/unlock"), None, "user.unlock").await;
        call(&sys, Method::DELETE, format!("/api/v1/orgs/{org_id}"), None, "org.delete").await;
        let role = call(
            &sec,
            Method::POST,
            "/api/v1/roles".into(),
            Some(json!({"code": "inspector", "name": "巡查员", "permissions": ["portal.use", "org.read"]})),
            "role.create",
        )
        .await;
        let role_id = role["id"].as_str().unwrap().to_string();
        call(
            &sec,
            Method::PUT,
            format!("/api/v1/roles/{role_id}"),
            Some(json!({"code": "inspector", "name": "巡查员", "permissions": ["portal.use"]})),
            "role.update",
        )
        .await;
        let grant = call(
            &sec,
            Method::POST,
            format!("/api/v1/users/{uid}/grants"),
            Some(json!({"role": "inspector", "scope": "own_org"})),
            "grant.create",
        )
        .await;
        let grant_id = grant["id"].as_str().unwrap().to_string();
        call(&sec, Method::DELETE, format!("/api/v1/users/{uid}/grants/{grant_id}"), None, "grant.revoke").await;
        call(
            &sec,
            Method::PUT,
            "/api/v1/security-policy".into(),
            Some(json!({"password_min_length": 10})),
            "policy.update",
        )
        .await;
        let created = call(
            &sec,
            Method::POST,
            "/api/v1/apps".into(),
            Some(json!({"name": "综治平台", "scopes": ["org.read"], "org_id": street})),
            "app.create",
        )
        .await;
        let app_id = created["app"]["id"].as_str().unwrap().to_string();
        call(
            &sec,
            Method::PUT,
            format!("/api/v1/apps/{app_id}/enabled"),
            Some(json!({"enabled": false})),
            "app.disable",
        )
        .await;
        assert_eq!(seen.len(), 14);
    }
}

#[tokio::test]
async fn every_failed_state_change_is_audited_with_its_request_id() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let s = app.login("sysadmin").await;
        let doc: serde_json::Value = s.get("/api/openapi.json").await.json().await.unwrap();
        let mut checked = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if path.starts_with("/api/v1/auth/") {
                continue; // the login steps audit themselves
            }
            let concrete = path
                .replace("{id}", "01a1fee8-fd7b-706c-8646-c70b34f740d4")
                .replace("{grant_id}", "01a1fee8-fd7b-706c-8646-c70b34f740d5");
            for method in ops.as_object().unwrap().keys().filter(|m| *m != "get") {
                let (st, rid, body) =
                    s.traced(method.to_uppercase().parse().unwrap(), &concrete, Some(json!({"bogus": true}))).await;
                assert!(st.is_client_error(), "{method} {path} should fail here: {st} {body}");
                let recs = records_of(&app, &rid).await;
                assert_eq!(recs.len(), 1, "{b:?}: {method} {path} ({st}) wrote {recs:?}");
                let r = &recs[0].entry;
                assert_ne!(r.result, audit::AuditResult::Success);
                assert_eq!(r.actor_name.as_deref(), Some("sysadmin"));
                assert_eq!(r.reason.as_deref(), body["code"].as_str(), "{method} {path}");
                checked += 1;
            }
        }
        assert!(checked >= 15, "{checked} operations checked");
    }
}

#[tokio::test]
async fn the_auditor_archives_downloads_and_after_the_retention_period_purges_and_the_chain_still_verifies() {
    const DAY: i64 = 86_400;
    for b in test_backends() {
        // Months pass in this test: no password expiry in between.
        let app = TestApp::start_with(b, |cfg| cfg.security.policy.password_max_age_days = 0).await;
        let auditor = app.login("auditor").await;
        // Nothing written before today's start (the demo city was seeded today).
        let today = kernel::calendar::china_date(kernel::Clock::now_ms(&app.clock)).unwrap();
        let (st, body) =
            auditor.json(Method::POST, "/api/v1/audit/archives", Some(json!({"before": today.to_string()}))).await;
        assert_error(st, &body, 409, "conflict");
        let (st, body) =
            auditor.json(Method::POST, "/api/v1/audit/archives", Some(json!({"before": "2026-13-01"}))).await;
        assert_error(st, &body, 422, "validation_failed");
        let (st, body) =
            auditor.json(Method::POST, "/api/v1/audit/archives", Some(json!({"before": "yesterday"}))).await;
        assert_error(st, &body, 422, "validation_failed");
        let (st, body) = auditor.json(Method::POST, "/api/v1/audit/archives", Some(json!({"before": 20261101}))).await;
        assert_error(st, &body, 400, "invalid_json");

        // Two days on, everything up to yesterday goes into an archive.
        app.clock.advance_secs(2 * DAY);
        let auditor = app.login("auditor").await;
        let tomorrow = today.succ_opt().unwrap().to_string();
        let (st, a) = auditor.json(Method::POST, "/api/v1/audit/archives", Some(json!({"before": tomorrow}))).await;
        assert_eq!(st, StatusCode::CREATED, "{b:?}: {a}");
        assert_eq!(a["first_seq"], 1);
        let last = a["last_seq"].as_i64().unwrap();
        assert!(last > 50, "{b:?}: the demo city's records: {a}");
        let (st, check) = auditor.json(Method::POST, "/api/v1/audit/archives/1/verify", None).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(check["ok"], true, "{b:?}: {check}");
        assert_eq!(check["report"]["records_checked"], last);
        let file = auditor.get("/api/v1/audit/archives/1/file").await;
        assert_eq!(file.status(), StatusCode::OK);
        assert_eq!(file.headers()["content-type"], "application/gzip");
        assert_eq!(&file.bytes().await.unwrap()[..2], &[0x1f, 0x8b], "a gzip stream");
        let (st, body) = auditor.json(Method::POST, "/api/v1/audit/archives/x/verify", None).await;
        assert_error(st, &body, 404, "not_found");

        // Within the retention period the purge keeps it, and says why.
        let (st, r) = auditor.json(Method::POST, "/api/v1/audit/archives/purge", None).await;
        assert_eq!(st, StatusCode::OK, "{r}");
        assert_eq!(r["records_removed"], 0);
        assert_eq!(r["kept"][0]["why"], "within_retention", "{r}");
        assert!(r["kept"][0]["reason"].as_str().unwrap().contains("180-day"), "{r}");
        assert!(
            r["kept"][0]["purgeable_from"].as_i64().unwrap() > kernel::Clock::now_ms(&app.clock) + 170 * DAY * 1000
        );

        // 181 days later it goes; the chain verifies from the anchor; all of it was audited.
        app.clock.advance_secs(181 * DAY);
        let auditor = app.login("auditor").await;
        let (_, r) = auditor.json(Method::POST, "/api/v1/audit/archives/purge", None).await;
        assert_eq!(r["records_removed"], last, "{b:?}: {r}");
        let (_, report) = auditor.json(Method::POST, "/api/v1/audit/verify", None).await;
        assert_eq!(report["ok"], true, "{b:?}: {report}");
        assert_eq!(report["archived_through"], last);
        let (_, list) = auditor.json(Method::GET, "/api/v1/audit/archives", None).await;
        assert_eq!((list["archived_through"].as_i64(), list["retention_days"].as_i64()), (Some(last), Some(180)));
        assert!(list["items"][0]["purged_at"].is_i64(), "{list}");
        for action in ["audit.archive", "audit.archive.verify", "audit.archive.download", "audit.purge"] {
            let (_, page) = auditor.json(Method::GET, &format!("/api/v1/audit/records?action={action}"), None).await;
            assert!(page["total"].as_i64().unwrap() >= 1, "{b:?}: {action} audited: {page}");
        }
    }
}
