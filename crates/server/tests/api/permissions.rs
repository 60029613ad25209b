//! The permission matrix, data scopes, graded authorisation, the three administrators, and
//! connected applications.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::test_backends;

use crate::helpers::{TestApp, assert_error};

/// Who may call what (docs/security.md has the same table). `A` = allowed (2xx, or 400/422 for
/// the deliberately empty body), `D` = denied with 403.
const MATRIX: &[(&str, &str, [char; 6])] = &[
    //                                  sysadmin secadmin auditor leader lixia_admin gridworker
    ("GET /api/v1/orgs", "", ['A', 'A', 'D', 'A', 'A', 'A']),
    ("POST /api/v1/orgs", "{}", ['A', 'D', 'D', 'D', 'D', 'D']),
    ("GET /api/v1/users", "", ['A', 'A', 'D', 'A', 'A', 'A']),
    ("POST /api/v1/users", "{}", ['A', 'D', 'D', 'D', 'A', 'D']),
    ("GET /api/v1/roles", "", ['A', 'A', 'D', 'D', 'A', 'D']),
    ("POST /api/v1/roles", "{}", ['D', 'A', 'D', 'D', 'D', 'D']),
    ("GET /api/v1/permissions", "", ['A', 'A', 'D', 'D', 'A', 'D']),
    ("GET /api/v1/security-policy", "", ['D', 'A', 'D', 'D', 'D', 'D']),
    ("PUT /api/v1/security-policy", "{}", ['D', 'A', 'D', 'D', 'D', 'D']),
    ("GET /api/v1/apps", "", ['D', 'A', 'D', 'D', 'D', 'D']),
    ("POST /api/v1/apps", "{}", ['D', 'A', 'D', 'D', 'D', 'D']),
    ("GET /api/v1/audit/records", "", ['D', 'D', 'A', 'D', 'D', 'D']),
    ("GET /api/v1/audit/records.csv", "", ['D', 'D', 'A', 'D', 'D', 'D']),
    ("POST /api/v1/audit/verify", "", ['D', 'D', 'A', 'D', 'D', 'D']),
    ("GET /api/v1/audit/checkpoints", "", ['D', 'D', 'A', 'D', 'D', 'D']),
    ("GET /api/v1/audit/archives", "", ['D', 'D', 'A', 'D', 'D', 'D']),
    ("POST /api/v1/audit/archives", "{}", ['D', 'D', 'A', 'D', 'D', 'D']),
    ("POST /api/v1/audit/archives/purge", "", ['D', 'D', 'A', 'D', 'D', 'D']),
    ("GET /api/v1/system/info", "", ['A', 'D', 'D', 'D', 'D', 'D']),
];
const WHO: [&str; 6] = ["sysadmin", "secadmin", "auditor", "leader", "lixia_admin", "gridworker"];

#[tokio::test]
async fn the_permission_matrix_holds_for_every_role_and_endpoint() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        for (i, who) in WHO.iter().enumerate() {
            let s = app.login(who).await;
            for (route, body, expect) in MATRIX {
                let (method, path) = route.split_once(' ').unwrap();
                let body: Option<Value> = (!body.is_empty()).then(|| serde_json::from_str(body).unwrap());
                let (st, resp) = s.json(method.parse().unwrap(), path, body).await;
                let allowed =
                    st.is_success() || st == StatusCode::BAD_REQUEST || st == StatusCode::UNPROCESSABLE_ENTITY;
                match expect[i] {
                    'A' => assert!(allowed, "{b:?}: {who} {route} should be allowed, got {st} {resp}"),
                    _ => assert_error(st, &resp, 403, "forbidden"),
                }
            }
        }
    }
}

#[tokio::test]
async fn every_api_route_refuses_anonymous_callers() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let c = app.client();
        let doc: Value = c.get("/api/openapi.json").await.json().await.unwrap();
        let mut checked = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if path == "/api/v1/auth/login" {
                continue;
            }
            let concrete = path
                .replace("{id}", "01a1fee8-fd7b-706c-8646-c70b34f740d4")
                .replace("{grant_id}", "01a1fee8-fd7b-706c-8646-c70b34f740d5");
            for method in ops.as_object().unwrap().keys() {
                let (st, body) = c.json(method.to_uppercase().parse().unwrap(), &concrete, Some(json!({}))).await;
                assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
                checked += 1;
            }
        }
        assert!(checked >= 30, "{checked} operations checked");
    }
}

async fn usernames(s: &crate::helpers::Session, query: &str) -> Vec<String> {
    let (st, body) = s.json(Method::GET, &format!("/api/v1/users?page_size=200{query}"), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let mut v: Vec<String> =
        body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn data_scopes_keep_sibling_orgs_apart() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let lixia = app.login("lixia_admin").await;
        let jiefang = app.login("jiefang_admin").await;
        let grid = app.login("gridworker").await;
        let leader = app.login("leader").await;
        assert_eq!(usernames(&lixia, "").await, ["gridworker", "jiefang_admin", "lixia_admin"], "{b:?}");
        assert_eq!(usernames(&jiefang, "").await, ["gridworker", "jiefang_admin"]);
        assert_eq!(usernames(&grid, "").await, ["gridworker"]);
        assert_eq!(usernames(&leader, "").await.len(), 11, "the whole demo city");
        let count = |v: Value| v.as_array().unwrap().len();
        assert_eq!(count(lixia.json(Method::GET, "/api/v1/orgs", None).await.1), 53);
        assert_eq!(count(jiefang.json(Method::GET, "/api/v1/orgs", None).await.1), 13);
        // Objects outside the scope are not found, by list or by id.
        let leader_id = app.user_id("leader").await;
        let (st, body) = jiefang.json(Method::GET, &format!("/api/v1/users/{leader_id}"), None).await;
        assert_error(st, &body, 404, "not_found");
        let shizhong = app.org_id("370103").await;
        let (st, body) = lixia.json(Method::GET, &format!("/api/v1/orgs/{shizhong}"), None).await;
        assert_error(st, &body, 404, "not_found");
        // Creating a user in a sibling district is refused.
        let (st, body) = lixia
            .json(
                Method::POST,
                "/api/v1/users",
                Some(json!({"username": "spy", "display_name": "越权", "primary_org_id": shizhong})),
            )
            .await;
        assert_error(st, &body, 403, "out_of_scope");
        // Personal data is masked for those without pi.unmask.
        let (_, page) = leader.json(Method::GET, "/api/v1/users?q=gridworker", None).await;
        let mobile = page["items"][0]["mobile"].as_str().unwrap();
        assert!(mobile.contains("****") && mobile.len() == 11, "{mobile}");
    }
}

#[tokio::test]
async fn graded_authorisation_never_exceeds_the_grantor() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let jiefang = app.login("jiefang_admin").await;
        let target = app.user_id("gridworker").await;
        let grant = |body: Value| {
            let path = format!("/api/v1/users/{target}/grants");
            let s = &jiefang;
            async move { s.json(Method::POST, &path, Some(body)).await }
        };
        let (st, body) = grant(json!({"role": "org_admin", "scope": "all"})).await;
        assert_error(st, &body, 403, "grant_exceeds_grantor");
        let lixia_id = app.org_id("370102").await;
        let (st, body) = grant(json!({"role": "staff", "scope": "org_and_below", "anchor_org_id": lixia_id})).await;
        assert_error(st, &body, 403, "grant_exceeds_grantor");
        let (st, body) = grant(json!({"role": "leader", "scope": "own_org"})).await;
        assert_eq!(st, StatusCode::CREATED, "{b:?}: a role within the grantor's permissions: {body}");
        let (st, body) = grant(json!({"role": "auditor", "scope": "all"})).await;
        assert_error(st, &body, 403, "forbidden");
        let (st, body) = grant(json!({"role": "leader", "scope": "own_org"})).await;
        assert_error(st, &body, 409, "already_exists");

        // Property: whatever jiefang_admin manages to grant, the grantee's reach stays inside
        // the grantor's, permission by permission.
        let orgs: Vec<Value> = jiefang.json(Method::GET, "/api/v1/orgs", None).await.1.as_array().unwrap().clone();
        let outside = [app.org_id("370102").await, app.org_id("370103").await, app.org_id("370100").await];
        let mut anchors: Vec<String> = orgs.iter().map(|o| o["id"].as_str().unwrap().to_string()).collect();
        anchors.extend(outside);
        let roles = ["staff", "org_admin", "leader"];
        let scopes = ["all", "org_and_below", "own_org", "self", "custom"];
        let grantor = app.state.identity.load_caller(&app.user_id("jiefang_admin").await, None).await.unwrap();
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        let all_orgs: std::collections::HashMap<String, identity::Org> = app
            .state
            .identity
            .list_orgs(&identity::users::system_caller())
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.id.0.clone(), o))
            .collect();
        let mut granted = 0;
        for i in 0..24 {
            let sys = app.login("sysadmin").await;
            let jf = app.org_id("370102001").await;
            let (_, created) = sys
                .json(
                    Method::POST,
                    "/api/v1/users",
                    Some(json!({"username": format!("prop{i}"), "display_name": "属性", "primary_org_id": jf})),
                )
                .await;
            let uid = created["user"]["id"].as_str().unwrap().to_string();
            let anchor = anchors[next(anchors.len())].clone();
            let custom = vec![anchors[next(anchors.len())].clone()];
            let body =
                json!({"role": roles[next(3)], "scope": scopes[next(5)], "anchor_org_id": anchor, "org_ids": custom});
            let (st, resp) =
                jiefang.json(Method::POST, &format!("/api/v1/users/{uid}/grants"), Some(body.clone())).await;
            if st != StatusCode::CREATED {
                assert!(st == StatusCode::FORBIDDEN || st == StatusCode::UNPROCESSABLE_ENTITY, "{body}: {st} {resp}");
                continue;
            }
            granted += 1;
            let grantee = app.state.identity.load_caller(&uid, None).await.unwrap();
            let lookup = |id: &str| all_orgs.get(id).cloned();
            for (perm, scope) in &grantee.permissions {
                let mine = grantor.scope(perm);
                assert!(!mine.is_empty(), "grantee got {perm}, which the grantor lacks ({body})");
                assert!(scope.within(&mine, &lookup), "grantee's {perm} reaches beyond the grantor's ({body})");
            }
        }
        assert!(granted >= 3, "the property saw {granted} successful grants");
    }
}

#[tokio::test]
async fn no_account_holds_two_administrator_roles_or_mixes_them_with_business_roles() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let sec = app.login("secadmin").await;
        let auditor = app.user_id("auditor").await;
        let leader = app.user_id("leader").await;
        let me = app.user_id("secadmin").await;
        let (st, body) = sec
            .json(
                Method::POST,
                &format!("/api/v1/users/{auditor}/grants"),
                Some(json!({"role": "sysadmin", "scope": "all"})),
            )
            .await;
        assert_error(st, &body, 409, "separation_of_duties");
        let (st, body) = sec
            .json(
                Method::POST,
                &format!("/api/v1/users/{auditor}/grants"),
                Some(json!({"role": "staff", "scope": "all"})),
            )
            .await;
        assert_error(st, &body, 409, "separation_of_duties");
        let (st, body) = sec
            .json(
                Method::POST,
                &format!("/api/v1/users/{leader}/grants"),
                Some(json!({"role": "auditor", "scope": "all"})),
            )
            .await;
        assert_error(st, &body, 409, "separation_of_duties");
        let (st, body) = sec
            .json(Method::POST, &format!("/api/v1/users/{me}/grants"), Some(json!({"role": "auditor", "scope": "all"})))
            .await;
        assert_error(st, &body, 409, "separation_of_duties");
        let (st, body) = sec
            .json(
                Method::POST,
                "/api/v1/roles",
                Some(json!({"code": "peek", "name": "偷看", "permissions": ["audit.read"]})),
            )
            .await;
        assert_error(st, &body, 409, "separation_of_duties");
        // Administrator roles cannot be edited.
        let (_, roles) = sec.json(Method::GET, "/api/v1/roles", None).await;
        let sysadmin_role = roles.as_array().unwrap().iter().find(|r| r["code"] == "sysadmin").unwrap();
        let (st, body) = sec
            .json(
                Method::PUT,
                &format!("/api/v1/roles/{}", sysadmin_role["id"].as_str().unwrap()),
                Some(json!({
                    "code": "sysadmin", "name": "x", "permissions": ["portal.use"]
                })),
            )
            .await;
        assert_error(st, &body, 409, "separation_of_duties");
    }
}

/// Signs requests as one connected application.
#[derive(Clone)]
struct Signer {
    app_id: String,
    secret: String,
    alg: crypto::HashAlg,
}

impl Signer {
    fn headers(&self, path: &str, ts: i64, nonce: &str) -> reqwest::header::HeaderMap {
        let sig = identity::apps::sign(self.alg, &self.secret, "GET", path, &ts.to_string(), nonce, b"");
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-zs-app-id", self.app_id.parse().unwrap());
        h.insert("x-zs-timestamp", ts.to_string().parse().unwrap());
        h.insert("x-zs-nonce", nonce.parse().unwrap());
        h.insert("x-zs-signature", sig.parse().unwrap());
        h
    }
}

#[tokio::test]
async fn connected_applications_sign_requests_and_replays_are_refused() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let sec = app.login("secadmin").await;
        let lixia = app.org_id("370102").await;
        let (st, created) = sec
            .json(Method::POST, "/api/v1/apps", Some(json!({"name": "历下区数字城管系统", "scopes": ["org.read", "user.read"], "org_id": lixia, "rate_limit_per_min": 5})))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{created}");
        let ours = Signer {
            app_id: created["app"]["app_id"].as_str().unwrap().into(),
            secret: created["secret"].as_str().unwrap().into(),
            alg: crypto::HashAlg::Sm3,
        };
        let http = reqwest::Client::new();
        let now = kernel::Clock::now_ms(&app.clock) / 1000;
        let get = |headers: reqwest::header::HeaderMap, path: &'static str| {
            let req = http.get(format!("{}{path}", app.base)).headers(headers);
            async move {
                let r = req.send().await.unwrap();
                let st = r.status();
                (st, r.json::<Value>().await.unwrap())
            }
        };
        let h = ours.headers("/api/v1/orgs", now, "nonce-000000000001");
        let (st, orgs) = get(h.clone(), "/api/v1/orgs").await;
        assert_eq!(st, StatusCode::OK, "{b:?}: {orgs}");
        assert_eq!(orgs.as_array().unwrap().len(), 53, "the application sees its org's subtree only");
        let (st, body) = get(h, "/api/v1/orgs").await;
        assert_error(st, &body, 401, "replayed_nonce");
        let h = ours.headers("/api/v1/orgs", now - 600, "nonce-000000000002");
        let (st, body) = get(h, "/api/v1/orgs").await;
        assert_error(st, &body, 401, "stale_timestamp");
        let wrong = Signer { secret: "wrong-secret".into(), ..ours.clone() };
        let h = wrong.headers("/api/v1/orgs", now, "nonce-000000000003");
        let (st, body) = get(h, "/api/v1/orgs").await;
        assert_error(st, &body, 401, "invalid_signature");
        let h = ours.headers("/api/v1/users", now, "nonce-000000000004");
        let (st, body) = get(h, "/api/v1/orgs").await;
        assert_error(st, &body, 401, "invalid_signature");
        let h = ours.headers("/api/v1/audit/records", now, "nonce-000000000005");
        let (st, body) = get(h, "/api/v1/audit/records").await;
        assert_error(st, &body, 403, "forbidden");
        // The application's own rate limit (5 per minute; two requests passed authentication).
        let mut last = StatusCode::OK;
        for i in 0..5 {
            let nonce = format!("nonce-0000000001{i:02}");
            let h = ours.headers("/api/v1/orgs", now, &nonce);
            last = get(h, "/api/v1/orgs").await.0;
        }
        assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
        // HMAC-SHA256 is allowed too.
        let (_, created) = sec
            .json(
                Method::POST,
                "/api/v1/apps",
                Some(json!({"name": "12345热线", "scopes": ["org.read"], "org_id": lixia, "sign_alg": "hmac-sha256"})),
            )
            .await;
        let sha = Signer {
            app_id: created["app"]["app_id"].as_str().unwrap().into(),
            secret: created["secret"].as_str().unwrap().into(),
            alg: crypto::HashAlg::Sha256,
        };
        let h = sha.headers("/api/v1/orgs", now, "nonce-000000000009");
        assert_eq!(get(h, "/api/v1/orgs").await.0, StatusCode::OK);
        // Refusals are audited on the api channel.
        app.state.sealer.seal_all().await.unwrap();
        let denied = audit::search(
            &app.state.db,
            &audit::AuditFilter { action: Some("auth.signed_request".into()), ..Default::default() },
            Default::default(),
        )
        .await
        .unwrap();
        assert!(denied.total >= 3, "{}", denied.total);
        assert_eq!(denied.items[0].entry.channel, audit::Channel::Api);
    }
}
