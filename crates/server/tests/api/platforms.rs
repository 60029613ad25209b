//! Third-party platforms on every backend, against the simulator over real HTTP: dispatch
//! through the outbox, signed callbacks that move the case, outages, lost acknowledgements,
//! duplicate callbacks, alerts, reconciliation, and events sent by a platform.

use std::sync::Arc;

use grid::Grid;
use grid::simulator::{Mode, Simulator};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::test_backends;

use crate::helpers::{Session, TestApp, assert_error};

struct Setup {
    app: TestApp,
    points: Vec<(String, [f64; 2])>,
    sims: Vec<(String, Simulator)>,
}

impl Setup {
    fn sim(&self, code: &str) -> &Simulator {
        &self.sims.iter().find(|(c, _)| c == code).expect("simulator").1
    }

    fn grid(&self) -> Grid {
        self.app.state.services.get::<Grid>().unwrap().clone()
    }

    /// Delivers everything due now (as the relay does), a few rounds.
    async fn relay(&self) -> usize {
        let mut n = 0;
        for _ in 0..5 {
            n += self.grid().relay_once().await.unwrap();
        }
        n
    }
}

async fn setup(backend: store::Backend) -> Setup {
    let app =
        TestApp::start_with(backend, |cfg| cfg.grid.dispatch_center = zhongshu::demo::DISPATCH_CENTER.into()).await;
    let points = zhongshu::demo_grid::seed_setup(&app.state).await.expect("grid setup");
    let sims = zhongshu::demo_grid::seed_platforms(&app.state, &app.base, Arc::new(app.clock.clone()))
        .await
        .expect("platforms");
    // Nothing moves by itself: the tests drive each step.
    for (_, s) in &sims {
        s.set_mode(Mode::default());
    }
    Setup { app, points, sims }
}

async fn report(s: &Session, points: &[(String, [f64; 2])], ext: &str, category: &str) -> String {
    let p = points.iter().find(|(c, _)| c == "37010200100101").unwrap().1;
    let (st, body) = s
        .json(
            Method::POST,
            "/api/v1/grid/cases",
            Some(json!({"source": "patrol", "external_id": ext, "category_code": category,
                "description": "非机动车在盲道上乱停放，影响通行", "lon": p[0], "lat": p[1], "address": "山大路12号"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    body["case"]["id"].as_str().unwrap().to_string()
}

async fn to_platform(setup: &Setup, disp: &Session, case: &str) {
    let org = setup.app.org_id("370100-szcg").await;
    let (st, body) = disp
        .json(
            Method::POST,
            &format!("/api/v1/grid/cases/{case}/actions"),
            Some(json!({"action": "accept", "department_id": org, "override_reason": "属数字城管平台监管范围"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["stage"], "handle");
}

async fn detail(s: &Session, id: &str) -> Value {
    let (st, body) = s.json(Method::GET, &format!("/api/v1/grid/cases/{id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_case_dispatched_to_a_platform_is_delivered_once_and_its_callbacks_move_it() {
    for backend in test_backends() {
        let t = setup(backend).await;
        let gw = t.app.login("gridworker").await;
        let disp = t.app.login("dispatcher").await;
        let admin = t.app.login("gridadmin").await;
        let szcg = t.sim("szcg");

        let id = report(&gw, &t.points, "gw-plat-1", "SJ0504").await;
        to_platform(&t, &disp, &id).await;
        let d = detail(&disp, &id).await;
        assert_eq!(d["platforms"][0]["direction"], "out", "{d}");
        assert_eq!(d["deliveries"][0]["state"], "pending");
        assert_eq!(d["deliveries"][0]["kind"], "dispatch");

        // Delivered in the platform's words, signed, with its coordinates in GCJ-02.
        assert_eq!(t.relay().await, 1);
        let stats = szcg.stats();
        assert_eq!((stats.received, stats.duplicates, stats.bad_signatures), (1, 0, 0), "{stats:?}");
        let ticket = szcg.tickets().pop().unwrap();
        assert_eq!(ticket.body["eventTypeCode"], "020504", "the category in the platform's code: {}", ticket.body);
        assert!(ticket.body["eventDesc"].as_str().unwrap().contains("盲道"));
        let x = ticket.body["x"].as_f64().unwrap();
        let wgs = t.points.iter().find(|(c, _)| c == "37010200100101").unwrap().1;
        assert!((x - wgs[0]).abs() > 1e-4, "GCJ-02 is offset from WGS84");
        let d = detail(&disp, &id).await;
        assert_eq!(d["deliveries"][0]["state"], "delivered", "{d}");
        assert_eq!(d["deliveries"][0]["ticket"], ticket.ticket_no.as_str());
        assert_eq!(d["platforms"][0]["ticket"], ticket.ticket_no.as_str());

        // Accepted — called back twice: it takes effect once.
        szcg.set_mode(Mode { answer_twice: true, ..Mode::default() });
        szcg.progress(&ticket.dispatch_id, "accepted", Some("已受理")).await.unwrap();
        assert_eq!(szcg.stats().callbacks_sent, 2, "{:?}", szcg.stats());
        let d = detail(&disp, &id).await;
        assert_eq!(d["platforms"][0]["remote_state"], "accepted", "{d}");
        assert_eq!(d["stage"], "handle");
        // Handled: the case moves to verification, the step recorded as the platform's.
        szcg.progress(&ticket.dispatch_id, "handled", Some("已清理乱停车辆")).await.unwrap();
        let d = detail(&gw, &id).await;
        assert_eq!(d["stage"], "verify", "{d}");
        let last = d["timeline"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["action"], "handle");
        assert!(last["note"].as_str().unwrap().contains("已清理乱停车辆"), "{last}");
        assert!(last["actor"].as_str().unwrap().starts_with("app:"), "{last}");
        // Our grid worker verifies: the platform hears 核实反馈 and the closing, in order, once.
        let (st, body) = gw
            .json(
                Method::POST,
                &format!("/api/v1/grid/cases/{id}/actions"),
                Some(json!({"action": "verify", "passed": true, "note": "现场已恢复"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "closed");
        szcg.set_mode(Mode::default());
        t.relay().await;
        let reports: Vec<String> =
            szcg.status_reports().iter().map(|r| r["status"].as_str().unwrap_or("").to_string()).collect();
        assert_eq!(reports, ["verified", "closed"]);

        // An outage: the message waits, the platform pauses, the administrators are told once,
        // and it is delivered once the platform is back — once.
        szcg.set_mode(Mode { down: true, ..Mode::default() });
        let id2 = report(&gw, &t.points, "gw-plat-2", "SJ0504").await;
        to_platform(&t, &disp, &id2).await;
        t.relay().await;
        let (_, log) = admin.json(Method::GET, "/api/v1/grid/deliveries?state=pending", None).await;
        let row = log["items"].as_array().unwrap().iter().find(|r| r["case_id"] == id2.as_str()).unwrap().clone();
        assert!(row["last_error"].as_str().unwrap().contains("503"), "{row}");
        assert_eq!(row["attempts"], 1, "a paused platform is not hammered: {row}");
        t.app.clock.advance_secs(31 * 60);
        // (Sessions idle for 30 minutes end: log in again.)
        let (gw, disp, admin) =
            (t.app.login("gridworker").await, t.app.login("dispatcher").await, t.app.login("gridadmin").await);
        assert_eq!(t.grid().alert_undelivered().await.unwrap(), 1);
        assert_eq!(t.grid().alert_undelivered().await.unwrap(), 0, "told once");
        let (_, inbox) = admin.json(Method::GET, "/api/v1/notify/inbox", None).await;
        assert!(
            inbox["items"].as_array().unwrap().iter().any(|m| m["title"].as_str().unwrap().contains("推送告警")),
            "{inbox}"
        );
        let (_, platforms) = admin.json(Method::GET, "/api/v1/grid/platforms", None).await;
        let p = platforms.as_array().unwrap().iter().find(|p| p["code"] == "szcg").unwrap().clone();
        assert_eq!((p["pending"].as_i64(), p["overdue"].as_i64()), (Some(1), Some(1)), "{p}");
        szcg.set_mode(Mode::default());
        t.relay().await;
        assert_eq!(szcg.stats().received, 2, "{:?}", szcg.stats());

        // An acknowledgement lost on the way back: sent again under the same key, one dispatch.
        szcg.set_mode(Mode { lose_answers: true, ..Mode::default() });
        let id3 = report(&gw, &t.points, "gw-plat-3", "SJ0504").await;
        to_platform(&t, &disp, &id3).await;
        let pid = p["id"].as_str().unwrap();
        let mut platform: Value = p.clone();
        platform["timeout_ms"] = json!(300);
        let mut input = json!({});
        for k in ["code", "name", "kind", "org_id", "app_id", "endpoint", "out_key", "mapping", "timeout_ms"] {
            input[k] = platform[k].clone();
        }
        let (st, body) = admin.json(Method::PUT, &format!("/api/v1/grid/platforms/{pid}"), Some(input)).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        t.app.clock.advance_secs(3);
        t.grid().relay_once().await.unwrap();
        assert_eq!(szcg.stats().received, 3, "the platform acted on it");
        szcg.set_mode(Mode::default());
        let (st, body) =
            admin.json(Method::POST, &format!("/api/v1/grid/platforms/{pid}/retry"), Some(json!({}))).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        t.relay().await;
        let s = szcg.stats();
        assert_eq!((s.received, s.duplicates), (3, 1), "exactly once per case: {s:?}");
        let d = detail(&disp, &id3).await;
        assert_eq!(d["deliveries"][0]["state"], "delivered", "{d}");
        assert_eq!(d["deliveries"][0]["attempts"], 2);

        // Reconciliation: a result the platform never called back moves the case; a dispatch the
        // platform lost is sent again.
        let tickets = szcg.tickets();
        let t2 = tickets.iter().find(|x| x.times_received == 1 && x.state == "received").unwrap().dispatch_id.clone();
        szcg.set_mode(Mode::default());
        let lost = tickets.iter().find(|x| x.times_received == 2).unwrap().dispatch_id.clone();
        szcg.forget(&lost);
        set_silently(szcg, &t2);
        let (st, run) = admin.json(Method::POST, &format!("/api/v1/grid/platforms/{pid}/reconciliations"), None).await;
        assert_eq!(st, StatusCode::OK, "{run}");
        assert_eq!(
            (run["checked"].as_i64(), run["advanced"].as_i64(), run["resent"].as_i64()),
            (Some(2), Some(1), Some(1)),
            "{run}"
        );
        assert_eq!(detail(&disp, &id2).await["stage"], "verify");
        t.relay().await;
        assert!(szcg.tickets().iter().any(|x| x.dispatch_id == lost), "sent again");
        let (_, runs) = admin.json(Method::GET, &format!("/api/v1/grid/platforms/{pid}/reconciliations"), None).await;
        assert_eq!(runs.as_array().unwrap().len(), 1);
    }
}

/// The platform handles a dispatch and forgets to call back (its callback target is gone).
fn set_silently(sim: &Simulator, dispatch_id: &str) {
    sim.set_state(dispatch_id, "handled", "已处置（未回调）");
}

#[tokio::test]
async fn events_from_a_platform_come_in_mapped_and_its_verification_closes_them() {
    for backend in test_backends() {
        let t = setup(backend).await;
        let disp = t.app.login("dispatcher").await;
        let hotline = t.sim("rx12345");
        let w = t.points.iter().find(|(c, _)| c == "37010200100201").unwrap().1;
        let g = spatial::coord::wgs84_to_gcj02(spatial::LonLat::new(w[0], w[1]));
        let event = json!({"gdbh": "GD-20261121-0007", "bt": "夜间施工噪声", "sqnr": "市民来电反映工地夜间十一点后仍在施工，噪声很大",
            "sqlx": "ZS-0601", "jd": g.lon, "wd": g.lat, "sjdz": "历下区羊头峪西沟街", "ldr": "王女士"});
        let r = hotline.send_event(event.as_object().cloned().unwrap()).await.unwrap();
        assert_eq!(r["created"], true, "{r}");
        assert_eq!(r["case"]["source"], "hotline");
        assert_eq!(r["case"]["category_code"], "SJ0601", "the platform's category code mapped back");
        assert_eq!(r["case"]["reporter"], "王女士");
        let id = r["case"]["id"].as_str().unwrap().to_string();
        assert!((r["case"]["lon"].as_f64().unwrap() - w[0]).abs() < 1e-6, "GCJ-02 converted to WGS84");
        let again = hotline.send_event(event.as_object().cloned().unwrap()).await.unwrap();
        assert_eq!(again["created"], false, "the same work order is the same case");

        // Accepted and dispatched here: the hotline hears of it.
        let (st, body) = disp
            .json(Method::POST, &format!("/api/v1/grid/cases/{id}/actions"), Some(json!({"action": "accept"})))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let dept = body["department_id"].as_str().unwrap().to_string();
        let (st, body) = disp
            .json(Method::POST, &format!("/api/v1/grid/cases/{id}/actions"), Some(json!({"action": "dispatch"})))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        // The handling department (a district office) handles it.
        let handler = handler_of(&t, &dept).await;
        let (st, body) = handler
            .json(
                Method::POST,
                &format!("/api/v1/grid/cases/{id}/actions"),
                Some(json!({"action": "handle", "feedback": "已责令工地夜间停工"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["stage"], "verify");
        t.relay().await;
        let reports = hotline.status_reports();
        let statuses: Vec<&str> = reports.iter().map(|r| r["status"].as_str().unwrap_or("")).collect();
        assert_eq!(statuses, ["accepted", "dispatched", "handled"], "{reports:?}");
        assert_eq!(reports[2]["external_id"], "GD-20261121-0007", "in the hotline's own id");
        assert!(reports[2]["note"].as_str().unwrap().contains("夜间停工"));
        // A case changed outside the application takes no callback either, until restored.
        let tamper = |title: &'static str| {
            let (db, id) = (t.app.state.db.clone(), id.clone());
            async move {
                sqlx::query("UPDATE grid_cases SET title = $1 WHERE id = $2")
                    .bind(title)
                    .bind(id)
                    .execute(db.writer())
                    .await
                    .unwrap()
            }
        };
        tamper("已处理完毕").await;
        let r = hotline
            .callback_raw(json!({"callback_id": "cb-tampered", "type": "verified", "passed": true, "external_id": "GD-20261121-0007"}))
            .await;
        let err = r.unwrap_err();
        assert!(err.contains("403") && err.contains("integrity_violation"), "{err}");
        assert_eq!(detail(&disp, &id).await["stage"], "verify", "the case did not move");
        tamper("夜间施工噪声").await;
        // The hotline's follow-up call (核实反馈) closes the case.
        hotline.verify("GD-20261121-0007", true, "回访群众满意").await;
        let d = detail(&disp, &id).await;
        assert_eq!(d["status"], "closed", "{d}");
        assert_eq!(d["platforms"][0]["remote_state"], "verified");
        t.relay().await;
        let statuses: Vec<String> =
            hotline.status_reports().iter().map(|r| r["status"].as_str().unwrap_or("").to_string()).collect();
        assert_eq!(
            statuses,
            ["accepted", "dispatched", "handled", "closed"],
            "its own verification is not echoed, the closing is"
        );

        // Bad input: unsigned, a user instead of the platform, an unknown case, an event with no id.
        let anon = t.app.client();
        let (st, body) = anon
            .json(
                Method::POST,
                "/api/v1/grid/platforms/rx12345/callbacks",
                Some(json!({"callback_id": "x", "type": "accepted"})),
            )
            .await;
        assert_error(st, &body, 401, "unauthenticated");
        let (st, body) = disp
            .json(
                Method::POST,
                "/api/v1/grid/platforms/rx12345/callbacks",
                Some(json!({"callback_id": "x", "type": "accepted", "case_no": "1"})),
            )
            .await;
        assert_error(st, &body, 403, "forbidden");
        let r = hotline
            .callback_raw(json!({"callback_id": "cb-x", "type": "verified", "passed": true, "external_id": "GD-nope"}))
            .await;
        assert!(r.unwrap_err().contains("404"));
        let r = hotline.send_event(json!({"bt": "无工单编号"}).as_object().cloned().unwrap()).await;
        assert!(r.unwrap_err().contains("gdbh"), "the error names the platform's own field");
    }
}

/// Logs in a user of the department `dept_id` able to handle cases.
async fn handler_of(t: &Setup, dept_id: &str) -> Session {
    let cgj = t.app.org_id("370100-cgj").await;
    if dept_id == cgj {
        return t.app.login("cgj_handler").await;
    }
    panic!("no demo handler for department {dept_id}");
}

#[tokio::test]
async fn platforms_are_checked_before_they_are_saved() {
    for backend in test_backends() {
        let t = setup(backend).await;
        let admin = t.app.login("gridadmin").await;
        let disp = t.app.login("dispatcher").await;
        let (_, list) = admin.json(Method::GET, "/api/v1/grid/platforms", None).await;
        let p = list.as_array().unwrap().iter().find(|p| p["code"] == "zzpt").unwrap().clone();
        let base = json!({"code": "zzpt2", "name": "另一个平台", "kind": "governance", "org_id": p["org_id"], "app_id": p["app_id"],
            "endpoint": "http://127.0.0.1:9", "out_key": "k", "out_secret": "s"});
        let (st, body) = admin.json(Method::POST, "/api/v1/grid/platforms", Some(base.clone())).await;
        assert_error(st, &body, 409, "conflict");
        let mut bad = base.clone();
        bad["endpoint"] = json!("ftp://example");
        let (st, body) = admin.json(Method::POST, "/api/v1/grid/platforms", Some(bad)).await;
        assert_error(st, &body, 422, "validation_failed");
        let mut bad = base.clone();
        bad["org_id"] = json!(t.app.org_id("370100-cgj").await);
        let (st, body) = admin.json(Method::POST, "/api/v1/grid/platforms", Some(bad)).await;
        assert_error(st, &body, 422, "validation_failed");
        assert!(body["message"].as_str().unwrap().contains("belongs to another org"), "{body}");
        let mut bad = base.clone();
        bad["mapping"] = json!({"fields": {"title": "name", "reporter": "name"}});
        let (st, body) = admin.json(Method::POST, "/api/v1/grid/platforms", Some(bad)).await;
        assert_error(st, &body, 422, "validation_failed");
        let (st, body) = disp.json(Method::GET, "/api/v1/grid/platforms", None).await;
        assert_error(st, &body, 403, "forbidden");
        // The secret never comes back.
        assert!(!list.to_string().contains("secret"), "{list}");
    }
}
