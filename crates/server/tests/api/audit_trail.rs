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
