//! The message service against local stand-ins for every external channel (webhook, SMTP, SMS
//! gateway, DingTalk, WeCom), and the workflow's warnings sent through it.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::test_backends;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::helpers::{TestApp, assert_error};

type Log = Arc<Mutex<Vec<(HeaderMap, String, String)>>>;

/// An HTTP stand-in recording (headers, uri, body); the webhook path fails its first call.
async fn http_peer() -> (String, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let fails = Arc::new(Mutex::new(1));
    let app = Router::new().fallback(post(move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let l = l.clone();
        let fails = fails.clone();
        async move {
            l.lock().unwrap().push((headers, uri.to_string(), body));
            if uri.path() == "/hook" {
                let mut f = fails.lock().unwrap();
                if *f > 0 {
                    *f -= 1;
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "busy".to_string());
                }
            }
            (axum::http::StatusCode::OK, r#"{"errcode":0,"errmsg":"ok"}"#.to_string())
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, log)
}

/// What the SMTP stand-in received: each mail's DATA, whether it came over TLS, and any AUTH
/// line with whether that came over TLS.
#[derive(Default)]
struct Received {
    mails: Vec<(bool, String)>,
    auth: Vec<(bool, String)>,
}
type Mails = Arc<Mutex<Received>>;

/// A tiny SMTP server keeping every DATA section. With a TLS configuration it offers STARTTLS
/// and continues over TLS when asked; `implicit`: TLS from the first byte (port 465 style).
async fn smtp_peer(tls: Option<Arc<rustls::ServerConfig>>, implicit: bool) -> (u16, Mails) {
    let mails: Mails = Arc::default();
    let m = mails.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let m = m.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                if let (true, Some(cfg)) = (implicit, tls.clone()) {
                    let Ok(mut secure) = tokio_rustls::TlsAcceptor::from(cfg).accept(sock).await else { return };
                    secure.write_all(b"220 test ESMTPS\r\n").await.unwrap();
                    smtp_session(BufReader::new(secure), &m, true, false).await;
                    return;
                }
                sock.write_all(b"220 test ESMTP\r\n").await.unwrap();
                let Some(plain) = smtp_session(BufReader::new(sock), &m, false, tls.is_some()).await else { return };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.unwrap());
                let Ok(secure) = acceptor.accept(plain.into_inner()).await else { return };
                smtp_session(BufReader::new(secure), &m, true, false).await;
            });
        }
    });
    (port, mails)
}

/// Serves commands until QUIT or EOF; answers the stream when the client asked for STARTTLS.
async fn smtp_session<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: BufReader<S>,
    m: &Mails,
    over_tls: bool,
    offer_tls: bool,
) -> Option<BufReader<S>> {
    let mut in_data = false;
    let mut data = String::new();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return None;
        }
        if in_data {
            if line == ".\r\n" {
                in_data = false;
                m.lock().unwrap().mails.push((over_tls, std::mem::take(&mut data)));
                s.write_all(b"250 queued\r\n").await.unwrap();
            } else {
                data.push_str(&line);
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if offer_tls => b"250-test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
            "EHLO" => b"250-test\r\n250 AUTH PLAIN\r\n",
            "STAR" if offer_tls => {
                s.write_all(b"220 go ahead\r\n").await.unwrap();
                return Some(s);
            }
            "AUTH" => {
                m.lock().unwrap().auth.push((over_tls, line.trim().to_string()));
                b"235 accepted\r\n"
            }
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                let _ = s.write_all(b"221 bye\r\n").await;
                return None;
            }
            _ => b"250 OK\r\n",
        };
        s.write_all(reply).await.unwrap();
    }
}

async fn deliveries(app: &crate::helpers::Session, q: &str) -> Vec<Value> {
    let (s, body) = app.json(Method::GET, &format!("/api/v1/notify/deliveries{q}"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_message_goes_out_on_every_channel_with_retries_resend_and_a_live_unread_count() {
    for b in test_backends() {
        let (base, log) = http_peer().await;
        let (smtp_port, mails) = smtp_peer(None, false).await;
        let app = TestApp::start_with(b, |cfg| {
            cfg.notify.webhook_url = format!("{base}/hook");
            cfg.notify.webhook_secret = "hook-secret".into();
            cfg.notify.smtp_host = "127.0.0.1".into();
            cfg.notify.smtp_port = smtp_port;
            cfg.notify.smtp_tls = "none".into(); // an intranet relay without TLS
            cfg.notify.sms_gateway_url = format!("{base}/sms");
            cfg.notify.dingtalk_webhook = format!("{base}/dingtalk?access_token=t");
            cfg.notify.dingtalk_secret = "ding-secret".into();
            cfg.notify.wecom_webhook = format!("{base}/wecom");
        })
        .await;
        let n = app.state.services.get::<notify::Notify>().unwrap().clone();
        let handler = app.login("cgj_handler").await;
        // The live stream first reports the current count.
        let mut stream = handler.http.get(format!("{}/api/v1/notify/stream", app.base)).send().await.unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        let first = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
        assert!(first.contains("event: unread") && first.contains("\"unread\":0"), "{first}");

        let admin = app.login("flowadmin").await;
        let (s, body) = admin
            .json(
                Method::POST,
                "/api/v1/notify/send",
                Some(json!({"title": "防汛预警", "body": "今夜有暴雨，请做好防范", "recipients": ["cgj_handler", "nobody"],
                    "channels": ["inapp", "webhook", "email", "sms", "dingtalk", "wecom"], "urgent": true})),
            )
            .await;
        assert_eq!((s, body["recipients"].as_i64()), (StatusCode::OK, Some(1)), "{body}");
        // The inbox needs no transport: delivered with the send and pushed live at its commit,
        // before the relay runs; the relay sends the five external channels.
        let next = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
        assert!(next.contains("\"unread\":1"), "pushed live: {next}");
        assert_eq!(n.relay_once().await.unwrap(), 5);

        // Every channel reached its stand-in; the webhook failed once and waits to retry.
        let ds = deliveries(&admin, "").await;
        let state = |ch: &str| {
            ds.iter().find(|d| d["channel"] == ch).map(|d| d["state"].as_str().unwrap().to_string()).unwrap()
        };
        assert_eq!(state("inapp"), "delivered");
        for ch in ["email", "sms", "dingtalk", "wecom"] {
            assert_eq!(state(ch), "sent", "{ch}: {ds:?}");
        }
        assert_eq!(state("webhook"), "pending");
        let hook = ds.iter().find(|d| d["channel"] == "webhook").unwrap();
        assert!(hook["last_error"].as_str().unwrap().contains("500"));
        let mail = mails.lock().unwrap().mails[0].1.clone();
        assert!(mail.contains("To: <cgj_handler@jinan.gov.cn>") && mail.contains("Subject: =?UTF-8?B?"), "{mail}");
        {
            let log = log.lock().unwrap();
            let sms = log.iter().find(|(_, u, _)| u.starts_with("/sms")).unwrap();
            let sms: Value = serde_json::from_str(&sms.2).unwrap();
            assert!(sms["mobile"].as_str().unwrap().starts_with("1386401"), "the gateway gets the real number");
            assert!(sms["content"].as_str().unwrap().contains("防汛预警"));
            let ding = log.iter().find(|(_, u, _)| u.starts_with("/dingtalk")).unwrap();
            assert!(ding.1.contains("timestamp=") && ding.1.contains("sign="), "signed robot call: {}", ding.1);
        }
        // The send log masks the mobile number for those without pi.unmask.
        let sms_row = ds.iter().find(|d| d["channel"] == "sms").unwrap();
        assert!(sms_row["address"].as_str().unwrap().contains('*'), "{sms_row}");

        app.clock.advance_secs(3);
        assert_eq!(n.relay_once().await.unwrap(), 1, "the webhook is retried after its backoff");
        assert_eq!(state_of(&admin, "webhook").await, "sent");
        {
            let log = log.lock().unwrap();
            let (headers, _, body) = log.iter().rev().find(|(_, u, _)| u == "/hook").unwrap();
            let sig = headers["x-zhongshu-signature"].to_str().unwrap();
            let (t, mac) = sig.strip_prefix("t=").unwrap().split_once(",sig=").unwrap();
            let want = crypto::hmac(crypto::HashAlg::Sm3, b"hook-secret", format!("{t}.{body}").as_bytes());
            assert_eq!(mac, data_encoding::HEXLOWER.encode(&want), "HMAC-SM3 signature verifies");
        }
        // Resend: a new delivery, the old one marked resent.
        let email_id = deliveries(&admin, "?channel=email").await[0]["id"].as_str().unwrap().to_string();
        let (s, _) =
            admin.json(Method::POST, &format!("/api/v1/notify/deliveries/{email_id}/resend"), Some(json!({}))).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_eq!(n.relay_once().await.unwrap(), 1);
        assert_eq!(mails.lock().unwrap().mails.len(), 2);
        assert_eq!(deliveries(&admin, "?state=resent").await.len(), 1);

        // The inbox, read, and the count back to zero.
        let (_, inbox) = handler.json(Method::GET, "/api/v1/notify/inbox?unread=true", None).await;
        assert_eq!(inbox["total"], 1);
        let id = inbox["items"][0]["id"].as_str().unwrap();
        let (s, _) = handler.json(Method::POST, &format!("/api/v1/notify/inbox/{id}/read"), Some(json!({}))).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (_, unread) = handler.json(Method::GET, "/api/v1/notify/unread", None).await;
        assert_eq!(unread["unread"], 0);
        // Staff cannot read the send log.
        let (s, body) = handler.json(Method::GET, "/api/v1/notify/deliveries", None).await;
        assert_error(s, &body, 403, "forbidden");
    }
}

#[tokio::test]
async fn mail_goes_out_over_starttls_to_a_server_whose_certificate_is_trusted_and_never_in_the_clear() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_file = dir.path().join("mail-ca.pem");
    std::fs::write(&ca_file, cert.pem()).unwrap();
    let server_tls = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(signing_key.serialize_der()).unwrap(),
            )
            .unwrap(),
    );
    let b = test_backends().into_iter().next().unwrap();
    // Sends one mail to cgj_handler through a server, with the given settings; answers the
    // e-mail delivery row.
    let send = |port: u16, tls_mode: &'static str, ca: Option<String>| async move {
        let app = TestApp::start_with(b, move |cfg| {
            cfg.notify.smtp_host = "localhost".into();
            cfg.notify.smtp_port = port;
            cfg.notify.smtp_tls = tls_mode.into();
            cfg.notify.smtp_ca_file = ca.unwrap_or_default();
            cfg.notify.smtp_username = "zhongshu".into();
            cfg.notify.smtp_password = "mail-secret".into();
        })
        .await;
        let n = app.state.services.get::<notify::Notify>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        let (s, body) = admin
                .json(
                    Method::POST,
                    "/api/v1/notify/send",
                    Some(json!({"title": "防汛预警", "body": "今夜有暴雨", "recipients": ["cgj_handler"], "channels": ["email"], "urgent": true})),
                )
                .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        n.relay_once().await.unwrap();
        deliveries(&admin, "?channel=email").await.remove(0)
    };

    // STARTTLS (the default), the server's certificate checked against the configured CA:
    // delivered, and both the password and the mail travelled encrypted.
    let (port, got) = smtp_peer(Some(server_tls.clone()), false).await;
    let d = send(port, "starttls", Some(ca_file.display().to_string())).await;
    assert_eq!(d["state"], "sent", "{d}");
    {
        let got = got.lock().unwrap();
        assert_eq!(got.mails.len(), 1);
        assert!(got.mails[0].0, "the mail went over TLS");
        assert!(got.mails[0].1.contains("To: <cgj_handler@jinan.gov.cn>"));
        assert_eq!(got.auth.len(), 1);
        assert!(got.auth[0].0, "AUTH only after the TLS handshake");
    }

    // Implicit TLS (port 465 style).
    let (port, got) = smtp_peer(Some(server_tls.clone()), true).await;
    let d = send(port, "tls", Some(ca_file.display().to_string())).await;
    assert_eq!(d["state"], "sent", "{d}");
    assert!(got.lock().unwrap().mails[0].0);

    // Not trusted (the system's CAs do not know this certificate): nothing is sent.
    let (port, got) = smtp_peer(Some(server_tls.clone()), false).await;
    let d = send(port, "starttls", None).await;
    assert_ne!(d["state"], "sent", "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("TLS"), "{d}");
    assert!(got.lock().unwrap().auth.is_empty() && got.lock().unwrap().mails.is_empty());

    // A server that does not offer STARTTLS is refused, with the way out in the error.
    let (port, got) = smtp_peer(None, false).await;
    let d = send(port, "starttls", Some(ca_file.display().to_string())).await;
    assert_ne!(d["state"], "sent", "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("does not offer STARTTLS"), "{d}");
    assert!(got.lock().unwrap().auth.is_empty(), "the password never went out in the clear");
}

async fn state_of(admin: &crate::helpers::Session, channel: &str) -> String {
    deliveries(admin, &format!("?channel={channel}")).await[0]["state"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn quiet_hours_hold_non_urgent_external_messages_and_preferences_are_validated() {
    for b in test_backends() {
        let (base, _log) = http_peer().await;
        let app = TestApp::start_with(b, |cfg| cfg.notify.wecom_webhook = format!("{base}/wecom")).await;
        let n = app.state.services.get::<notify::Notify>().unwrap().clone();
        let user = app.login("gridworker").await;
        let (s, body) = user
            .json(
                Method::PUT,
                "/api/v1/notify/preferences",
                Some(json!({"channels": ["wecom"], "quiet_start": "25:00", "quiet_end": "07:00"})),
            )
            .await;
        assert_error(s, &body, 422, "validation_failed");
        // The fake clock reads 19:06 China time: quiet from 19:00 to 20:00.
        let (s, p) = user
            .json(
                Method::PUT,
                "/api/v1/notify/preferences",
                Some(json!({"channels": ["wecom"], "quiet_start": "19:00", "quiet_end": "20:00"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["available"], json!(["wecom"]));
        let admin = app.login("flowadmin").await;
        let (s, _) = admin
            .json(
                Method::POST,
                "/api/v1/notify/send",
                Some(json!({"title": "周例会通知", "recipients": ["gridworker"], "channels": ["wecom"]})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(n.relay_once().await.unwrap(), 0, "nothing goes out in quiet hours");
        assert_eq!(state_of(&admin, "inapp").await, "delivered", "the inbox has it at once");
        app.clock.advance_secs(54 * 60);
        assert_eq!(n.relay_once().await.unwrap(), 1, "the robot message at 20:00");
        let admin = app.login("flowadmin").await;
        assert_eq!(state_of(&admin, "wecom").await, "sent");
    }
}

/// Deploys 网格巡查: one user task for gridworker, due in an hour. Returns the definition's id.
async fn deploy_patrol(admin: &crate::helpers::Session) -> String {
    let xml = r#"<?xml version="1.0"?><bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
            <bpmn:process id="patrol" name="网格巡查" isExecutable="true"><bpmn:startEvent id="s"/>
            <bpmn:userTask id="check" name="现场核查"><bpmn:extensionElements><zeebe:assignmentDefinition assignee="gridworker"/><zeebe:taskSchedule dueDate="PT1H"/></bpmn:extensionElements></bpmn:userTask>
            <bpmn:endEvent id="e"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="check"/><bpmn:sequenceFlow id="f2" sourceRef="check" targetRef="e"/>
            </bpmn:process></bpmn:definitions>"#;
    let (s, def) = admin.json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": xml}))).await;
    assert_eq!(s, StatusCode::CREATED, "{def}");
    def["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_backlog_of_deadline_warnings_goes_out_in_batches_once_per_task_and_level() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        let def_id = deploy_patrol(&admin).await;
        let def_id = def_id.as_str();
        // 600 patrols started at once, each task due within the hour: more than one batch.
        let batch = (0..600).map(|i| (Some(format!("XC-{i:03}")), serde_json::Map::new())).collect();
        flow.start_batch(def_id, batch).await.unwrap();
        let count = |sql: &'static str| {
            let db = app.state.db.clone();
            async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(db.reader()).await.unwrap() }
        };
        assert_eq!(flow.warn_deadlines().await.unwrap(), 500);
        assert_eq!(flow.warn_deadlines().await.unwrap(), 100);
        assert_eq!(flow.warn_deadlines().await.unwrap(), 0, "each task is warned once per level");
        assert_eq!(count("SELECT COUNT(*) FROM notify_messages WHERE title = '即将到期：现场核查'").await, 600);
        assert_eq!(count("SELECT COUNT(*) FROM flow_tasks WHERE warned = 1").await, 600);
        // Overdue: the red warnings, to the assignee and the supervisor, again in two batches.
        app.clock.advance_secs(3601);
        assert_eq!(flow.warn_deadlines().await.unwrap(), 500);
        assert_eq!(flow.warn_deadlines().await.unwrap(), 100);
        assert_eq!(flow.warn_deadlines().await.unwrap(), 0);
        assert_eq!(count("SELECT COUNT(*) FROM flow_tasks WHERE warned = 2").await, 600);
        let sup = app.login("jiefang_admin").await;
        let (_, inbox) = sup.json(Method::GET, "/api/v1/notify/inbox?page_size=5", None).await;
        assert_eq!(inbox["total"], 600, "{inbox}");
        let gw = app.login("gridworker").await;
        let (_, inbox) = gw.json(Method::GET, "/api/v1/notify/inbox?page_size=5", None).await;
        assert_eq!(inbox["total"], 1800, "an assignment, a yellow and a red warning per task: {inbox}");
        assert_eq!(inbox["items"][0]["title"], "已超期：现场核查");
    }
}

#[tokio::test]
async fn tasks_notify_their_assignee_and_overdue_tasks_warn_the_supervisor() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let n = app.state.services.get::<notify::Notify>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        deploy_patrol(&admin).await;
        let (_, inst) = admin
            .json(
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "patrol", "business_key": "XC-1"})),
            )
            .await;
        assert!(inst["id"].is_string());
        n.relay_once().await.unwrap();
        let gw = app.login("gridworker").await;
        let titles = |v: &Value| {
            v["items"].as_array().unwrap().iter().map(|m| m["title"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        let (_, inbox) = gw.json(Method::GET, "/api/v1/notify/inbox", None).await;
        assert_eq!(titles(&inbox), ["新待办：现场核查"]);
        // Due within four hours: a yellow warning to the assignee, once.
        assert_eq!(flow.warn_deadlines().await.unwrap(), 1);
        assert_eq!(flow.warn_deadlines().await.unwrap(), 0);
        // Overdue: a red warning to the assignee and the street's administrator.
        app.clock.advance_secs(3601);
        assert_eq!(flow.warn_deadlines().await.unwrap(), 1);
        n.relay_once().await.unwrap();
        let gw = app.login("gridworker").await;
        let (_, inbox) = gw.json(Method::GET, "/api/v1/notify/inbox", None).await;
        assert_eq!(titles(&inbox), ["已超期：现场核查", "即将到期：现场核查", "新待办：现场核查"]);
        let sup = app.login("jiefang_admin").await;
        let (_, inbox) = sup.json(Method::GET, "/api/v1/notify/inbox", None).await;
        assert_eq!(titles(&inbox), ["已超期：现场核查"], "the nearest supervisor is told");
        let district = app.login("lixia_admin").await;
        let (_, inbox) = district.json(Method::GET, "/api/v1/notify/inbox", None).await;
        assert_eq!(inbox["total"], 0, "not every level above");
        // The overview of delays by department shows it.
        let admin = app.login("flowadmin").await;
        let (s, rows) = admin.json(Method::GET, "/api/v1/flow/overview/delays", None).await;
        assert_eq!(s, StatusCode::OK, "{rows}");
        assert_eq!(rows[0]["overdue"], 1);
        assert_eq!(rows[0]["org_name"], "山大路第1网格");
        // Urging reaches the assignee.
        let (_, tasks) = admin.json(Method::GET, "/api/v1/flow/tasks?view=all", None).await;
        let tid = tasks["items"][0]["id"].as_str().unwrap();
        let (s, _) = admin
            .json(
                Method::POST,
                &format!("/api/v1/flow/tasks/{tid}"),
                Some(json!({"action": "urge", "comment": "请今天完成"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        n.relay_once().await.unwrap();
        let (_, inbox) = gw.json(Method::GET, "/api/v1/notify/inbox", None).await;
        assert!(inbox["items"][0]["body"].as_str().unwrap().contains("请今天完成"));
    }
}

#[tokio::test]
async fn templates_are_edited_and_rendered_with_variables() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let n = app.state.services.get::<notify::Notify>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        let t = json!({"code": "case.dispatched", "name": "案件派遣", "title": "新案件：{{title}}", "body": "请于{{hours}}小时内处置。", "channels": ["inapp"]});
        let (s, body) = admin.json(Method::PUT, "/api/v1/notify/templates", Some(t)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, body) = admin
            .json(
                Method::PUT,
                "/api/v1/notify/templates",
                Some(json!({"code": "bad code!", "name": "x", "title": "x", "body": "", "channels": []})),
            )
            .await;
        assert_error(s, &body, 422, "validation_failed");
        let (_, list) = admin.json(Method::GET, "/api/v1/notify/templates", None).await;
        assert!(list.as_array().unwrap().iter().any(|t| t["code"] == "case.dispatched"));
        let (s, _) = admin
            .json(Method::POST, "/api/v1/notify/send", Some(json!({"template": "case.dispatched", "variables": {"title": "井盖缺失", "hours": 2}, "recipients": ["gridworker"]})))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = admin
            .json(Method::POST, "/api/v1/notify/send", Some(json!({"template": "nope", "recipients": ["gridworker"]})))
            .await;
        assert_error(s, &body, 422, "validation_failed");
        n.relay_once().await.unwrap();
        let gw = app.login("gridworker").await;
        let (_, inbox) = gw.json(Method::GET, "/api/v1/notify/inbox", None).await;
        assert_eq!(inbox["items"][0]["title"], "新案件：井盖缺失");
        assert_eq!(inbox["items"][0]["body"], "请于2小时内处置。");
        let (_, staff) = gw.json(Method::GET, "/api/v1/notify/templates", None).await;
        assert_eq!(staff["code"], "forbidden");
    }
}
