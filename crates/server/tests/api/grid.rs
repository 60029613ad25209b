//! The grid platform through the HTTP API, on every backend: boundaries, routing, intake and the
//! whole case loop on the workflow engine.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::test_backends;

use crate::helpers::{Session, TestApp, assert_error};

async fn grid_app(backend: store::Backend) -> (TestApp, Vec<(String, [f64; 2])>) {
    let app =
        TestApp::start_with(backend, |cfg| cfg.grid.dispatch_center = zhongshu::demo::DISPATCH_CENTER.into()).await;
    let points = zhongshu::demo_grid::seed_setup(&app.state).await.expect("grid demo setup");
    (app, points)
}

/// A point inside the grid with `code`, in WGS84.
fn point(points: &[(String, [f64; 2])], code: &str) -> [f64; 2] {
    points.iter().find(|(c, _)| c == code).unwrap_or_else(|| panic!("no grid {code}")).1
}

async fn act(s: &Session, case: &str, body: Value) -> (StatusCode, Value) {
    s.json(Method::POST, &format!("/api/v1/grid/cases/{case}/actions"), Some(body)).await
}

async fn case(s: &Session, id: &str) -> Value {
    let (st, body) = s.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_patrol_report_goes_round_the_whole_case_loop() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let gw = app.login("gridworker").await;
        let disp = app.login("dispatcher").await;
        let cgj = app.login("cgj_handler").await;
        let my_grid = app.org_id("37010200100101").await;
        let cgj_org = app.org_id("370100-cgj").await;
        // The phone reports in GCJ-02, as phones in China do.
        let w = point(&points, "37010200100101");
        let g = spatial::coord::wgs84_to_gcj02(spatial::LonLat::new(w[0], w[1]));
        let report = json!({
            "source": "patrol", "external_id": "gw-app-0001", "category_code": "BJ0102",
            "description": "污水井盖破损，已设置警示", "lon": g.lon, "lat": g.lat, "crs": "gcj02",
            "address": "山大路与文化东路交叉口"
        });
        let (s, body) = gw.json(Method::POST, "/api/v1/grid/cases", Some(report.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let c = &body["case"];
        let id = c["id"].as_str().unwrap().to_string();
        assert_eq!(c["grid_id"], my_grid.as_str());
        assert_eq!(c["stage"], "accept");
        assert_eq!(c["department_id"], cgj_org.as_str(), "the category's owner is suggested");
        assert!((c["lon"].as_f64().unwrap() - w[0]).abs() < 1e-7, "stored in WGS84");
        // The same report sent again (a retry from a slow network) is the same case.
        let (s, again) = gw.json(Method::POST, "/api/v1/grid/cases", Some(report)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(again["created"], false);
        assert_eq!(again["case"]["id"], id.as_str());

        // The department cannot act before dispatch; the dispatcher may accept.
        let (s, body) = act(&cgj, &id, json!({"action": "handle", "feedback": "done"})).await;
        assert!(s == StatusCode::CONFLICT || s == StatusCode::NOT_FOUND, "{s} {body}");
        let d = case(&disp, &id).await;
        assert_eq!(d["actions"], json!(["accept", "reject", "merge"]));
        // Dispatching elsewhere than the rules say needs a reason.
        let other = app.org_id("370100-zjj").await;
        let (s, body) = act(&disp, &id, json!({"action": "accept", "department_id": other})).await;
        assert_error(s, &body, 422, "validation_failed");
        let (s, body) = act(&disp, &id, json!({"action": "accept", "note": "予以立案"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], "dispatch");
        assert_eq!(body["actions"], json!(["dispatch"]), "{body}");
        let (s, body) = act(&disp, &id, json!({"action": "dispatch"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], "handle");
        assert!(body["stage_due_at"].as_i64().is_some());

        // The department sees it among its cases; it declines, the dispatcher sends it again.
        let (_, mine) = cgj.json(Method::GET, "/api/v1/grid/cases?mine=true", None).await;
        assert!(mine["items"].as_array().unwrap().iter().any(|c| c["id"] == id.as_str()), "{mine}");
        let (s, body) = act(&cgj, &id, json!({"action": "decline", "reason": "非本单位职责"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], "dispatch");
        let (s, _) = act(&disp, &id, json!({"action": "dispatch", "note": "请城管局处置"})).await;
        assert_eq!(s, StatusCode::OK);
        // An extension, approved: the handling deadline moves.
        let due_before = case(&cgj, &id).await["stage_due_at"].as_i64().unwrap();
        let (s, body) = act(&cgj, &id, json!({"action": "request_extension", "days": 3, "reason": "需更换井座"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], "extension");
        let (s, body) = act(&disp, &id, json!({"action": "decide_extension", "approve": true})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], "handle");
        assert!(body["stage_due_at"].as_i64().unwrap() > due_before, "{body}");
        // Handled; the grid worker finds it not done (rework), then done.
        let (s, _) = act(&cgj, &id, json!({"action": "handle", "feedback": "已更换井盖"})).await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = act(&gw, &id, json!({"action": "verify", "passed": false})).await;
        assert_error(s, &body, 422, "validation_failed");
        let (s, body) = act(&gw, &id, json!({"action": "verify", "passed": false, "note": "井盖仍松动"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], "handle");
        assert_eq!(body["rework_count"], 1);
        let (s, _) = act(&cgj, &id, json!({"action": "handle", "feedback": "已加固井座"})).await;
        assert_eq!(s, StatusCode::OK);
        // The last step through the generic inbox: the case follows its process all the same.
        let (_, tasks) = gw.json(Method::GET, "/api/v1/flow/tasks?process_key=grid_case", None).await;
        let t = tasks["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["business_key"] == id.as_str())
            .expect("verify task")
            .clone();
        let tid = t["id"].as_str().unwrap();
        let (s, _) =
            gw.json(Method::POST, &format!("/api/v1/flow/tasks/{tid}"), Some(json!({"action": "claim"}))).await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = gw
            .json(
                Method::POST,
                &format!("/api/v1/flow/tasks/{tid}"),
                Some(json!({"action": "complete", "variables": {"verify_passed": true, "verify_note": "复核通过"}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");

        let d = case(&disp, &id).await;
        assert_eq!(d["status"], "closed");
        assert_eq!(d["stage"], "closed");
        for stamp in ["created_at", "accepted_at", "dispatched_at", "handled_at", "verified_at", "closed_at"] {
            assert!(d[stamp].as_i64().is_some(), "{stamp} recorded: {d}");
        }
        let actions: Vec<&str> =
            d["timeline"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
        assert_eq!(
            actions,
            [
                "report",
                "accept",
                "dispatch",
                "decline",
                "dispatch",
                "request_extension",
                "extension_granted",
                "handle",
                "verify_fail",
                "handle",
                "verify_pass",
                "close"
            ]
        );
        let last = d["timeline"].as_array().unwrap().last().unwrap();
        assert_eq!(last["stage"], "closed");
        assert_eq!(last["actor"], "gridworker");
        // Filing and dispatching in one step.
        let (_, c2) = gw
            .json(Method::POST, "/api/v1/grid/cases", Some(json!({"source": "patrol", "category_code": "BJ0104", "description": "路灯不亮", "lon": w[0], "lat": w[1]})))
            .await;
        let id2 = c2["case"]["id"].as_str().unwrap();
        let (s, body) = act(&disp, id2, json!({"action": "accept", "category_id": c2["case"]["category_id"], "urgency": "normal", "note": null, "department_id": cgj_org})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], "handle", "{body}");
        assert_eq!(body["actions"], json!([]), "the dispatcher has nothing more to do: {body}");
        // Closed cases refuse further actions.
        let (s, body) = act(&disp, &id, json!({"action": "reject", "reason": "x"})).await;
        assert_error(s, &body, 409, "conflict");
    }
}

#[tokio::test]
async fn bad_intake_is_refused_clearly_and_leaves_nothing_behind() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let gw = app.login("gridworker").await;
        let w = point(&points, "37010200100101");
        let base =
            json!({"source": "patrol", "category_code": "BJ0102", "description": "井盖破损", "lon": w[0], "lat": w[1]});
        let with = |patch: Value| {
            let mut b = base.clone();
            for (k, v) in patch.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        for (patch, needle) in [
            (json!({"lon": 121.47, "lat": 31.23}), "outside every grid"),
            (json!({"lat": 95.0}), "latitude"),
            (json!({"lon": null}), "both lon and lat"),
            (json!({"category_code": "NOPE"}), "unknown category"),
            (json!({"category_code": "BJ01"}), "top class"),
            (json!({"source": "fax"}), "unknown source"),
            (json!({"description": "   "}), "description"),
            (json!({"urgency": "whenever"}), "urgency"),
            (json!({"crs": "mars"}), "coordinate system"),
            (json!({"resolved_on_spot": true, "source": "hotline"}), "on the spot"),
        ] {
            let (s, body) = gw.json(Method::POST, "/api/v1/grid/cases", Some(with(patch.clone()))).await;
            assert_error(s, &body, 422, "validation_failed");
            assert!(body["message"].as_str().unwrap().contains(needle), "{patch}: {body}");
        }
        let (s, body) = gw.json(Method::POST, "/api/v1/grid/cases", Some(json!({"source": "patrol"}))).await;
        assert_error(s, &body, 400, "invalid_json");
        let (_, list) = gw.json(Method::GET, "/api/v1/grid/cases?status=all", None).await;
        assert_eq!(list["total"], 0, "nothing half-made: {list}");
        let (_, inst) =
            app.login("flowadmin").await.json(Method::GET, "/api/v1/flow/instances?process_key=grid_case", None).await;
        assert_eq!(inst["total"], 0, "no process started: {inst}");
    }
}

#[tokio::test]
async fn resolved_on_the_spot_closes_at_once_and_duplicates_are_flagged_and_merged() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let gw = app.login("gridworker").await;
        let disp = app.login("dispatcher").await;
        let w = point(&points, "37010200100101");
        let (s, body) = gw
            .json(Method::POST, "/api/v1/grid/cases", Some(json!({"source": "patrol", "category_code": "SJ0201", "description": "楼道小广告已清理", "lon": w[0], "lat": w[1], "resolved_on_spot": true})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert_eq!(body["case"]["status"], "closed");
        assert!(body["case"]["closed_at"].as_i64().is_some());
        // Two reports of the same thing 20 m apart.
        let first = json!({"source": "citizen", "external_id": "ssp-1", "category_code": "SJ0101", "description": "路边垃圾", "lon": w[0], "lat": w[1]});
        let (_, a) = disp.json(Method::POST, "/api/v1/grid/cases", Some(first)).await;
        let (_, b) = disp
            .json(Method::POST, "/api/v1/grid/cases", Some(json!({"source": "hotline", "external_id": "12345-9", "category_code": "SJ0101", "description": "有垃圾没人收", "lon": w[0] + 0.0002, "lat": w[1]})))
            .await;
        let (a, b) = (a["case"]["id"].as_str().unwrap().to_string(), b["case"].clone());
        assert_eq!(b["possible_duplicate_of"], a.as_str(), "{b}");
        // North–south too, across the latitude bands the check's index is ordered by (0.0005°):
        // 22 m apart on either side of a band's edge is a possible duplicate; 67 m further is not.
        let edge = ((w[1] / 0.0005).floor() + 1.0) * 0.0005;
        let report = |lat: f64, ext: &str| json!({"source": "citizen", "external_id": ext, "category_code": "BJ0101", "description": "井盖破损", "lon": w[0], "lat": lat});
        let (_, c) = disp.json(Method::POST, "/api/v1/grid/cases", Some(report(edge - 0.0001, "ssp-2"))).await;
        let (_, d) = disp.json(Method::POST, "/api/v1/grid/cases", Some(report(edge + 0.0001, "ssp-3"))).await;
        let (_, e) = disp.json(Method::POST, "/api/v1/grid/cases", Some(report(edge + 0.0004, "ssp-4"))).await;
        assert!(c["case"]["possible_duplicate_of"].is_null(), "{c}");
        assert_eq!(d["case"]["possible_duplicate_of"], c["case"]["id"], "{d}");
        // 33 m from d, but d is itself a possible duplicate; 56 m from the main case c.
        assert!(e["case"]["possible_duplicate_of"].is_null(), "56 m from the nearest main case: {e}");
        // Two main cases in reach (c 33 m, e 22 m) and a flagged one nearer still (d, 11 m): the
        // nearer main case is named.
        let (_, f) = disp.json(Method::POST, "/api/v1/grid/cases", Some(report(edge + 0.0002, "ssp-5"))).await;
        assert_eq!(f["case"]["possible_duplicate_of"], e["case"]["id"], "the nearest main case: {f}");
        // Accepted on its own, d is a main case: the next report beside it names it.
        let (s, body) = act(&disp, d["case"]["id"].as_str().unwrap(), json!({"action": "accept"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(body["possible_duplicate_of"].is_null(), "{body}");
        let (_, g) = disp.json(Method::POST, "/api/v1/grid/cases", Some(report(edge + 0.00011, "ssp-6"))).await;
        assert_eq!(g["case"]["possible_duplicate_of"], d["case"]["id"], "{g}");
        let bid = b["id"].as_str().unwrap();
        let (s, body) = act(&disp, bid, json!({"action": "merge", "into": a})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "merged");
        assert_eq!(body["duplicate_of"], a.as_str());
        let (s, body) = act(&disp, &a, json!({"action": "merge", "into": a})).await;
        assert_error(s, &body, 422, "validation_failed");
    }
}

#[tokio::test]
async fn routing_by_territory_and_owner_and_learned_suggestions() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let admin = app.login("gridadmin").await;
        let (_, cats) = admin.json(Method::GET, "/api/v1/grid/categories", None).await;
        let cat = |code: &str| {
            cats.as_array().unwrap().iter().find(|c| c["code"] == code).unwrap()["id"].as_str().unwrap().to_string()
        };
        let lixia = point(&points, "37010200100101");
        let huaiyin = point(&points, "37010400100101");
        let route = |category: String, p: [f64; 2]| json!({"category_id": category, "lon": p[0], "lat": p[1]});
        // A territory rule: street order in 历下区 goes to its enforcement bureau; elsewhere to the owner.
        let (s, r) = admin.json(Method::POST, "/api/v1/grid/rules/test", Some(route(cat("SJ0503"), lixia))).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["by"], "rule");
        assert_eq!(r["department"]["code"], "370102-d2");
        let (_, r) = admin.json(Method::POST, "/api/v1/grid/rules/test", Some(route(cat("SJ0503"), huaiyin))).await;
        assert_eq!(r["by"], "owner");
        assert_eq!(r["department"]["code"], "370100-cgj");
        // Disputes go to the event's own street office.
        let (_, r) = admin.json(Method::POST, "/api/v1/grid/rules/test", Some(route(cat("ZZ0101"), huaiyin))).await;
        assert_eq!(r["department"]["code"], "370104001", "{r}");
        // A more local rule wins over the district's.
        let grid = app.org_id("37010200100101").await;
        let (s, body) = admin
            .json(Method::POST, "/api/v1/grid/rules", Some(json!({"name": "山大路网格街面秩序归街道", "category_id": cat("SJ05"), "area_org_id": grid, "target_level": "street"})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let (_, r) = admin.json(Method::POST, "/api/v1/grid/rules/test", Some(route(cat("SJ0503"), lixia))).await;
        assert_eq!(r["department"]["code"], "370102001", "{r}");
        let (s, body) = admin
            .json(Method::POST, "/api/v1/grid/rules", Some(json!({"name": "坏规则", "department_id": grid})))
            .await;
        assert_error(s, &body, 422, "validation_failed");
        let (s, body) = admin.json(Method::POST, "/api/v1/grid/rules", Some(json!({"name": "两者都给", "department_id": app.org_id("370100-cgj").await, "target_level": "street"}))).await;
        assert_error(s, &body, 422, "validation_failed");
        // Staff cannot edit rules.
        let (s, body) = app
            .login("dispatcher")
            .await
            .json(Method::POST, "/api/v1/grid/rules", Some(json!({"name": "x", "target_level": "street"})))
            .await;
        assert_error(s, &body, 403, "forbidden");

        // Suggestions from keywords, then from what the dispatcher chose.
        let (_, s1) = admin
            .json(
                Method::POST,
                "/api/v1/grid/categories/suggest",
                Some(json!({"text": "小区门口井盖破损有人差点摔倒"})),
            )
            .await;
        assert!(s1[0]["category"]["code"].as_str().unwrap().starts_with("BJ01"), "{s1}");
        let disp = app.login("dispatcher").await;
        let text = "东门外那个绿色铁皮箱子门开着晃荡";
        let (_, before) = disp.json(Method::POST, "/api/v1/grid/categories/suggest", Some(json!({"text": text}))).await;
        assert!(before.as_array().unwrap().iter().all(|s| s["category"]["code"] != "BJ0106"), "{before}");
        let (_, c) = disp
            .json(Method::POST, "/api/v1/grid/cases", Some(json!({"source": "hotline", "description": text, "category_code": "ZZ0501", "address": "山大路东门"})))
            .await;
        let id = c["case"]["id"].as_str().unwrap();
        let (s, body) = act(&disp, id, json!({"action": "accept", "category_id": cat("BJ0106")})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["category_code"], "BJ0106");
        let (_, after) =
            disp.json(Method::POST, "/api/v1/grid/categories/suggest", Some(json!({"text": "铁皮箱子门开着"}))).await;
        assert_eq!(after[0]["category"]["code"], "BJ0106", "{after}");
        assert!(after[0]["reasons"].as_array().unwrap().contains(&json!("learned")));
        // Time limits are checked when a category is edited.
        let (s, body) = admin
            .json(
                Method::PUT,
                &format!("/api/v1/grid/categories/{}", cat("BJ0106")),
                Some(json!({"code": "BJ0106", "name": "通信交接箱", "limits": {"accept": "soon"}})),
            )
            .await;
        assert_error(s, &body, 422, "validation_failed");
    }
}

#[tokio::test]
async fn boundaries_import_is_checked_and_cases_are_scoped() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let admin = app.login("gridadmin").await;
        // Export → the same boundaries come back; locate answers the lineage.
        let (s, fc) = admin.json(Method::GET, "/api/v1/grid/areas?level=grid", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(fc["features"].as_array().unwrap().len(), points.len());
        let p = point(&points, "37010200100101");
        let (s, loc) = admin.json(Method::GET, &format!("/api/v1/grid/locate?lon={}&lat={}", p[0], p[1]), None).await;
        assert_eq!(s, StatusCode::OK, "{loc}");
        let codes: Vec<&str> = loc["lineage"].as_array().unwrap().iter().map(|o| o["code"].as_str().unwrap()).collect();
        assert_eq!(&codes[..4], ["37010200100101", "370102001001", "370102001", "370102"]);
        let (s, body) = admin.json(Method::GET, "/api/v1/grid/locate?lon=121.4&lat=31.2", None).await;
        assert_error(s, &body, 422, "validation_failed");

        // A file where one grid swallows part of its neighbour, and one is a bow-tie.
        let feats = fc["features"].as_array().unwrap();
        let mut first = feats[0].clone();
        let mut second = feats[2].clone();
        let ring = first["geometry"]["coordinates"][0].as_array().unwrap().clone();
        let bbox_max_lat = ring.iter().map(|c| c[1].as_f64().unwrap()).fold(f64::MIN, f64::max);
        let bbox_min_lon = ring.iter().map(|c| c[0].as_f64().unwrap()).fold(f64::MAX, f64::min);
        let bbox_max_lon = ring.iter().map(|c| c[0].as_f64().unwrap()).fold(f64::MIN, f64::max);
        let grown = bbox_max_lat + 0.003;
        first["geometry"]["coordinates"] = json!([[
            [bbox_min_lon, grown - 0.02],
            [bbox_max_lon, grown - 0.02],
            [bbox_max_lon, grown],
            [bbox_min_lon, grown],
            [bbox_min_lon, grown - 0.02]
        ]]);
        second["geometry"]["coordinates"] =
            json!([[[117.0, 36.6], [117.01, 36.61], [117.01, 36.6], [117.0, 36.61], [117.0, 36.6]]]);
        let file = json!({"type": "FeatureCollection", "features": [first, second]}).to_string();
        let resp = admin
            .http
            .post(format!("{}/api/v1/grid/areas/import", admin.base))
            .header("x-csrf-token", &admin.csrf)
            .header("content-type", "application/geo+json")
            .body(file)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let report: Value = resp.json().await.unwrap();
        assert_eq!(report["imported"], 0, "{report}");
        let kinds: Vec<&str> =
            report["geometry_problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"invalid"), "{report}");
        assert!(kinds.contains(&"overlap"), "{report}");
        // Nothing changed: the point is still where it was.
        let (_, loc2) = admin.json(Method::GET, &format!("/api/v1/grid/locate?lon={}&lat={}", p[0], p[1]), None).await;
        assert_eq!(loc2["lineage"][0]["code"], "37010200100101");
        let resp = admin
            .http
            .post(format!("{}/api/v1/grid/areas/import", admin.base))
            .header("x-csrf-token", &admin.csrf)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

        // Scope: a department sees its own cases only; a grid worker those of her grid.
        let disp = app.login("dispatcher").await;
        let far = point(&points, "37010400100101");
        let (_, c) = disp
            .json(Method::POST, "/api/v1/grid/cases", Some(json!({"source": "hotline", "category_code": "SJ0404", "description": "积水", "lon": far[0], "lat": far[1]})))
            .await;
        let id = c["case"]["id"].as_str().unwrap();
        let (s, body) =
            app.login("cgj_handler").await.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert_error(s, &body, 404, "not_found");
        let (s, body) =
            app.login("gridworker").await.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert_error(s, &body, 404, "not_found");
        let (s, _) = disp.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert_eq!(s, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_case_edited_in_the_database_is_flagged_refuses_work_and_alerts_until_restored() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let disp = app.login("dispatcher").await;
        let p = point(&points, "37010200100101");
        let (s, c) = disp
            .json(
                Method::POST,
                "/api/v1/grid/cases",
                Some(json!({"source": "hotline", "category_code": "BJ0102", "description": "山大路井盖破损", "lon": p[0], "lat": p[1]})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        let id = c["case"]["id"].as_str().unwrap().to_string();
        let (s, body) = disp
            .json(Method::POST, &format!("/api/v1/grid/cases/{id}/actions"), Some(json!({"action": "accept"})))
            .await;
        assert!(s.is_success(), "{body}");
        let (_, d) = disp.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert!(d.get("integrity_violation").is_none(), "an intact case: {d}");
        assert!(!d["actions"].as_array().unwrap().is_empty());

        // Someone with database access rewrites what was reported.
        app.sql(format!("UPDATE grid_cases SET description = '已自行修复' WHERE id = '{id}'")).await;
        let (s, d) = disp.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert_eq!(s, StatusCode::OK, "the case can still be looked at");
        assert!(d["integrity_violation"].as_str().unwrap().contains("上报内容"), "{d}");
        assert_eq!(d["actions"], json!([]), "no work on a tampered case");
        let (s, body) = disp
            .json(Method::POST, &format!("/api/v1/grid/cases/{id}/actions"), Some(json!({"action": "dispatch"})))
            .await;
        assert_error(s, &body, 403, "integrity_violation");
        // Restored (as from a backup): intact again.
        app.sql(format!("UPDATE grid_cases SET description = '山大路井盖破损' WHERE id = '{id}'")).await;
        let (_, d) = disp.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert!(d.get("integrity_violation").is_none(), "{d}");

        // A step of the timeline changed, then one deleted from the middle.
        app.sql(format!("UPDATE grid_case_log SET actor = 'someone_else' WHERE case_id = '{id}' AND seq = 2")).await;
        let (_, d) = disp.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert!(d["integrity_violation"].as_str().unwrap().contains("第 2 步"), "{d}");
        app.sql(format!("UPDATE grid_case_log SET actor = 'dispatcher' WHERE case_id = '{id}' AND seq = 2")).await;
        let (_, d) = disp.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert!(d.get("integrity_violation").is_none(), "{d}");
        app.sql(format!("DELETE FROM grid_case_log WHERE case_id = '{id}' AND seq = 1")).await;
        let (_, d) = disp.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
        assert!(d["integrity_violation"].as_str().unwrap().contains("缺少第 1 步"), "{d}");

        // The security administrator has one open alert for the case; the findings are audited.
        let sec = app.login("secadmin").await;
        let (_, page) = sec.json(Method::GET, "/api/v1/security/alerts?rule=integrity_violation", None).await;
        let for_case: Vec<&Value> =
            page["items"].as_array().unwrap().iter().filter(|a| a["subject"] == format!("grid_case:{id}")).collect();
        assert_eq!(for_case.len(), 1, "{page}");
        assert_eq!(for_case[0]["subject_name"], c["case"]["case_no"]);
        let auditor = app.login("auditor").await;
        let (_, found) = auditor
            .json(
                Method::GET,
                &format!("/api/v1/audit/records?action=grid.case.integrity_violation&object_id={id}"),
                None,
            )
            .await;
        assert!(found["total"].as_i64().unwrap() >= 3, "{found}");
    }
}

async fn import_areas(s: &Session, query: &str, file: &Value) -> (StatusCode, Value) {
    s.upload(&format!("/api/v1/grid/areas/import?{query}"), "application/geo+json", file.to_string()).await
}

#[tokio::test]
async fn a_boundary_file_adds_new_grids_to_the_tree_and_only_grids_for_a_grid_administrator() {
    for backend in test_backends() {
        let (app, _points) = grid_app(backend).await;
        let admin = app.login("gridadmin").await;
        // Redraw community 370102001001 as four grids: its three and a new fourth one.
        let (_, comm) = admin.json(Method::GET, "/api/v1/grid/areas?level=community", None).await;
        let c =
            comm["features"].as_array().unwrap().iter().find(|f| f["properties"]["code"] == "370102001001").unwrap();
        let ring = c["geometry"]["coordinates"][0].as_array().unwrap();
        let xs: Vec<f64> = ring.iter().map(|p| p[0].as_f64().unwrap()).collect();
        let ys: Vec<f64> = ring.iter().map(|p| p[1].as_f64().unwrap()).collect();
        let area = spatial::BBox {
            min_lon: xs.iter().cloned().fold(f64::MAX, f64::min),
            min_lat: ys.iter().cloned().fold(f64::MAX, f64::min),
            max_lon: xs.iter().cloned().fold(f64::MIN, f64::max),
            max_lat: ys.iter().cloned().fold(f64::MIN, f64::max),
        };
        let shapes = spatial::synth::tessellate(area, 1, 4, 10, 77);
        let feature = |props: Value, shape: &spatial::Shape| {
            spatial::geojson::feature(shape, serde_json::from_value(props).unwrap())
        };
        let mut feats: Vec<Value> =
            (1..=3).map(|g| feature(json!({"code": format!("3701020010010{g}")}), &shapes[g - 1])).collect();
        feats.push(feature(
            json!({"code": "37010200100104", "name": "山大路第4网格", "level": "grid", "parent_code": "370102001001"}),
            &shapes[3],
        ));
        let file = json!({"type": "FeatureCollection", "features": feats});

        // Without create_orgs the unknown code is a problem naming the way out; nothing is written.
        let (s, r) = import_areas(&admin, "", &file).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["imported"], 0, "{r}");
        assert_eq!(r["feature_problems"][0]["code"], "37010200100104", "{r}");
        assert!(r["feature_problems"][0]["message"].as_str().unwrap().contains("create_orgs"), "{r}");
        // A dry run lists the grid it would create, and creates nothing.
        let (_, r) = import_areas(&admin, "create_orgs=true&dry_run=true", &file).await;
        assert_eq!(r["imported"], 0, "{r}");
        assert_eq!(r["feature_problems"], json!([]), "{r}");
        assert_eq!(r["geometry_problems"], json!([]), "{r}");
        assert_eq!(r["new_orgs"][0]["code"], "37010200100104", "{r}");
        assert!(r["new_orgs"][0].get("id").is_none(), "{r}");
        let (_, orgs) = admin.json(Method::GET, "/api/v1/orgs", None).await;
        assert!(!orgs.as_array().unwrap().iter().any(|o| o["code"] == "37010200100104"));

        // Imported: the grid exists under its community and the point → grid index finds it.
        let (s, r) = import_areas(&admin, "create_orgs=true", &file).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["imported"], 4, "{r}");
        let new_id = r["new_orgs"][0]["id"].as_str().expect("the new grid's id").to_string();
        let (_, orgs) = admin.json(Method::GET, "/api/v1/orgs", None).await;
        let o = orgs.as_array().unwrap().iter().find(|o| o["code"] == "37010200100104").expect("created").clone();
        assert_eq!(o["id"], new_id.as_str());
        assert_eq!(o["kind"], "grid");
        assert_eq!(o["name"], "山大路第4网格");
        let community = orgs.as_array().unwrap().iter().find(|o| o["code"] == "370102001001").unwrap();
        assert_eq!(o["parent_id"], community["id"]);
        let p = shapes[3].label_point();
        let (s, loc) = admin.json(Method::GET, &format!("/api/v1/grid/locate?lon={}&lat={}", p[0], p[1]), None).await;
        assert_eq!(s, StatusCode::OK, "{loc}");
        assert_eq!(loc["lineage"][0]["code"], "37010200100104", "{loc}");
        assert_eq!(loc["lineage"][1]["code"], "370102001001", "{loc}");
        // Its grid worker can be assigned like any other's.
        let (s, body) = admin
            .json(
                Method::POST,
                &format!("/api/v1/grid/areas/{new_id}/workers"),
                Some(json!({"username": "gridworker"})),
            )
            .await;
        assert!(s.is_success(), "{body}");

        // A grid administrator cannot add a community (that is the org tree's administrator's);
        // parents that lead nowhere or go round in a circle are named; nothing is written.
        let box_of = |dx: f64| {
            spatial::Shape::polygon(vec![
                [117.2 + dx, 36.8],
                [117.21 + dx, 36.8],
                [117.21 + dx, 36.81],
                [117.2 + dx, 36.81],
                [117.2 + dx, 36.8],
            ])
        };
        let bad = json!({"type": "FeatureCollection", "features": [
            feature(json!({"code": "370102001099", "name": "新社区", "level": "community", "parent_code": "370102001"}), &box_of(0.0)),
            feature(json!({"code": "G1", "name": "甲网格", "parent_code": "G2"}), &box_of(0.02)),
            feature(json!({"code": "G2", "name": "乙网格", "level": "community", "parent_code": "G1"}), &box_of(0.04)),
            feature(json!({"code": "G3", "name": "丙网格", "parent_code": "NOWHERE"}), &box_of(0.06)),
            feature(json!({"code": "G4", "name": "丁网格", "parent_code": "370100-cgj"}), &box_of(0.08)),
        ]});
        let (s, r) = import_areas(&admin, "create_orgs=true&accept_overlaps=true", &bad).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["imported"], 0, "{r}");
        let msg = |code: &str| {
            r["feature_problems"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["code"] == code)
                .map(|p| p["message"].as_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("no problem for {code}: {r}"))
        };
        assert!(msg("370102001099").contains("org.manage"), "{r}");
        assert!(msg("G1").contains("circle"), "{r}");
        assert!(msg("G3").contains("NOWHERE"), "{r}");
        assert!(msg("G4").contains("cannot sit under"), "{r}");
        let (_, orgs) = admin.json(Method::GET, "/api/v1/orgs", None).await;
        assert!(!orgs.as_array().unwrap().iter().any(|o| o["code"] == "G3" || o["code"] == "370102001099"));

        // The creation is audited with the import.
        let auditor = app.login("auditor").await;
        let (s, page) = auditor
            .json(Method::GET, &format!("/api/v1/audit/records?action=org.create&object_id={new_id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(page["total"], 1, "{page}");
        assert_eq!(page["items"][0]["actor_name"], "gridadmin");
    }
}

/// A tiny valid PNG (1×1, red).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xDE, 0x00, 0x00, 0x00, 0x0C, 0x49,
    0x44, 0x41, 0x54, 0x08, 0xD7, 0x63, 0xF8, 0xCF, 0xC0, 0x00, 0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xDD, 0x8D, 0xB0,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

async fn upload(s: &Session, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    s.upload(&format!("/api/v1/grid/attachments?name={name}"), "image/png", bytes).await
}

#[tokio::test]
async fn photos_are_checked_linked_to_their_step_and_shown_only_to_who_may_see_the_case() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let gw = app.login("gridworker").await;
        let disp = app.login("dispatcher").await;
        // Wrong type (checked by content, whatever the header says), empty, too large.
        let (s, body) = upload(&gw, "x.png", b"<svg onload=alert(1)>".to_vec()).await;
        assert_error(s, &body, 422, "validation_failed");
        let (s, body) = upload(&gw, "x.png", vec![]).await;
        assert_error(s, &body, 422, "validation_failed");
        let mut big = PNG.to_vec();
        big.resize(2 * 1024 * 1024 + 1, 0);
        let (s, _) = upload(&gw, "big.png", big).await;
        assert!(s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::PAYLOAD_TOO_LARGE, "{s}");
        let (s, photo) = upload(&gw, "井盖.png", PNG.to_vec()).await;
        assert_eq!(s, StatusCode::CREATED, "{photo}");
        assert_eq!(photo["mime"], "image/png");
        let pid = photo["id"].as_str().unwrap();
        // Someone else cannot use my upload.
        let w = point(&points, "37010200100101");
        let base = json!({"source": "patrol", "category_code": "BJ0102", "description": "井盖破损", "lon": w[0], "lat": w[1], "attachments": [pid]});
        let (s, body) = disp.json(Method::POST, "/api/v1/grid/cases", Some(base.clone())).await;
        assert_error(s, &body, 422, "validation_failed");
        // Before it is used, only its uploader can fetch it.
        let (s, body) = disp.json(Method::GET, &format!("/api/v1/grid/attachments/{pid}"), None).await;
        assert_error(s, &body, 404, "not_found");
        let (s, body) = gw.json(Method::POST, "/api/v1/grid/cases", Some(base)).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let id = body["case"]["id"].as_str().unwrap().to_string();
        let d = case(&disp, &id).await;
        assert_eq!(d["attachments"][0]["id"], pid);
        assert_eq!(d["attachments"][0]["stage"], "report");
        // The photo is served to who sees the case, with its type; not to others.
        let r = disp.get(&format!("/api/v1/grid/attachments/{pid}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.bytes().await.unwrap().as_ref(), PNG);
        let (s, body) =
            app.login("leader").await.json(Method::GET, &format!("/api/v1/grid/attachments/{pid}"), None).await;
        assert_error(s, &body, 403, "forbidden");
        // A photo cannot be used twice.
        let (s, body) = act(&disp, &id, json!({"action": "accept", "department_id": d["department_id"]})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let cgj = app.login("cgj_handler").await;
        let (s, body) = act(&cgj, &id, json!({"action": "handle", "feedback": "已更换", "attachments": [pid]})).await;
        assert_error(s, &body, 422, "validation_failed");
        assert_eq!(case(&disp, &id).await["stage"], "handle", "nothing moved");
        let (_, after) = upload(&cgj, "after.png", PNG.to_vec()).await;
        let (s, body) =
            act(&cgj, &id, json!({"action": "handle", "feedback": "已更换", "attachments": [after["id"]]})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let stages: Vec<&str> =
            body["attachments"].as_array().unwrap().iter().map(|a| a["stage"].as_str().unwrap()).collect();
        assert_eq!(stages, ["report", "handle"]);
    }
}

#[tokio::test]
async fn people_are_checked_encrypted_masked_imported_row_by_row_and_their_changes_kept() {
    for backend in test_backends() {
        let (app, _) = grid_app(backend).await;
        let gw = app.login("gridworker").await;
        let person = json!({"name": "王秀英", "id_card": "11010519491231002X", "mobile": "13964012345", "household": "JF-001",
            "relation": "户主", "residence": "户籍", "address": "历下区山大路3号楼1单元101室", "grid": "37010200100101", "tags": ["独居老人"]});
        let mut bad = person.clone();
        bad["id_card"] = json!("110105194912310021");
        let (s, body) = gw.json(Method::POST, "/api/v1/grid/people", Some(bad)).await;
        assert_error(s, &body, 422, "validation_failed");
        assert!(body["message"].as_str().unwrap().contains("check digit"), "{body}");
        let mut other = person.clone();
        other["grid"] = json!("37010400100101");
        let (s, body) = gw.json(Method::POST, "/api/v1/grid/people", Some(other)).await;
        assert_error(s, &body, 403, "forbidden");
        let (s, p) = gw.json(Method::POST, "/api/v1/grid/people", Some(person.clone())).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        // Masked for a grid worker (no pi.unmask): the birth date never shows.
        assert_eq!(p["name"], "王**");
        assert!(!p["id_card"].as_str().unwrap().contains("19491231"), "{p}");
        assert_eq!(p["gender"], "female");
        assert_eq!(p["birth_year"], 1949);
        // Stored encrypted: the database holds no plain name or number.
        let raw: String = sqlx::query_scalar("SELECT name_enc || id_card_enc FROM grid_people")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert!(!raw.contains("王秀英") && !raw.contains("11010519491231002X"));
        // Found by the exact number; the same number again updates, with its history.
        let (_, found) = gw.json(Method::GET, "/api/v1/grid/people?id_card=11010519491231002x", None).await;
        assert_eq!(found["total"], 1);
        let mut moved = person.clone();
        moved["mobile"] = json!("13964019999");
        moved["tags"] = json!(["独居老人", "低保户"]);
        let (s, again) = gw.json(Method::POST, "/api/v1/grid/people", Some(moved)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(again["id"], p["id"]);
        let pid = p["id"].as_str().unwrap();
        let (_, hist) = gw.json(Method::GET, &format!("/api/v1/grid/people/{pid}/history"), None).await;
        assert_eq!(hist.as_array().unwrap().len(), 2, "{hist}");
        assert_eq!(hist[1]["fields"], json!(["mobile", "tags"]));
        // CSV import: bad rows reported by line, the rest imported; the known number updates.
        let csv = "姓名,身份证号,手机号,户号,与户主关系,人口类型,住址,网格,标签\n\
                   王秀英,11010519491231002X,13964019999,JF-001,户主,户籍,历下区山大路3号楼1单元101室,37010200100101,独居老人、低保户、残疾人\n\
                   李建国,110105194912310021,,JF-002,户主,户籍,,37010200100101,\n\
                   张桂兰,370102195003070022,,JF-002,配偶,户籍,,37010200100101,\n\
                   ,370102195003070022,,,,,,37010200100101,\n\
                   赵志强,370102198805120011,,JF-003,户主,外来,,37010200100101,\n";
        let r = gw
            .http
            .post(format!("{}/api/v1/grid/people/import", gw.base))
            .header("x-csrf-token", &gw.csrf)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let report: Value = r.json().await.unwrap();
        let lines: Vec<i64> =
            report["problems"].as_array().unwrap().iter().map(|p| p["line"].as_i64().unwrap()).collect();
        assert_eq!(report["updated"], 1, "{report}");
        assert!(lines.contains(&3), "bad check digit on line 3: {report}");
        assert!(lines.contains(&5), "no name on line 5: {report}");
        assert!(lines.contains(&6), "unknown residence on line 6: {report}");
        let created = report["created"].as_i64().unwrap();
        // The same file as Excel saves CSV on Chinese Windows (GB18030) reads the same.
        let (gbk, _, _) = encoding_rs::GB18030.encode(
            "姓名,身份证号,网格,标签\n李建国,110105194912310021,37010200100101,\n王秀英,11010519491231002X,37010200100101,独居老人\n",
        );
        let r = gw
            .http
            .post(format!("{}/api/v1/grid/people/import", gw.base))
            .header("x-csrf-token", &gw.csrf)
            .header("content-type", "text/csv")
            .body(gbk.into_owned())
            .send()
            .await
            .unwrap();
        let again: Value = r.json().await.unwrap();
        assert_eq!(again["updated"], 1, "{again}");
        assert_eq!(again["problems"].as_array().unwrap().len(), 1, "the bad check digit again: {again}");
        let (_, all) = gw.json(Method::GET, "/api/v1/grid/people", None).await;
        assert_eq!(all["total"].as_i64().unwrap(), 1 + created, "{report}");
        // Outside the caller's area nothing shows.
        let (_, none) = app.login("cgj_handler").await.json(Method::GET, "/api/v1/grid/people", None).await;
        assert_eq!(none["total"], 0);
    }
}

async fn post_csv(s: &Session, path: &str, csv: &str) -> Value {
    let r = s
        .http
        .post(format!("{}{path}", s.base))
        .header("x-csrf-token", &s.csrf)
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn facilities_and_organisations_are_checked_placed_and_imported_row_by_row() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let gw = app.login("gridworker").await;
        let w = point(&points, "37010200100101");
        // A manhole cover: class 01/02 is 污水井盖, placed in its grid by position, owned by the class's owner.
        let cover = json!({"code": "3701020102000001", "lon": w[0], "lat": w[1], "address": "山大路3号楼东侧"});
        let (s, f) = gw.json(Method::POST, "/api/v1/grid/facilities", Some(cover.clone())).await;
        assert_eq!(s, StatusCode::OK, "{f}");
        assert_eq!(f["category_code"], "BJ0102");
        assert_eq!(f["name"], "污水井盖");
        assert_eq!(f["grid_id"], app.org_id("37010200100101").await.as_str());
        assert_eq!(f["owner_org_name"], "济南市城市管理局");
        for (code, needle) in [("3701020199000001", "not a component category"), ("37010201", "16 digits")] {
            let mut bad = cover.clone();
            bad["code"] = json!(code);
            let (s, body) = gw.json(Method::POST, "/api/v1/grid/facilities", Some(bad)).await;
            assert_error(s, &body, 422, "validation_failed");
            assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
        }
        let mut damaged = cover.clone();
        damaged["state"] = json!("损坏");
        let (_, f2) = gw.json(Method::POST, "/api/v1/grid/facilities", Some(damaged)).await;
        assert_eq!(f2["id"], f["id"]);
        assert_eq!(f2["state"], "damaged");
        let fid = f["id"].as_str().unwrap();
        let (_, hist) = gw.json(Method::GET, &format!("/api/v1/grid/facilities/{fid}/history"), None).await;
        assert_eq!(hist[1]["fields"], json!(["state"]), "{hist}");
        let csv = format!(
            "部件编码,名称,经度,纬度,坐标系,权属部门,状态,地址\n3701020104000001,路灯,{},{},wgs84,,正常,文化东路\n3701020104000002,路灯,121.4,31.2,wgs84,,正常,上海\n3701020104000003,路灯,{},{},wgs84,,坏了,\n",
            w[0], w[1], w[0], w[1]
        );
        let report = post_csv(&gw, "/api/v1/grid/facilities/import", &csv).await;
        assert_eq!(report["created"], 1, "{report}");
        let lines: Vec<i64> =
            report["problems"].as_array().unwrap().iter().map(|p| p["line"].as_i64().unwrap()).collect();
        assert_eq!(lines, [3, 4], "{report}");
        let (_, list) = gw.json(Method::GET, "/api/v1/grid/facilities", None).await;
        assert_eq!(list["total"], 2, "the bad rows left nothing: {list}");

        // Organisations: the credit code's check character.
        let org = json!({"uscc": "91370102MA3C8Q9X2R", "name": "济南山大路便民超市有限公司", "kind": "企业", "grid": "37010200100101"});
        let (s, body) = gw.json(Method::POST, "/api/v1/grid/org-records", Some(org)).await;
        assert_error(s, &body, 422, "validation_failed");
        let good = json!({"uscc": "9144030071526726XG", "name": "深圳市腾讯计算机系统有限公司济南分部", "kind": "企业", "grid": "37010200100101"});
        let (s, o) = gw.json(Method::POST, "/api/v1/grid/org-records", Some(good)).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        assert_eq!(o["kind"], "enterprise");
        let csv = "统一社会信用代码,名称,类型,地址,网格\n91330100799655058B,阿里巴巴（中国）有限公司济南办事处,企业,山大路,37010200100101\n91330100799655058C,错号公司,企业,,37010200100101\n9144030071526726XG,深圳市腾讯计算机系统有限公司济南分部,企业,山大路10号,37010200100101\n";
        let report = post_csv(&gw, "/api/v1/grid/org-records/import", csv).await;
        assert_eq!((report["created"].as_i64(), report["updated"].as_i64()), (Some(1), Some(1)), "{report}");
        assert_eq!(report["problems"][0]["line"], 3);
        let (_, list) = gw.json(Method::GET, "/api/v1/grid/org-records?q=9144030071526726xg", None).await;
        assert_eq!(list["items"][0]["address"], "山大路10号", "{list} {report}");
        let (_, none) = app.login("cgj_handler").await.json(Method::GET, "/api/v1/grid/org-records", None).await;
        assert_eq!(none["total"], 0);
    }
}

#[tokio::test]
async fn places_are_registered_and_addresses_find_them_for_events_and_people() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let gw = app.login("gridworker").await;
        let disp = app.login("dispatcher").await;
        let w = point(&points, "37010200100101");
        let my_grid = app.org_id("37010200100101").await;
        let building = json!({"code": "370102-SDL-012", "kind": "楼栋", "name": "12号楼", "address": "历下区山大路12号",
            "lon": w[0], "lat": w[1], "usage": "住宅", "floors": 6});
        let (s, b) = gw.json(Method::POST, "/api/v1/grid/places", Some(building.clone())).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["grid_id"], my_grid.as_str());
        assert_eq!(b["usage"], "residential");
        let (s, h) = gw
            .json(
                Method::POST,
                "/api/v1/grid/places",
                Some(json!({"code": "370102-SDL-012-1-101", "kind": "house", "building": "370102-SDL-012", "name": "1单元101室", "usage": "出租"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{h}");
        assert_eq!(h["address"], "历下区山大路12号1单元101室", "a house's address follows its building's");
        assert_eq!(h["lon"], b["lon"]);
        // Import: a house of an unknown building is refused by line, the rest imported.
        let csv = "编码,类型,所属楼栋,名称,地址,用途\n370102-SDL-012-1-201,房屋,370102-SDL-012,1单元201室,,自住\n\
                   370102-SDL-099-1-101,房屋,370102-SDL-099,1单元101室,,自住\n370102-SDL-012-1-301,房屋,370102-SDL-012,1单元301室,,仓库\n";
        let report = post_csv(&gw, "/api/v1/grid/places/import", csv).await;
        assert_eq!(report["created"], 1, "{report}");
        let lines: Vec<i64> =
            report["problems"].as_array().unwrap().iter().map(|p| p["line"].as_i64().unwrap()).collect();
        assert_eq!(lines, [3, 4], "{report}");
        let (_, list) = gw
            .json(
                Method::GET,
                &format!("/api/v1/grid/places?kind=house&building_id={}", b["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(list["total"], 2);

        // Geocoding: written any way, the most specific place wins; what is left over is kept.
        for (addr, code, rest) in [
            ("济南市历下区山大路１２号 1单元101室东侧", "370102-SDL-012-1-101", "东侧"),
            ("山大路12号南门", "370102-SDL-012", "南门"),
        ] {
            let (s, g) =
                disp.json(Method::GET, &format!("/api/v1/grid/geocode?address={}", urlencode(addr)), None).await;
            assert_eq!(s, StatusCode::OK, "{g}");
            assert_eq!(g["place"]["code"], code, "{addr}: {g}");
            assert_eq!(g["rest"], rest);
        }
        let (_, none) =
            disp.json(Method::GET, &format!("/api/v1/grid/geocode?address={}", urlencode("文化东路88号")), None).await;
        assert!(none.is_null(), "{none}");

        // A hotline event with only an address is placed by it.
        let (s, body) = disp
            .json(
                Method::POST,
                "/api/v1/grid/cases",
                Some(json!({"source": "hotline", "external_id": "12345-addr-1", "category_code": "SJ0101",
                    "description": "楼道里堆放垃圾多日无人清理", "address": "山大路12号1单元101室门口"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert_eq!(body["case"]["grid_id"], my_grid.as_str());
        assert!(body["case"]["lon"].as_f64().is_some());
        let id = body["case"]["id"].as_str().unwrap();
        let d = case(&disp, id).await;
        assert!(d["timeline"][0]["note"].as_str().unwrap().contains("按地址定位到“历下区山大路12号1单元101室”"), "{d}");

        // A resident registered by address lands in the building's grid.
        let (s, p) = gw
            .json(
                Method::POST,
                "/api/v1/grid/people",
                Some(json!({"name": "刘淑珍", "id_card": "370102195504120028", "residence": "户籍", "address": "历下区山大路12号1单元101室"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["grid_id"], my_grid.as_str());
        let (s, body) = gw
            .json(
                Method::POST,
                "/api/v1/grid/people",
                Some(json!({"name": "刘淑珍", "id_card": "370102195504120028", "residence": "户籍", "address": "文化东路88号"})),
            )
            .await;
        assert_error(s, &body, 422, "validation_failed");
        assert!(body["message"].as_str().unwrap().contains("no registered building matches"), "{body}");

        // Changes are recorded.
        let mut moved = building.clone();
        moved["floors"] = json!(7);
        let (s, _) = gw.json(Method::POST, "/api/v1/grid/places", Some(moved)).await;
        assert_eq!(s, StatusCode::OK);
        let (_, hist) =
            gw.json(Method::GET, &format!("/api/v1/grid/places/{}/history", b["id"].as_str().unwrap()), None).await;
        assert_eq!(hist[1]["fields"], json!(["floors"]), "{hist}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// DJ-DI-2 (`row_mac_tamper`): base-information records changed in the database, outside the
/// application, are flagged where they are read, refused for changes (by form and by import) and
/// alerted; moving a building reseals its houses; restored from a backup, they work again.
#[tokio::test]
async fn base_records_changed_outside_the_application_are_flagged_refused_and_alerted() {
    for backend in test_backends() {
        let (app, points) = grid_app(backend).await;
        let gw = app.login("gridworker").await;
        let w = point(&points, "37010200100101");
        let person = json!({"name": "王秀英", "id_card": "11010519491231002X", "residence": "户籍", "household": "JF-001",
            "grid": "37010200100101"});
        let (s, p) = gw.json(Method::POST, "/api/v1/grid/people", Some(person.clone())).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["integrity_violation"], false);
        let neighbour =
            json!({"name": "刘淑珍", "id_card": "370102195504120028", "residence": "户籍", "grid": "37010200100101"});
        let (s, n) = gw.json(Method::POST, "/api/v1/grid/people", Some(neighbour)).await;
        assert_eq!(s, StatusCode::OK);
        let nid = n["id"].as_str().unwrap().to_string();
        let cover = json!({"code": "3701020102000001", "lon": w[0], "lat": w[1]});
        let (s, f) = gw.json(Method::POST, "/api/v1/grid/facilities", Some(cover.clone())).await;
        assert_eq!(s, StatusCode::OK, "{f}");
        let org = json!({"uscc": "9144030071526726XG", "name": "深圳市腾讯计算机系统有限公司济南分部", "kind": "企业", "grid": "37010200100101"});
        let (s, o) = gw.json(Method::POST, "/api/v1/grid/org-records", Some(org.clone())).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        let building = json!({"code": "370102-SDL-012", "kind": "楼栋", "name": "12号楼", "address": "历下区山大路12号",
            "lon": w[0], "lat": w[1]});
        let (s, b) = gw.json(Method::POST, "/api/v1/grid/places", Some(building.clone())).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let house = json!({"code": "370102-SDL-012-1-101", "kind": "house", "building": "370102-SDL-012", "name": "1单元101室"});
        let (s, h) = gw.json(Method::POST, "/api/v1/grid/places", Some(house)).await;
        assert_eq!(s, StatusCode::OK, "{h}");
        // Moving the building moves (and reseals) its houses: still intact.
        let mut moved = building.clone();
        moved["lon"] = json!(w[0] + 0.00002);
        let (s, _) = gw.json(Method::POST, "/api/v1/grid/places", Some(moved.clone())).await;
        assert_eq!(s, StatusCode::OK);
        let (_, houses) = gw.json(Method::GET, "/api/v1/grid/places?kind=house", None).await;
        let lon = houses["items"][0]["lon"].as_f64().unwrap();
        assert!((lon - moved["lon"].as_f64().unwrap()).abs() < 1e-9, "{houses}");
        assert_eq!(houses["items"][0]["integrity_violation"], false, "{houses}");

        let (pid, fid, oid, hid) = (
            p["id"].as_str().unwrap(),
            f["id"].as_str().unwrap(),
            o["id"].as_str().unwrap(),
            h["id"].as_str().unwrap(),
        );
        // Someone with database access moves a person to another household, marks a manhole cover as
        // removed, renames a company and changes a house's use.
        app.sql(format!("UPDATE grid_people SET household = 'JF-999' WHERE id = '{pid}'")).await;
        app.sql(format!("UPDATE grid_facilities SET state = 'removed' WHERE id = '{fid}'")).await;
        app.sql(format!("UPDATE grid_org_records SET name = '某某公司' WHERE id = '{oid}'")).await;
        app.sql(format!("UPDATE grid_places SET usage = 'vacant' WHERE id = '{hid}'")).await;
        // And overwrites a neighbour's encrypted name with something that does not decrypt.
        app.sql(format!("UPDATE grid_people SET name_enc = 'zs1:t1:AAAA' WHERE id = '{nid}'")).await;

        let flagged = |list: &Value| -> Vec<String> {
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["integrity_violation"] == true)
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        };
        let (s, people) = gw.json(Method::GET, "/api/v1/grid/people", None).await;
        assert_eq!((s, &people["total"]), (StatusCode::OK, &json!(2)), "the list still answers: {people}");
        let mut both = flagged(&people);
        both.sort();
        let mut expected = vec![pid.to_string(), nid.clone()];
        expected.sort();
        assert_eq!(both, expected, "the changed people: {people}");
        let (_, d) = gw.json(Method::GET, &format!("/api/v1/grid/people/{pid}"), None).await;
        assert_eq!(d["integrity_violation"], true, "{d}");
        let (_, list) = gw.json(Method::GET, "/api/v1/grid/facilities", None).await;
        assert_eq!(flagged(&list), [fid]);
        let (_, list) = gw.json(Method::GET, "/api/v1/grid/org-records", None).await;
        assert_eq!(flagged(&list), [oid]);
        let (_, list) = gw.json(Method::GET, "/api/v1/grid/places", None).await;
        assert_eq!(flagged(&list), [hid], "the building is intact: {list}");

        // No changes until restored: by form, and by import (the row is reported, the rest imported).
        let (s, body) = gw.json(Method::POST, "/api/v1/grid/people", Some(person.clone())).await;
        assert_error(s, &body, 403, "integrity_violation");
        assert!(body["message"].as_str().unwrap().contains("人口信息"), "{body}");
        let mut repaired = cover.clone();
        repaired["state"] = json!("正常");
        let (s, body) = gw.json(Method::POST, "/api/v1/grid/facilities", Some(repaired)).await;
        assert_error(s, &body, 403, "integrity_violation");
        let csv = "统一社会信用代码,名称,类型,地址,网格\n91330100799655058B,阿里巴巴（中国）有限公司济南办事处,企业,山大路,37010200100101\n\
                   9144030071526726XG,深圳市腾讯计算机系统有限公司济南分部,企业,山大路10号,37010200100101\n";
        let report = post_csv(&gw, "/api/v1/grid/org-records/import", csv).await;
        assert_eq!(report["created"], 1, "{report}");
        assert_eq!(report["problems"][0]["line"], 3, "{report}");
        assert!(report["problems"][0]["message"].as_str().unwrap().contains("完整性"), "{report}");
        let unchanged: String =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM grid_org_records WHERE id = '{oid}'")))
                .fetch_one(app.state.db.reader())
                .await
                .unwrap();
        assert_eq!(unchanged, "某某公司", "nothing written over the tampered record");

        // The security administrator is alerted once per record; the findings are audited.
        let sec = app.login("secadmin").await;
        let mut subjects = Vec::new();
        for _ in 0..100 {
            let (_, page) =
                sec.json(Method::GET, "/api/v1/security/alerts?rule=integrity_violation&page_size=100", None).await;
            subjects =
                page["items"].as_array().unwrap().iter().map(|a| a["subject"].as_str().unwrap().to_string()).collect();
            if subjects.len() >= 5 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        subjects.sort();
        let mut expected = vec![
            format!("grid_person:{pid}"),
            format!("grid_person:{nid}"),
            format!("grid_facility:{fid}"),
            format!("grid_org_record:{oid}"),
            format!("grid_place:{hid}"),
        ];
        expected.sort();
        assert_eq!(subjects, expected);
        let auditor = app.login("auditor").await;
        let (_, found) = auditor
            .json(
                Method::GET,
                &format!("/api/v1/audit/records?action=grid.person.integrity_violation&object_id={pid}"),
                None,
            )
            .await;
        assert!(found["total"].as_i64().unwrap() >= 2, "{found}");

        // Restored (as from a backup): intact again, and changes work.
        app.sql(format!("UPDATE grid_people SET household = 'JF-001' WHERE id = '{pid}'")).await;
        let (_, d) = gw.json(Method::GET, &format!("/api/v1/grid/people/{pid}"), None).await;
        assert_eq!(d["integrity_violation"], false, "{d}");
        let mut changed = person.clone();
        changed["household"] = json!("JF-002");
        let (s, d) = gw.json(Method::POST, "/api/v1/grid/people", Some(changed)).await;
        assert_eq!((s, &d["household"]), (StatusCode::OK, &json!("JF-002")), "{d}");
        assert_eq!(d["integrity_violation"], false);
    }
}
