//! Login, lockout, sessions, two-factor authentication, forced password changes.

use reqwest::{Method, StatusCode};
use serde_json::json;
use store::testing::test_backends;

use crate::helpers::{PASSWORD, TestApp, assert_error};

#[tokio::test]
async fn five_failed_logins_lock_the_account_and_the_lock_is_audited() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let c = app.client();
        for _ in 0..4 {
            let (s, body) = c
                .json(
                    Method::POST,
                    "/api/v1/auth/login",
                    Some(json!({"username": "gridworker", "password": "Wrong@2026"})),
                )
                .await;
            assert_error(s, &body, 401, "invalid_credentials");
        }
        let (s, body) = c
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": "Wrong@2026"})))
            .await;
        assert_error(s, &body, 403, "account_locked");
        // The right password is refused while locked.
        let (s, body) = c
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": PASSWORD})))
            .await;
        assert_error(s, &body, 403, "account_locked");
        let locks = audit::search(
            &app.state.db,
            &audit::AuditFilter { action: Some("auth.lock".into()), ..Default::default() },
            Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(locks.total, 1, "{b:?}: the lockout is audited");
        assert_eq!(locks.items[0].entry.actor_name.as_deref(), Some("gridworker"));
        let fails = audit::search(
            &app.state.db,
            &audit::AuditFilter {
                action: Some("auth.login".into()),
                result: Some("failure".into()),
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(fails.total, 5);
        // After the lock time the account opens again.
        app.clock.advance_secs(31 * 60);
        let (s, _) = c
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": PASSWORD})))
            .await;
        assert_eq!(s, StatusCode::OK, "{b:?}");
    }
}

#[tokio::test]
async fn failures_outside_the_window_do_not_add_up() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let c = app.client();
        for _ in 0..4 {
            c.post("/api/v1/auth/login", json!({"username": "leader", "password": "nope"})).await;
        }
        app.clock.advance_secs(16 * 60);
        let (s, body) =
            c.json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "leader", "password": "nope"}))).await;
        assert_error(s, &body, 401, "invalid_credentials");
    }
}

#[tokio::test]
async fn unknown_users_get_the_same_answer_as_wrong_passwords() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let (s, body) = app
            .client()
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "nobody", "password": PASSWORD})))
            .await;
        assert_error(s, &body, 401, "invalid_credentials");
    }
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_lifetime() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let s = app.login("leader").await;
        assert_eq!(s.get("/api/v1/me").await.status(), StatusCode::OK);
        app.clock.advance_secs(29 * 60);
        assert_eq!(s.get("/api/v1/me").await.status(), StatusCode::OK, "{b:?}: 29 idle minutes are fine");
        app.clock.advance_secs(30 * 60 + 1);
        let (st, body) = s.json(Method::GET, "/api/v1/me", None).await;
        assert_error(st, &body, 401, "session_expired");
        assert!(body["message"].as_str().unwrap().contains("idle"));
        // Activity does not extend a session past 12 hours.
        let s = app.login("leader").await;
        for _ in 0..24 {
            app.clock.advance_secs(29 * 60);
            assert_eq!(s.get("/api/v1/me").await.status(), StatusCode::OK);
        }
        app.clock.advance_secs(29 * 60);
        let (st, body) = s.json(Method::GET, "/api/v1/me", None).await;
        assert_error(st, &body, 401, "session_expired");
        assert!(body["message"].as_str().unwrap().contains("lifetime"), "{body}");
    }
}

#[tokio::test]
async fn logout_and_disabling_end_sessions_at_once() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let s = app.login("dispatcher").await;
        // Used once, so the session sits in the server's short-lived cache.
        assert_eq!(s.get("/api/v1/me").await.status(), StatusCode::OK);
        assert_eq!(s.post("/api/v1/auth/logout", json!({})).await.status(), StatusCode::NO_CONTENT);
        let (st, body) = s.json(Method::GET, "/api/v1/me", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
        // Disabling an account ends its live sessions at once.
        let worker = app.login("gridworker").await;
        assert_eq!(worker.get("/api/v1/me").await.status(), StatusCode::OK);
        let admin = app.login("lixia_admin").await;
        let id = app.user_id("gridworker").await;
        let (st, body) =
            admin.json(Method::PATCH, &format!("/api/v1/users/{id}"), Some(json!({"status": "disabled"}))).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(worker.get("/api/v1/me").await.status(), StatusCode::UNAUTHORIZED, "{b:?}");
        let (st, body) = app
            .client()
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": PASSWORD})))
            .await;
        assert_error(st, &body, 403, "account_disabled");
    }
}

#[tokio::test]
async fn administrators_need_the_second_factor_and_codes_work_once() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let mut s = app.client();
        let (_, body) = s
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "auditor", "password": PASSWORD})))
            .await;
        assert_eq!(body["stage"], "mfa", "{b:?}");
        s.csrf = body["csrf_token"].as_str().unwrap().into();
        let (st, body) = s.json(Method::GET, "/api/v1/audit/records", None).await;
        assert_error(st, &body, 403, "mfa_required");
        let (st, body) = s.json(Method::POST, "/api/v1/auth/mfa", Some(json!({"code": "000000"}))).await;
        assert_error(st, &body, 401, "invalid_totp");
        let code = app.totp_code("auditor");
        let (st, body) = s.json(Method::POST, "/api/v1/auth/mfa", Some(json!({"code": code}))).await;
        assert_eq!((st, body["stage"].as_str()), (StatusCode::OK, Some("active")));
        assert_eq!(s.get("/api/v1/audit/records").await.status(), StatusCode::OK);
        // The same code in a second login is refused (one use per code).
        let mut s2 = app.client();
        let (_, body) = s2
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "auditor", "password": PASSWORD})))
            .await;
        s2.csrf = body["csrf_token"].as_str().unwrap().into();
        let (st, body) = s2.json(Method::POST, "/api/v1/auth/mfa", Some(json!({"code": code}))).await;
        assert_error(st, &body, 401, "invalid_totp");
    }
}

#[tokio::test]
async fn a_new_user_must_change_the_initial_password_and_may_not_reuse_it() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("lixia_admin").await;
        let street = app.org_id("370102002").await;
        let (st, created) = admin
            .json(
                Method::POST,
                "/api/v1/users",
                Some(json!({"username": "qianfo_staff", "display_name": "钱佛", "primary_org_id": street})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{created}");
        let initial = created["initial_password"].as_str().unwrap().to_string();
        let mut s = app.client();
        let (_, body) = s
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "qianfo_staff", "password": initial})))
            .await;
        assert_eq!(body["stage"], "change_password", "{b:?}");
        s.csrf = body["csrf_token"].as_str().unwrap().into();
        let (st, body) = s.json(Method::GET, "/api/v1/me", None).await;
        assert_error(st, &body, 403, "password_change_required");
        let change = |new: &str| json!({"current_password": initial, "new_password": new});
        let (st, body) = s.json(Method::POST, "/api/v1/auth/password", Some(change("short"))).await;
        assert_error(st, &body, 422, "weak_password");
        let (st, body) = s.json(Method::POST, "/api/v1/auth/password", Some(change(&initial))).await;
        assert_error(st, &body, 422, "password_reused");
        let (st, body) = s.json(Method::POST, "/api/v1/auth/password", Some(change("Qianfo#Shan8"))).await;
        assert_eq!((st, body["stage"].as_str()), (StatusCode::OK, Some("active")), "{body}");
        assert_eq!(s.get("/api/v1/me").await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_temporary_account_ends_on_its_end_date_and_can_be_extended() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("lixia_admin").await;
        let street = app.org_id("370102002").await;
        let now = kernel::Clock::now_ms(&app.clock);
        let day = 86_400_000;
        let new = |ends: i64| json!({"username": "intern_zhao", "display_name": "赵实习", "primary_org_id": street, "expires_at": ends});
        // An end date in the past is refused; nothing is created.
        let (st, body) = admin.json(Method::POST, "/api/v1/users", Some(new(now - day))).await;
        assert_error(st, &body, 422, "validation_failed");
        let (st, created) = admin.json(Method::POST, "/api/v1/users", Some(new(now + 30 * day))).await;
        assert_eq!(st, StatusCode::CREATED, "{created}");
        assert_eq!(created["user"]["expires_at"], now + 30 * day);
        let id = created["user"]["id"].as_str().unwrap().to_string();
        // She logs in and sets her password; her session works until the end date.
        let mut s = app.client();
        let initial = created["initial_password"].as_str().unwrap().to_string();
        let (_, body) = s
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "intern_zhao", "password": initial})))
            .await;
        s.csrf = body["csrf_token"].as_str().unwrap().into();
        let (st, body) = s
            .json(
                Method::POST,
                "/api/v1/auth/password",
                Some(json!({"current_password": initial, "new_password": "Zhao#Intern9"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(s.get("/api/v1/me").await.status(), StatusCode::OK);
        // Her administrator brings the end date forward to ten minutes from now; eleven minutes
        // later her session no longer works and a login is refused, audited.
        let path = format!("/api/v1/users/{id}");
        let (st, body) = admin.json(Method::PATCH, &path, Some(json!({"expires_at": now + 600_000}))).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        app.clock.advance_secs(11 * 60);
        let (st, body) = s.json(Method::GET, "/api/v1/me", None).await;
        assert_eq!(st.as_u16(), 403, "{body}");
        assert_eq!(body["code"], "account_expired");
        let login = || async {
            app.client()
                .json(
                    Method::POST,
                    "/api/v1/auth/login",
                    Some(json!({"username": "intern_zhao", "password": "Zhao#Intern9"})),
                )
                .await
        };
        let (st, body) = login().await;
        assert_error(st, &body, 403, "account_expired");
        assert!(body["message"].as_str().unwrap().contains("ended on"), "{body}");
        let denied: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_records WHERE action = 'auth.login' AND result = 'denied' AND reason = 'account_expired'",
        )
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
        assert_eq!(denied, 1);
        // The administrator extends it (an end date must lie ahead), then removes the end date.
        let admin = app.login("lixia_admin").await;
        let later = kernel::Clock::now_ms(&app.clock) + 90 * day;
        let (st, body) = admin.json(Method::PATCH, &path, Some(json!({"expires_at": now}))).await;
        assert_error(st, &body, 422, "validation_failed");
        let (st, body) = admin.json(Method::PATCH, &path, Some(json!({"expires_at": later}))).await;
        assert_eq!((st, body["expires_at"].as_i64()), (StatusCode::OK, Some(later)), "{body}");
        let (st, body) = login().await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let (st, body) = admin.json(Method::PATCH, &path, Some(json!({"display_name": "赵实习生"}))).await;
        assert_eq!(body["expires_at"].as_i64(), Some(later), "an absent field stays: {st} {body}");
        let (_, body) = admin.json(Method::PATCH, &path, Some(json!({"expires_at": null}))).await;
        assert!(body["expires_at"].is_null(), "{body}");
    }
}

#[tokio::test]
async fn passwords_expire_after_the_maximum_age() {
    for b in test_backends() {
        // Without disabling unused accounts, which the server's pruner would otherwise do to this
        // account (90 days unused) whenever it ran after the clock moved.
        let app = TestApp::start_with(b, |cfg| cfg.security.policy.inactive_disable_days = 0).await;
        app.clock.advance_secs(91 * 86_400);
        let c = app.client();
        let (_, body) =
            c.json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "leader", "password": PASSWORD}))).await;
        assert_eq!(body["stage"], "change_password", "{b:?}: {body}");
    }
}

#[tokio::test]
async fn a_new_administrator_must_enrol_two_factor_authentication() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        // The security administrator makes a new account an auditor.
        let sys = app.login("sysadmin").await;
        let dsj = app.org_id("370100-dsj").await;
        let (_, created) = sys
            .json(
                Method::POST,
                "/api/v1/users",
                Some(json!({"username": "auditor2", "display_name": "审计员二", "primary_org_id": dsj})),
            )
            .await;
        let uid = created["user"]["id"].as_str().unwrap().to_string();
        let sec = app.login("secadmin").await;
        let (st, body) = sec
            .json(
                Method::POST,
                &format!("/api/v1/users/{uid}/grants"),
                Some(json!({"role": "auditor", "scope": "all"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let mut s = app.client();
        let initial = created["initial_password"].as_str().unwrap();
        let (_, body) = s
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "auditor2", "password": initial})))
            .await;
        s.csrf = body["csrf_token"].as_str().unwrap().into();
        assert_eq!(body["stage"], "change_password");
        let (_, body) = s
            .json(
                Method::POST,
                "/api/v1/auth/password",
                Some(json!({"current_password": initial, "new_password": "Shenji#2026a"})),
            )
            .await;
        assert_eq!(body["stage"], "enroll_mfa", "{b:?}: {body}");
        let (st, setup) = s.json(Method::POST, "/api/v1/auth/totp/setup", Some(json!({}))).await;
        assert_eq!(st, StatusCode::OK, "{setup}");
        assert!(setup["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"));
        app.clock.advance_secs(30);
        assert_eq!(setup["algorithm"], "totp");
        let secret = crypto::otp::Secret {
            algorithm: crypto::otp::Algorithm::Totp,
            key_b32: setup["secret"].as_str().unwrap().into(),
        };
        let code = secret.code_at(kernel::Clock::now_ms(&app.clock) / 1000).unwrap();
        let (st, body) = s.json(Method::POST, "/api/v1/auth/totp/enable", Some(json!({"code": code}))).await;
        assert_eq!((st, body["stage"].as_str()), (StatusCode::OK, Some("active")), "{body}");
        let codes = body["recovery_codes"].as_array().unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(s.get("/api/v1/audit/records").await.status(), StatusCode::OK);
        // A recovery code works once as a second factor.
        let mut s2 = app.client();
        let (_, body) = s2
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "auditor2", "password": "Shenji#2026a"})))
            .await;
        s2.csrf = body["csrf_token"].as_str().unwrap().into();
        let rc = codes[0].as_str().unwrap();
        assert_eq!(s2.post("/api/v1/auth/mfa", json!({"code": rc})).await.status(), StatusCode::OK);
        let mut s3 = app.client();
        let (_, body) = s3
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "auditor2", "password": "Shenji#2026a"})))
            .await;
        s3.csrf = body["csrf_token"].as_str().unwrap().into();
        assert_eq!(s3.post("/api/v1/auth/mfa", json!({"code": rc})).await.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn login_is_rate_limited_per_source_address() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let c = app.client();
        let mut limited = None;
        for _ in 0..40 {
            let r = c.post("/api/v1/auth/login", json!({"username": "nobody", "password": "x"})).await;
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                limited = Some(r);
                break;
            }
        }
        let r = limited.expect("the 31st login attempt in a minute is refused");
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "rate_limited");
    }
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_strict() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let r = app.client().post("/api/v1/auth/login", json!({"username": "leader", "password": PASSWORD})).await;
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.starts_with("zs_session="), "{cookie}");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
            assert!(cookie.contains(attr), "{b:?}: {cookie} lacks {attr}");
        }
        assert!(!cookie.contains("Secure"), "plain HTTP without a trusted proxy: not Secure");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn a_role_marked_for_two_factor_makes_its_holders_enrol() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let sec = app.login("secadmin").await;
        let (st, body) = sec
            .json(Method::POST, "/api/v1/roles", Some(json!({"code": "duty_officer", "name": "值班长", "permissions": ["portal.use"], "mfa_required": true})))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let uid = app.user_id("dispatcher").await;
        let (st, _) = sec
            .json(
                Method::POST,
                &format!("/api/v1/users/{uid}/grants"),
                Some(json!({"role": "duty_officer", "scope": "own_org"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
        let c = app.client();
        let (_, body) = c
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "dispatcher", "password": PASSWORD})))
            .await;
        assert_eq!(body["stage"], "enroll_mfa", "{b:?}: {body}");
    }
}

#[tokio::test]
async fn accounts_unused_for_the_inactivity_period_are_disabled_and_their_sessions_end() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let idle = app.login("gridworker").await;
        let busy = app.login("dispatcher").await;
        let (s, _) = idle.json(Method::GET, "/api/v1/me", None).await;
        assert_eq!(s, StatusCode::OK);
        // 吴海燕 last logged in 91 days ago (the session she holds is kept live for the test);
        // the system administrator too, but the three administrators are exempt.
        let long_ago = kernel::Clock::now_ms(&app.clock) - 91 * 86_400_000;
        for u in ["gridworker", "sysadmin"] {
            sqlx::query("UPDATE users SET last_login_at = $1 WHERE username = $2")
                .bind(long_ago)
                .bind(u)
                .execute(app.state.db.writer())
                .await
                .unwrap();
        }
        let n = app.state.identity.disable_inactive().await.unwrap();
        // Demo users that never logged in were created now: only 吴海燕 goes.
        assert_eq!(n, 1);
        let (s, body) = idle.json(Method::GET, "/api/v1/me", None).await;
        assert_error(s, &body, 401, "session_expired");
        let (s, body) = app
            .client()
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": PASSWORD})))
            .await;
        assert_eq!(s.as_u16(), 403, "{body}");
        assert_eq!(body["code"], "account_disabled");
        let (s, _) = busy.json(Method::GET, "/api/v1/me", None).await;
        assert_eq!(s, StatusCode::OK, "others are untouched");
        let admin_status: String = sqlx::query_scalar("SELECT status FROM users WHERE username = 'sysadmin'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert_eq!(admin_status, "active");
        let audited: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_records WHERE action = 'user.disable_inactive'")
                .fetch_one(app.state.db.reader())
                .await
                .unwrap();
        assert_eq!(audited, 1);
        assert_eq!(app.state.identity.disable_inactive().await.unwrap(), 0, "once");
    }
}

#[tokio::test]
async fn administrators_work_only_from_the_administration_networks() {
    for b in test_backends() {
        let app = TestApp::start_with(b, |cfg| cfg.server.admin_networks = vec!["10.99.0.0/16".into()]).await;
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_records WHERE result <> 'success'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        // The tests reach the server from 127.0.0.1, outside 10.99.0.0/16.
        let (s, body) = app
            .client()
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "sysadmin", "password": PASSWORD})))
            .await;
        assert_error(s, &body, 403, "forbidden");
        assert!(body["message"].as_str().unwrap().contains("administration network"), "{body}");
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = 'sysadmin' AND s.revoked_at IS NULL",
        )
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
        assert_eq!(live, 0, "no session is left behind");
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_records WHERE result <> 'success'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert!(after > before, "the refusal is audited");
        // Business users are not concerned.
        let gw = app.login("gridworker").await;
        let (s, _) = gw.json(Method::GET, "/api/v1/me", None).await;
        assert_eq!(s, StatusCode::OK);
    }
    for b in test_backends() {
        let app = TestApp::start_with(b, |cfg| cfg.server.admin_networks = vec!["127.0.0.0/8".into()]).await;
        let admin = app.login("sysadmin").await;
        let (s, _) = admin.json(Method::GET, "/api/v1/me", None).await;
        assert_eq!(s, StatusCode::OK, "from the administration network");
    }
}

#[tokio::test]
async fn a_caller_sweeping_through_cases_is_reported_to_the_security_admin_and_can_be_blocked() {
    for b in test_backends() {
        let app = TestApp::start_with(b, |cfg| cfg.security.policy.anomaly_block_minutes = 10).await;
        let sweeper = app.login("dispatcher").await;
        let colleague = app.login("gridadmin").await;
        // Reading the same case again and again is normal work.
        for _ in 0..150 {
            assert_ne!(sweeper.get("/api/v1/grid/cases/JN-0001").await.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        // Walking through case numbers one by one is not: the 120th different case (JN-0001 and
        // 119 more) raises the alert, and the next request is refused.
        let mut refused = None;
        for i in 0..150 {
            let r = sweeper.get(&format!("/api/v1/grid/cases/JN-2026-{i:06}")).await;
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                refused = Some((i, r.headers()["retry-after"].to_str().unwrap().to_string()));
                break;
            }
        }
        let (at, retry_after) = refused.expect("the sweep is stopped");
        assert_eq!(at, 119, "{b:?}: blocked right after the threshold");
        assert_eq!(retry_after, "600");
        assert_eq!(colleague.get("/api/v1/grid/cases/JN-0001").await.status(), StatusCode::NOT_FOUND, "others go on");

        let sec = app.login("secadmin").await;
        let (st, page) = sec.json(Method::GET, "/api/v1/security/alerts?status=open", None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert_eq!(page["open"], 1, "{page}");
        let alert = &page["items"][0];
        assert_eq!(alert["rule"], "object_sweep");
        assert_eq!(alert["subject_name"], "dispatcher");
        assert_eq!(alert["count"], 120);
        assert!(alert["blocked_until"].as_i64().is_some());
        let id = alert["id"].as_str().unwrap().to_string();
        // The security administrators are told (urgent in-app message, sent in the background).
        let mut told = false;
        for _ in 0..50 {
            let (_, inbox) = sec.json(Method::GET, "/api/v1/notify/inbox", None).await;
            if inbox["items"].as_array().unwrap().iter().any(|m| m["title"] == "安全告警：短时间遍历大量数据")
            {
                told = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(told, "{b:?}: the security administrator got a message");
        // Others may not see or handle alerts.
        let (st, body) = colleague.json(Method::GET, "/api/v1/security/alerts", None).await;
        assert_error(st, &body, 403, "forbidden");
        let (st, body) = sec.json(Method::GET, "/api/v1/security/alerts?rule=guessing", None).await;
        assert_eq!(st.as_u16(), 400, "{body}");
        // Handling it needs a note, ends the block, and happens once.
        let handle = format!("/api/v1/security/alerts/{id}/handle");
        let (st, body) = sec.json(Method::POST, &handle, Some(json!({"note": "  "}))).await;
        assert_error(st, &body, 422, "validation_failed");
        let (st, body) = sec
            .json(Method::POST, &handle, Some(json!({"note": "核实为调度员批量核对历史案件，已提醒其使用导出功能"})))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "handled");
        assert_eq!(body["handled_by"], "secadmin");
        assert_eq!(sweeper.get("/api/v1/grid/cases/JN-0001").await.status(), StatusCode::NOT_FOUND, "unblocked");
        let (st, body) = sec.json(Method::POST, &handle, Some(json!({"note": "again"}))).await;
        assert_error(st, &body, 409, "conflict");
        // Both the alert and its handling are in the audit log.
        let auditor = app.login("auditor").await;
        let (_, found) = auditor.json(Method::GET, "/api/v1/audit/records?action=security.alert", None).await;
        assert_eq!(found["total"], 1, "{found}");
        let (_, found) = auditor.json(Method::GET, "/api/v1/audit/records?action=security.alert.handle", None).await;
        assert_eq!(found["total"], 1, "{found}");
    }
}

#[tokio::test]
async fn bursts_of_refused_requests_and_bad_signatures_raise_alerts_without_blocking_by_default() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let anon = app.client();
        for _ in 0..40 {
            assert_eq!(anon.get("/api/v1/users").await.status(), StatusCode::UNAUTHORIZED);
        }
        for i in 0..12 {
            let r = anon
                .http
                .get(format!("{}/api/v1/me", app.base))
                .header("x-zs-app-id", "zhcg-forged")
                .header("x-zs-timestamp", "1")
                .header("x-zs-nonce", format!("nonce-nonce-nonce-{i}"))
                .header("x-zs-signature", "00")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        let sec = app.login("secadmin").await;
        let (_, page) = sec.json(Method::GET, "/api/v1/security/alerts", None).await;
        let rules: Vec<&str> = page["items"].as_array().unwrap().iter().map(|a| a["rule"].as_str().unwrap()).collect();
        assert!(rules.contains(&"denied_burst") && rules.contains(&"signature_failures"), "{b:?}: {page}");
        for a in page["items"].as_array().unwrap() {
            assert_eq!(a["subject"], "ip:127.0.0.1");
            assert!(a["blocked_until"].is_null(), "alerts only unless the policy blocks");
        }
        assert_eq!(anon.get("/healthz").await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn an_account_edited_in_the_database_is_refused_and_reported_until_restored() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let worker = app.login("gridworker").await;
        let sql = |q: &'static str| {
            let db = app.state.db.clone();
            async move { sqlx::query(q).execute(db.writer()).await.unwrap() }
        };
        // Someone with database access makes the grid worker a security administrator.
        sql("UPDATE users SET admin_role = 'secadmin' WHERE username = 'gridworker'").await;
        app.clock.advance_secs(5); // past the session cache
        let (st, body) = worker.json(Method::GET, "/api/v1/me", None).await;
        assert_error(st, &body, 403, "integrity_violation");
        let c = app.client();
        let (st, body) = c
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": PASSWORD})))
            .await;
        assert_error(st, &body, 403, "integrity_violation");
        // The security administrator is alerted; the refusal is audited.
        let sec = app.login("secadmin").await;
        let (_, page) = sec.json(Method::GET, "/api/v1/security/alerts?rule=integrity_violation", None).await;
        assert_eq!(page["total"], 1, "{b:?}: one open alert for repeated refusals: {page}");
        assert_eq!(page["items"][0]["subject_name"], "gridworker");
        let auditor = app.login("auditor").await;
        let (_, found) = auditor.json(Method::GET, "/api/v1/audit/records?action=user.integrity_violation", None).await;
        assert!(found["total"].as_i64().unwrap() >= 2, "{found}");
        // Restoring the row (as from a backup) makes the account usable again.
        sql("UPDATE users SET admin_role = NULL WHERE username = 'gridworker'").await;
        let again = app.login("gridworker").await;
        let (st, _) = again.json(Method::GET, "/api/v1/me", None).await;
        assert_eq!(st, StatusCode::OK);
        // Changes through the application reseal the row: a password reset, an end date.
        let sys = app.login("sysadmin").await;
        let id = app.user_id("gridworker").await;
        let (st, body) =
            sys.json(Method::PATCH, &format!("/api/v1/users/{id}"), Some(json!({"expires_at": null}))).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let (st, body) = sys.json(Method::POST, &format!("/api/v1/users/{id}/reset-password"), None).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let one_time = body["initial_password"].as_str().unwrap().to_string();
        let (st, body) = c
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": one_time})))
            .await;
        assert_eq!(st, StatusCode::OK, "{b:?}: {body}");
        // A swapped-in password hash is refused even with the matching password.
        sql("UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE username = 'dispatcher') WHERE username = 'gridworker'").await;
        let (st, body) = c
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": PASSWORD})))
            .await;
        assert_error(st, &body, 403, "integrity_violation");
    }
}

/// DJ-AUTH-4 under the 密评 profile: the second factor is GM/T 0021's SM3 dynamic password.
#[tokio::test]
async fn the_guomi_profile_enrols_sm3_dynamic_passwords_and_refuses_totp_codes() {
    use crypto::otp::{Algorithm, Secret};
    for b in test_backends() {
        let app = TestApp::start_with(b, |cfg| cfg.security.otp_algorithm = "sm3".into()).await;
        // The demo's administrators were enrolled with SM3 seeds, and log in with SM3 codes.
        assert_eq!(app.totp["secadmin"].algorithm, Algorithm::Sm3);
        app.login("secadmin").await;
        // A TOTP code from the same key is not accepted, nor is an SM3 code used twice.
        let sm3 = app.totp["auditor"].clone();
        let totp = Secret { algorithm: Algorithm::Totp, ..sm3.clone() };
        let now = || kernel::Clock::now_ms(&app.clock) / 1000;
        app.clock.advance_secs(31);
        while [-30, 0, 30].iter().any(|d| sm3.code_at(now() + d) == totp.code_at(now())) {
            app.clock.advance_secs(30);
        }
        let mfa_session = || async {
            let mut c = app.client();
            let (_, body) = c
                .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "auditor", "password": PASSWORD})))
                .await;
            assert_eq!(body["stage"], "mfa", "{b:?}: {body}");
            c.csrf = body["csrf_token"].as_str().unwrap().into();
            c
        };
        let c = mfa_session().await;
        let (st, body) =
            c.json(Method::POST, "/api/v1/auth/mfa", Some(json!({"code": totp.code_at(now()).unwrap()}))).await;
        assert_error(st, &body, 401, "invalid_totp");
        let code = sm3.code_at(now()).unwrap();
        let (st, body) = c.json(Method::POST, "/api/v1/auth/mfa", Some(json!({"code": code}))).await;
        assert_eq!((st, body["stage"].as_str()), (StatusCode::OK, Some("active")), "{body}");
        let c = mfa_session().await;
        let (st, body) = c.json(Method::POST, "/api/v1/auth/mfa", Some(json!({"code": code}))).await;
        assert_error(st, &body, 401, "invalid_totp");

        // A user who turns on two-factor authentication is enrolled with SM3 too.
        let s = app.login("gridworker").await;
        let (st, setup) = s.json(Method::POST, "/api/v1/auth/totp/setup", Some(json!({}))).await;
        assert_eq!(st, StatusCode::OK, "{setup}");
        assert_eq!(setup["algorithm"], "sm3");
        assert!(setup["otpauth_uri"].as_str().unwrap().contains("algorithm=SM3"), "{setup}");
        let secret = Secret { algorithm: Algorithm::Sm3, key_b32: setup["secret"].as_str().unwrap().into() };
        let (st, body) = s
            .json(Method::POST, "/api/v1/auth/totp/enable", Some(json!({"code": secret.code_at(now()).unwrap()})))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let stored: String = sqlx::query_scalar("SELECT totp_secret_enc FROM users WHERE username = 'gridworker'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert!(!stored.contains(secret.key_b32.as_str()), "the seed is stored sealed");
    }
}

#[tokio::test]
async fn the_guomi_profile_hashes_passwords_with_pbkdf2_sm3() {
    for b in test_backends() {
        let app = TestApp::start_with(b, |cfg| cfg.security.password_hash = "pbkdf2-sm3".into()).await;
        let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'gridworker'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert!(stored.starts_with("$pbkdf2-sm3$i="), "{stored}");
        let s = app.login("gridworker").await;
        let (st, body) = s
            .json(
                Method::POST,
                "/api/v1/auth/password",
                Some(json!({"current_password": PASSWORD, "new_password": "Quancheng#2027"})),
            )
            .await;
        assert_eq!(st.as_u16(), 200, "{body}");
        let c = app.client();
        let (st, _) = c
            .json(
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({"username": "gridworker", "password": "Quancheng#2027"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, body) = c
            .json(Method::POST, "/api/v1/auth/login", Some(json!({"username": "gridworker", "password": PASSWORD})))
            .await;
        assert_error(st, &body, 401, "invalid_credentials");
    }
}

#[tokio::test]
async fn taking_many_rows_out_through_lists_raises_a_bulk_export_alert_within_the_hour() {
    for b in test_backends() {
        let app = TestApp::start_with(b, |cfg| cfg.security.policy.anomaly_rows_per_hour = 100).await;
        let admin = app.login("lixia_admin").await;
        // Page after page of the user list (personal data), until the rows taken pass 100.
        let mut taken = 0;
        let mut requests = 0;
        while taken < 100 {
            let (st, page) = admin.json(Method::GET, "/api/v1/users?page_size=50", None).await;
            assert_eq!(st, StatusCode::OK, "{page}");
            let n = page["items"].as_array().unwrap().len();
            assert!(n > 0, "{b:?}: the district has users");
            taken += n;
            requests += 1;
            assert!(requests < 100);
        }
        let sec = app.login("secadmin").await;
        let (_, alerts) = sec.json(Method::GET, "/api/v1/security/alerts?rule=bulk_export", None).await;
        assert_eq!(alerts["total"], 1, "{b:?}: {alerts}");
        let alert = &alerts["items"][0];
        assert_eq!(alert["subject_name"], "lixia_admin");
        assert!(alert["count"].as_i64().unwrap() >= 100, "{alert}");
        assert!(alert["detail"].as_str().unwrap().contains("1 小时内通过列表和导出取得"), "{alert}");
        // Once per hour: more pages count into the same open alert silently.
        admin.json(Method::GET, "/api/v1/users?page_size=50", None).await;
        let (_, alerts) = sec.json(Method::GET, "/api/v1/security/alerts?rule=bulk_export", None).await;
        assert_eq!(alerts["total"], 1, "{b:?}");
    }
}
