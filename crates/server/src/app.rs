//! Wiring: open the platform from a configuration, build the router, serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apikit::state::HttpOptions;
use apikit::{ApiError, AppState};
use audit::{AuditLog, AuditOptions, Sealer, SealerHandle};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use crypto::{CipherAlg, HashAlg, KeyRing};
use identity::orgs::NewOrg;
use identity::users::NewUser;
use identity::{Actor, Identity, IdentityOptions, OrgKind};
use kernel::{Clock, ErrorCode};
use store::{Db, DbOptions, DbResultExt};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Config;

/// Every component's migrations, in dependency order.
pub fn migration_sets() -> Vec<&'static store::MigrationSet> {
    vec![&audit::MIGRATIONS, &identity::MIGRATIONS, &notify::MIGRATIONS, &flow::MIGRATIONS, &grid::MIGRATIONS]
}

/// Options that tests change.
#[derive(Clone)]
pub struct OpenOptions {
    pub clock: Arc<dyn Clock>,
    /// Cheaper password hashing for tests.
    pub fast_hashing: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { clock: Arc::new(kernel::SystemClock), fast_hashing: false }
    }
}

/// Loads the key ring from `ZHONGSHU_KEYS`, the key file, or creates a key file.
pub fn load_keys(cfg: &Config) -> anyhow::Result<KeyRing> {
    if let Ok(text) = std::env::var("ZHONGSHU_KEYS")
        && !text.trim().is_empty()
    {
        return KeyRing::parse(&text).context("ZHONGSHU_KEYS is not a valid key ring");
    }
    let path = cfg.key_file();
    if !path.exists() {
        let alg = if cfg.security.key_cipher == "aes-256-gcm" { CipherAlg::Aes256Gcm } else { CipherAlg::Sm4Gcm };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        write_private(&path, &KeyRing::generate_file(alg))?;
        tracing::warn!(path = %path.display(), "generated a new key file; back it up — encrypted fields cannot be read without it");
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read key file {}", path.display()))?;
    KeyRing::parse(&text).with_context(|| format!("key file {} is not valid", path.display()))
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Opens the database (migrating it) and builds the services.
pub async fn open(cfg: &Config, opts: OpenOptions) -> anyhow::Result<AppState> {
    if cfg.storage.database_url.is_empty() {
        std::fs::create_dir_all(&cfg.storage.data_dir)
            .with_context(|| format!("cannot create data dir {}", cfg.storage.data_dir.display()))?;
    }
    let keys = Arc::new(load_keys(cfg)?);
    let db_opts = DbOptions { max_connections: cfg.storage.max_connections, ..DbOptions::default() };
    let db = Db::connect(&cfg.database_url(), &db_opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
    store::migrate(&db, &migration_sets()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let algorithm = HashAlg::parse(&cfg.security.audit_hash).unwrap_or_default();
    let audit = AuditLog::new(&keys).with_algorithm(algorithm);
    let audit_opts = AuditOptions {
        algorithm,
        checkpoint_every: cfg.security.audit_checkpoint_every,
        retention_days: cfg.security.audit_retention_days,
        archive_dir: cfg.audit_archive_dir(),
        archive_after_days: cfg.security.audit_archive_after_days,
        auto_purge: cfg.security.audit_auto_purge,
        ..AuditOptions::default()
    };
    let scheme = crypto::password::Scheme::parse(&cfg.security.password_hash).unwrap_or_default();
    let hash_cost = if opts.fast_hashing {
        crypto::password::HashCost { scheme, ..crypto::password::HashCost::TEST }
    } else {
        crypto::password::HashCost {
            memory_kib: cfg.security.password_hash_memory_kib,
            iterations: cfg.security.password_hash_iterations,
            parallelism: 1,
            scheme,
            pbkdf2_iterations: cfg.security.password_hash_pbkdf2_iterations,
        }
    };
    let id_opts = IdentityOptions {
        hash_cost,
        default_policy: cfg.security.policy.clone(),
        totp_issuer: cfg.security.totp_issuer.clone(),
        otp_algorithm: crypto::otp::Algorithm::parse(&cfg.security.otp_algorithm).unwrap_or_default(),
    };
    let identity = Identity::new(db.clone(), keys.clone(), audit.clone(), opts.clock.clone(), id_opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start identity: {e}"))?;
    let sealer = Sealer::new(db.clone(), audit.clone(), audit_opts.clone(), opts.clock.clone());
    let mut services = apikit::Services::default();
    let notify = notify::Notify::new(db.clone(), identity.clone(), opts.clock.clone(), cfg.notify.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the message service: {e}"))?;
    let flow = flow::Flow::new(db.clone(), identity.clone(), opts.clock.clone(), cfg.flow.clone());
    flow.set_notify(notify.clone());
    let grid = grid::Grid::new(db.clone(), identity.clone(), flow.clone(), opts.clock.clone(), cfg.grid.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the grid platform: {e}"))?;
    grid.set_notify(notify.clone());
    grid.ensure_installed().await.map_err(|e| anyhow::anyhow!("cannot install the grid platform: {e}"))?;
    services.insert(notify);
    services.insert(flow);
    services.insert(grid);
    Ok(AppState {
        db,
        identity,
        audit,
        audit_opts,
        sealer,
        clock: opts.clock,
        limiter: Arc::default(),
        anomaly: Arc::default(),
        metrics: Arc::default(),
        http: HttpOptions {
            // Served over TLS directly, the cookie is always Secure.
            secure_cookies: cfg.server.secure_cookies || cfg.server.tls.enabled(),
            body_limit: cfg.server.body_limit_bytes,
            trust_forwarded_for: cfg.server.trust_forwarded_for,
            admin_networks: cfg
                .server
                .admin_networks
                .iter()
                .map(|n| apikit::netlist::Net::parse(n))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("[server] admin_networks: {e}"))?,
        },
        services,
    })
}

/// Initial credentials created on a fresh install, printed once.
pub struct InitialAccount {
    pub username: String,
    pub role: &'static str,
    pub password: String,
}

/// On an empty database: the root org and the three administrators with one-time passwords
/// (changed, and two-factor set up, at first login). Nothing happens on a populated database.
pub async fn bootstrap(state: &AppState, cfg: &Config) -> anyhow::Result<Vec<InitialAccount>> {
    let id = &state.identity;
    if !id.is_empty().await.map_err(|e| anyhow::anyhow!("{e}"))? {
        return Ok(vec![]);
    }
    let actor = Actor::system();
    let kind = OrgKind::parse(&cfg.platform.root_org_kind).unwrap_or(OrgKind::City);
    let root = id
        .create_org_as_system(
            &actor,
            NewOrg {
                parent_id: None,
                kind,
                code: cfg.platform.root_org_code.clone(),
                name: cfg.platform.root_org_name.clone(),
                sort: 0,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the root organisation: {e}"))?;
    let mut out = Vec::new();
    for (username, name, role) in [
        ("sysadmin", "系统管理员", "sysadmin"),
        ("secadmin", "安全管理员", "secadmin"),
        ("auditor", "审计管理员", "auditor"),
    ] {
        let created = id
            .provision_user(
                &actor,
                NewUser::new(username, name, root.id.as_str()),
                Some((role, identity::DataScope::All)),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the administrator {username}: {e}"))?;
        out.push(InitialAccount { username: username.into(), role, password: created.initial_password });
    }
    Ok(out)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "中枢 Zhongshu API",
        description = "The platform API. Errors answer {code, message, request_id}; \
        lists take page and page_size (at most 200). State-changing requests with a session cookie must \
        send X-CSRF-Token; connected applications sign requests instead (see docs/api.md)."
    ),
    components(schemas(apikit::ErrorBody))
)]
struct ApiDoc;

/// The whole HTTP application. `main` and the tests serve the same router.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            apikit::routes::router().merge(flow::api::router()).merge(notify::api::router()).merge(grid::api::router()),
        )
        .split_for_parts();
    let openapi = with_common_errors(openapi);
    let limit = state.http.body_limit;
    let hsts = state.http.secure_cookies;
    Router::new()
        .merge(api)
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(crate::web::serve)
        .method_not_allowed_fallback(|| async {
            ApiError(kernel::Error::new(ErrorCode::MethodNotAllowed, "this route does not take that HTTP method"))
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), apikit::middleware::signed_requests))
        .layer(axum::middleware::from_fn_with_state(state.clone(), apikit::middleware::request_context))
        .layer(axum::middleware::map_response(move |resp| security_headers(hsts, resp)))
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError(kernel::Error::new(ErrorCode::Internal, "internal error")).into_response()
        }))
        .with_state(state)
}

/// Documents on every operation the errors any request can meet, so the document lists every
/// status the API answers with: 400 (malformed query or body), 401 and 403, 404 (an object named
/// in the path, query or body), 422 (validation), 429 (rate limits and abnormal-call blocks), plus
/// 409, 413 and 415 for routes taking a body. An operation's own description of a status is kept.
fn with_common_errors(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            let mut common = vec![
                ("400", "The query string or body is malformed (invalid_query, invalid_json)"),
                ("401", "Not logged in, the session ended, or the signature is wrong"),
                ("403", "The caller lacks the permission, or the object is outside its data scope"),
                ("404", "An object the request names does not exist within the caller's data scope"),
                ("422", "The input breaks a rule (validation_failed and others)"),
                ("429", "Too many requests (rate_limited); see Retry-After"),
            ];
            if op.request_body.is_some() {
                common.push(("409", "The object's state or a duplicate does not allow this (conflict)"));
                common.push(("413", "The body is larger than allowed"));
                common.push(("415", "The body is not of the documented content type"));
            }
            for (code, description) in common {
                op.responses.responses.entry(code.to_string()).or_insert_with(|| error(description).into());
            }
        }
    }
    doc
}

async fn security_headers(hsts: bool, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // Users reach the platform over HTTPS (directly or through a proxy): browsers must not fall
    // back to plain HTTP for a year (等保 DJ-AUTH-3, ASVS 3.4.1).
    if hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    resp
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => {
            (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready", "database": state.db.backend().name()})))
                .into_response()
        }
        Err(e) => ApiError(e).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let s = state.db.pool_stats();
    let body = state.metrics.render(&[
        ("zhongshu_db_read_pool_connections", "Open connections of the read pool.", s.read_size as f64),
        ("zhongshu_db_read_pool_idle", "Idle connections of the read pool.", s.read_idle as f64),
        ("zhongshu_db_write_pool_connections", "Open connections of the write pool.", s.write_size as f64),
        ("zhongshu_db_write_pool_idle", "Idle connections of the write pool.", s.write_idle as f64),
    ]);
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

/// Tells the security administrators of each new security alert (urgent in-app message, and
/// their other channels by preference); repeats of an open alert are counted in it silently.
async fn tell_security_admins(state: AppState, notify: notify::Notify, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut alerts = state.identity.subscribe_alerts();
    loop {
        let alert = tokio::select! {
            _ = stop.changed() => return,
            a = alerts.recv() => match a {
                Ok(a) => a,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "security alerts came faster than they could be announced");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        if alert.first_at != alert.last_at {
            continue;
        }
        let sent = async {
            let recipients = state.identity.usernames_with_admin_role(identity::AdminRole::Secadmin.as_str()).await?;
            if recipients.is_empty() {
                return Ok::<(), kernel::Error>(());
            }
            let who = alert.subject_name.clone().unwrap_or_else(|| alert.subject.clone());
            let blocked = match alert.blocked_until {
                Some(_) => "，已按安全策略暂时拒绝其访问（处理告警即解除）",
                None => "",
            };
            let req = notify::SendRequest {
                title: Some(format!("安全告警：{}", alert.rule.label())),
                body: Some(format!("{who}：{}{blocked}。请在「安全告警」中核实处理。", alert.detail)),
                recipients,
                urgent: true,
                link: Some("/admin/alerts".into()),
                ..Default::default()
            };
            let mut tx = state.db.begin().await?;
            let queued = notify.send_in(&mut tx, &req).await?;
            tx.commit().await.db()?;
            notify.published(queued);
            Ok(())
        };
        if let Err(e) = sent.await {
            tracing::error!(error = %e, "could not tell the security administrators of an alert");
        }
    }
}

/// Once a day: archives the audit records older than `archive_after_days` and, when
/// `auto_purge` is on, purges archived segments past the retention period (both audited as the
/// platform's own work). Off when `archive_after_days` is 0.
async fn audit_retention(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let opts = &state.audit_opts;
    if opts.archive_after_days == 0 {
        return;
    }
    let mut wait = Duration::from_secs(120); // let the start settle first
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_secs(24 * 3600);
        let now = state.clock.now_ms();
        let actor = identity::Actor::system();
        let before = now - opts.archive_after_days * 86_400_000;
        let entry = actor.entry(now, "audit.archive");
        let clock = state.clock.as_ref();
        // A backlog becomes several files of at most `archive_max_records` records.
        for _ in 0..1_000 {
            let entry = entry.clone();
            match audit::archive(&state.db, &state.audit, opts, clock, &opts.archive_dir, before, entry).await {
                Ok(Some(a)) => {
                    tracing::info!(first_seq = a.first_seq, last_seq = a.last_seq, file = %a.file_name, "archived audit records")
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "archiving the audit log failed");
                    break;
                }
            }
        }
        if opts.auto_purge {
            let entry = actor.entry(now, "audit.purge");
            match audit::purge(&state.db, &state.audit, clock, &opts.archive_dir, opts.retention_days, entry).await {
                Ok(r) if r.records_removed > 0 => {
                    tracing::info!(
                        records = r.records_removed,
                        segments = r.purged.len(),
                        "purged archived audit records"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "purging archived audit records failed"),
            }
        }
        state.sealer.wake();
    }
}

/// Background work owned by a running server.
pub struct Background {
    sealer: SealerHandle,
    pruner: tokio::task::JoinHandle<()>,
    loops: apikit::background::Background,
}

impl Background {
    pub fn start(state: &AppState) -> Background {
        let sealer = state.sealer.clone().spawn(Duration::from_millis(500));
        let identity = state.identity.clone();
        let pruner = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                if let Err(e) = identity.prune_nonces().await {
                    tracing::warn!(error = %e, "pruning request nonces failed");
                }
                match identity.disable_inactive().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(accounts = n, "disabled accounts unused for the policy's inactivity period")
                    }
                    Err(e) => tracing::warn!(error = %e, "disabling inactive accounts failed"),
                }
            }
        });
        let mut loops = apikit::background::Background::new();
        if let Some(f) = state.services.get::<flow::Flow>().filter(|f| f.options().workers) {
            flow::runtime::spawn_workers(f, &mut loops);
        }
        if let Some(n) = state.services.get::<notify::Notify>().filter(|n| n.options().relay) {
            n.spawn_relay(&mut loops);
        }
        if let Some(g) = state.services.get::<grid::Grid>().filter(|g| g.options().relay) {
            g.spawn_relay(&mut loops);
        }
        if let Some(n) = state.services.get::<notify::Notify>() {
            loops.spawn(tell_security_admins(state.clone(), n.clone(), loops.stop_signal()));
        }
        loops.spawn(audit_retention(state.clone(), loops.stop_signal()));
        Background { sealer, pruner, loops }
    }

    /// Seals the remaining audit records and stops.
    pub async fn shutdown(self) {
        self.pruner.abort();
        self.loops.shutdown().await;
        self.sealer.shutdown().await;
    }
}

/// Serves on `listener` (plain TCP, or [`crate::tls::TlsListener`]) until `shutdown` resolves.
pub async fn serve<L>(
    state: AppState,
    listener: L,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use axum::serve::ListenerExt;
    let bg = Background::start(&state);
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // `tap_io` gives every listener type the client address as ConnectInfo.
    axum::serve(listener.tap_io(|_| {}), app).with_graceful_shutdown(shutdown).await.context("server failed")?;
    bg.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
