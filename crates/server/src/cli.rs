//! The commands behind the command line.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use identity::users::NewUser;
use identity::{Actor, DataScope};
use sqlx::Connection;

use crate::app::{self, OpenOptions};
use crate::config::Config;

/// Sets up `tracing` from the configuration.
pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if cfg.log.format == "json" { builder.json().try_init() } else { builder.try_init() };
}

/// The bound address, served over TLS when `[server.tls]` names a certificate.
struct Bound {
    tcp: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

async fn bind(cfg: &Config) -> anyhow::Result<Bound> {
    // Read the certificate first: a wrong file should stop the start before the port is taken.
    let tls = match cfg.server.tls.enabled() {
        true => Some(crate::tls::server_config(
            std::path::Path::new(&cfg.server.tls.cert_file),
            std::path::Path::new(&cfg.server.tls.key_file),
        )?),
        false => None,
    };
    let tcp = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    let addr = tcp.local_addr()?;
    if tls.is_none() && !addr.ip().is_loopback() && !cfg.server.secure_cookies {
        tracing::warn!(
            %addr,
            "serving plain HTTP on a network address: passwords and sessions cross the network unencrypted \
             unless a TLS proxy is in front; set [server.tls] (or secure_cookies behind the proxy)"
        );
    }
    Ok(Bound { tcp, tls })
}

impl Bound {
    fn addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }

    /// The base URL to print and to give callers on this machine.
    fn url(&self) -> anyhow::Result<String> {
        let addr = self.addr()?;
        let host = if addr.ip().is_unspecified() { format!("127.0.0.1:{}", addr.port()) } else { addr.to_string() };
        Ok(format!("{}://{host}", if self.tls.is_some() { "https" } else { "http" }))
    }

    fn announce(&self) -> anyhow::Result<()> {
        let url = self.url()?;
        println!("Zhongshu listening on {url}  (API docs: {url}/api/docs/)");
        Ok(())
    }

    async fn serve(self, state: apikit::AppState) -> anyhow::Result<()> {
        match self.tls {
            Some(tls) => app::serve(state, crate::tls::TlsListener::new(self.tcp, tls)?, app::shutdown_signal()).await,
            None => app::serve(state, self.tcp, app::shutdown_signal()).await,
        }
    }
}

/// `zhongshu serve`.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let state = app::open(&cfg, OpenOptions::default()).await?;
    let initial = app::bootstrap(&state, &cfg).await?;
    if !initial.is_empty() {
        println!("首次启动：已创建三员管理账号（一次性口令，首次登录须修改口令并绑定动态口令）");
        println!("First start: the three administrator accounts were created with one-time passwords:");
        for a in &initial {
            println!("  {:<10} {:<9} {}", a.username, a.role, a.password);
        }
    }
    let bound = bind(&cfg).await?;
    bound.announce()?;
    bound.serve(state).await
}

/// `zhongshu demo`: a fresh data dir with the demo city, then serve.
pub async fn demo(mut cfg: Config) -> anyhow::Result<()> {
    if cfg.grid.dispatch_center.is_empty() {
        cfg.grid.dispatch_center = crate::demo::DISPATCH_CENTER.into();
    }
    let dir = &cfg.storage.data_dir;
    let marker = dir.join(".zhongshu-demo");
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !marker.exists() {
            bail!("{} exists and is not a demo data directory; choose another --data-dir", dir.display());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(&marker, "created by `zhongshu demo`; replaced by the next demo run\n")?;
    let state = app::open(&cfg, OpenOptions::default()).await?;
    let accounts = crate::demo::seed(&state).await?;
    crate::demo::seed_alerts(&state).await?;
    crate::demo_flow::seed(&state).await?;
    crate::demo_grid::seed(&state).await?;
    let bound = bind(&cfg).await?;
    // The third-party platforms are simulators on this machine that call back to this server.
    let callback_base = bound.url()?;
    let simulators =
        crate::demo_grid::seed_platforms(&state, &callback_base, std::sync::Arc::new(kernel::SystemClock)).await?;
    crate::demo_grid::seed_platform_cases(&state).await?;
    state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
    crate::demo::seed_archive(&state).await?;
    println!();
    println!("中枢演示城市：济南市（山东省 › 济南市 › 4 个区 › 12 个街道 › 社区 › 网格）");
    println!("Demo accounts — password for all: {}", crate::demo::DEMO_PASSWORD);
    println!("  {}{}{}{}TOTP secret", pad("username", 15), pad("name", 9), pad("role", 11), pad("organisation", 28));
    for a in &accounts {
        println!(
            "  {}{}{}{}{}",
            pad(a.username, 15),
            pad(a.name, 9),
            pad(a.role, 11),
            pad(&a.org, 28),
            a.totp_secret.as_ref().map_or("-", |s| s.key_b32.as_str())
        );
    }
    if accounts.iter().any(|a| a.totp_secret.as_ref().is_some_and(|s| s.algorithm == crypto::otp::Algorithm::Sm3)) {
        println!(
            "The three administrators need a one-time code: the secrets are GM/T 0021 SM3 dynamic-password seeds (otp_algorithm = \"sm3\"); add them to a token app that implements it."
        );
    } else {
        println!("The three administrators need a one-time code: add the TOTP secret to an authenticator app.");
    }
    println!();
    println!("Third-party platform simulators (数字城管, 综治, 12345):");
    for (code, sim) in &simulators {
        println!("  {}{}", pad(code, 10), sim.url());
    }
    bound.announce()?;
    let r = bound.serve(state).await;
    drop(simulators);
    r
}

/// Pads `s` to `width` terminal columns (CJK characters take two).
fn pad(s: &str, width: usize) -> String {
    let cols: usize = s.chars().map(|c| if c > '\u{2e7f}' { 2 } else { 1 }).sum();
    format!("{s}{}", " ".repeat(width.saturating_sub(cols).max(1)))
}

/// `zhongshu migrate`.
pub async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    println!("database is up to date ({})", state.db.backend().name());
    Ok(())
}

async fn user_id(state: &apikit::AppState, username: &str) -> anyhow::Result<String> {
    state
        .identity
        .user_id_by_username(username)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("no user named {username}"))
}

/// `zhongshu user create`.
pub async fn user_create(
    cfg: &Config,
    username: &str,
    name: &str,
    org: &str,
    role: Option<&str>,
    scope: &str,
) -> anyhow::Result<()> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    let id = &state.identity;
    let org_id = id
        .org_id_by_code(org)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("no organisation with code {org}"))?;
    let role = match role {
        Some(role) => Some((
            role,
            DataScope::parse(scope).ok_or_else(|| anyhow!("scope must be all, org_and_below, own_org or self"))?,
        )),
        None => None,
    };
    let created = id
        .provision_user(&Actor::cli(), NewUser::new(username, name, &org_id), role)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
    println!("created {username}; one-time password (change at first login): {}", created.initial_password);
    Ok(())
}

/// `zhongshu user reset-password`.
pub async fn user_reset_password(cfg: &Config, username: &str) -> anyhow::Result<()> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    let uid = user_id(&state, username).await?;
    let pw = state
        .identity
        .reset_password(&identity::users::system_caller(), &Actor::cli(), &uid)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
    println!("new one-time password for {username} (change at next login): {pw}");
    Ok(())
}

/// `zhongshu user unlock`.
pub async fn user_unlock(cfg: &Config, username: &str) -> anyhow::Result<()> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    let uid = user_id(&state, username).await?;
    state
        .identity
        .unlock_user(&identity::users::system_caller(), &Actor::cli(), &uid)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
    println!("unlocked {username}");
    Ok(())
}

/// `zhongshu audit verify`.
pub async fn audit_verify(cfg: &Config, checkpoints: Option<&Path>) -> anyhow::Result<ExitCode> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    let external: Vec<audit::Checkpoint> = match checkpoints {
        Some(p) => {
            serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?)
                .with_context(|| format!("{} is not a checkpoint export", p.display()))?
        }
        None => vec![],
    };
    let r = audit::verify(&state.db, &state.audit, &state.audit_opts, state.clock.as_ref(), &external)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "checked {} records ({}), {} checkpoints, {} not yet sealed, in {} ms; head seq {} hash {}",
        r.records_checked, r.algorithm, r.checkpoints_checked, r.unsealed, r.elapsed_ms, r.head_seq, r.head_hash
    );
    match r.problem {
        None => {
            println!("audit chain intact");
            Ok(ExitCode::SUCCESS)
        }
        Some(p) => {
            println!("TAMPERING DETECTED ({:?}): {}", p.kind, p.message);
            Ok(ExitCode::from(1))
        }
    }
}

/// `zhongshu audit checkpoints`.
pub async fn audit_checkpoints(cfg: &Config) -> anyhow::Result<()> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    let cps = audit::checkpoints(&state.db).await.map_err(|e| anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&cps)?);
    Ok(())
}

/// `zhongshu audit archive`.
pub async fn audit_archive(cfg: &Config, before: Option<&str>) -> anyhow::Result<()> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    let now = state.clock.now_ms();
    let before = match before {
        Some(d) => kernel::calendar::parse_day_or_time(d)
            .ok_or_else(|| anyhow!("--before {d}: expected a day as YYYY-MM-DD or an RFC 3339 time"))?,
        None => {
            let days = match state.audit_opts.archive_after_days {
                0 => 30,
                n => n,
            };
            let today = kernel::calendar::china_date(now).ok_or_else(|| anyhow!("the clock is out of range"))?;
            kernel::calendar::china_day_start(today) - days * 86_400_000
        }
    };
    // A day still to come means "everything so far".
    let before = before.min(now);
    state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
    let opts = &state.audit_opts;
    let mut made = 0;
    loop {
        let entry = Actor::cli().entry(now, "audit.archive");
        let clock = state.clock.as_ref();
        let archived = audit::archive(&state.db, &state.audit, opts, clock, &opts.archive_dir, before, entry)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
        let Some(a) = archived else { break };
        made += 1;
        println!(
            "archived seq {} to {} ({} records, {} to {}) into {} ({} bytes, SM3 {})",
            a.first_seq,
            a.last_seq,
            a.records,
            kernel::clock::to_rfc3339(a.oldest_at),
            kernel::clock::to_rfc3339(a.newest_at),
            opts.archive_dir.join(&a.file_name).display(),
            a.file_bytes,
            a.file_digest
        );
    }
    if made == 0 {
        println!("nothing to archive before {}", kernel::clock::to_rfc3339(before));
    }
    Ok(())
}

/// `zhongshu audit archives`.
pub async fn audit_archives(cfg: &Config) -> anyhow::Result<()> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    let list = audit::list_archives(&state.db, &state.audit).await.map_err(|e| anyhow!("{e}"))?;
    if list.is_empty() {
        println!("no archives yet (archive directory {})", state.audit_opts.archive_dir.display());
    }
    for a in list.iter().rev() {
        println!(
            "seq {:>10} to {:>10}  {:>8} records  {} to {}  {}  {}{}",
            a.first_seq,
            a.last_seq,
            a.records,
            kernel::clock::to_rfc3339(a.oldest_at),
            kernel::clock::to_rfc3339(a.newest_at),
            a.file_name,
            match a.purged_at {
                Some(t) => format!("purged {}", kernel::clock::to_rfc3339(t)),
                None => "in the database".into(),
            },
            if a.intact { "" } else { "  ARCHIVE RECORD FAILS ITS MAC" }
        );
    }
    Ok(())
}

/// `zhongshu audit purge`.
pub async fn audit_purge(cfg: &Config) -> anyhow::Result<()> {
    let state = app::open(cfg, OpenOptions::default()).await?;
    let opts = &state.audit_opts;
    let entry = Actor::cli().entry(state.clock.now_ms(), "audit.purge");
    let r = audit::purge(&state.db, &state.audit, state.clock.as_ref(), &opts.archive_dir, opts.retention_days, entry)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
    for a in &r.purged {
        println!("purged seq {} to {} ({} records, archived in {})", a.first_seq, a.last_seq, a.records, a.file_name);
    }
    for k in &r.kept {
        println!("kept seq {} to {}: {}", k.first_seq, k.last_seq, k.reason);
    }
    println!(
        "{} records removed; retention {} days (records before {} may go once archived)",
        r.records_removed,
        r.retention_days,
        kernel::clock::to_rfc3339(r.cutoff)
    );
    Ok(())
}

/// `zhongshu audit verify-archive FILE`.
pub async fn audit_verify_archive(cfg: &Config, file: &Path) -> anyhow::Result<ExitCode> {
    // A new key ring would only make every MAC fail: the platform's own is needed.
    let keys_given = std::env::var("ZHONGSHU_KEYS").is_ok_and(|k| !k.trim().is_empty());
    if !keys_given && !cfg.key_file().exists() {
        bail!(
            "no key ring at {}: checking an archive needs the key file of the platform that wrote it (--data-dir, security.key_file or ZHONGSHU_KEYS)",
            cfg.key_file().display()
        );
    }
    let keys = crate::app::load_keys(cfg)?;
    let log = audit::AuditLog::new(&keys);
    let r = audit::verify_file(file, &log).map_err(|e| anyhow!("{e}"))?;
    println!(
        "{}: seq {} to {}, {} records checked ({}), last hash {}, file digest {}",
        r.file, r.first_seq, r.last_seq, r.records_checked, r.algorithm, r.last_hash, r.file_digest
    );
    match r.problem {
        None => {
            println!("archive intact");
            Ok(ExitCode::SUCCESS)
        }
        Some(p) => {
            println!("ARCHIVE DOES NOT VERIFY: {p}");
            Ok(ExitCode::from(1))
        }
    }
}

fn require_sqlite(cfg: &Config, what: &str) -> anyhow::Result<()> {
    if !cfg.storage.database_url.is_empty() && !cfg.storage.database_url.starts_with("sqlite:") {
        bail!(
            "{what} works on the embedded SQLite database; for PostgreSQL use pg_dump / pg_restore (docs/operations.md)"
        );
    }
    Ok(())
}

/// `zhongshu backup FILE`: an online, consistent copy (`VACUUM INTO`).
pub async fn backup(cfg: &Config, file: &Path) -> anyhow::Result<()> {
    require_sqlite(cfg, "backup")?;
    if file.exists() {
        bail!("{} already exists", file.display());
    }
    if !cfg.sqlite_path().exists() {
        bail!("no database at {}", cfg.sqlite_path().display());
    }
    let db = store::Db::connect(&cfg.database_url(), &store::DbOptions::default()).await.map_err(|e| anyhow!("{e}"))?;
    let target = file.to_str().ok_or_else(|| anyhow!("the backup path must be UTF-8"))?.replace('\'', "''");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM INTO '{target}'")))
        .execute(db.writer())
        .await
        .context("backup failed")?;
    let entry = Actor::cli()
        .entry(kernel::Clock::now_ms(&kernel::SystemClock), "system.backup")
        .detail(serde_json::json!({"file": file.display().to_string()}));
    let keys = app::load_keys(cfg)?;
    let algorithm = crypto::HashAlg::parse(&cfg.security.audit_hash).unwrap_or_default();
    audit::AuditLog::new(&keys).with_algorithm(algorithm).append_now(&db, &entry).await.map_err(|e| anyhow!("{e}"))?;
    println!("backed up to {}", file.display());
    Ok(())
}

/// `zhongshu restore FILE`: the server must be stopped.
pub async fn restore(cfg: &Config, file: &Path) -> anyhow::Result<()> {
    require_sqlite(cfg, "restore")?;
    if !file.is_file() {
        bail!("{} does not exist", file.display());
    }
    store::install_drivers();
    let url = format!("sqlite://{}?mode=ro", file.display());
    let ok = match sqlx::AnyConnection::connect(&url).await {
        Ok(mut conn) => sqlx::query("SELECT COUNT(*) FROM schema_migrations").fetch_one(&mut conn).await.is_ok(),
        Err(_) => false,
    };
    if !ok {
        bail!("{} is not a Zhongshu backup", file.display());
    }
    let target = cfg.sqlite_path();
    std::fs::create_dir_all(&cfg.storage.data_dir)?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
    }
    std::fs::copy(file, &target).with_context(|| format!("cannot write {}", target.display()))?;
    let state = app::open(cfg, OpenOptions::default()).await?;
    let entry = Actor::cli()
        .entry(state.clock.now_ms(), "system.restore")
        .detail(serde_json::json!({"file": file.display().to_string()}));
    state.audit.append_now(&state.db, &entry).await.map_err(|e| anyhow!("{e}"))?;
    state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
    println!("restored {} from {}", target.display(), file.display());
    Ok(())
}

/// `zhongshu simulate-platform`: a third-party platform simulator until Ctrl-C.
pub struct SimulateOptions {
    pub listen: String,
    pub key: String,
    pub secret: String,
    pub mapping: Option<std::path::PathBuf>,
    pub ticket_prefix: String,
    pub callback_url: Option<String>,
    pub platform_code: Option<String>,
    pub app_id: Option<String>,
    pub app_secret: Option<String>,
    pub mode: Option<String>,
}

pub async fn simulate_platform(o: SimulateOptions) -> anyhow::Result<()> {
    let mapping: grid::platforms::Mapping = match &o.mapping {
        Some(p) => {
            serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?)
                .with_context(|| format!("{} is not a mapping", p.display()))?
        }
        None => grid::platforms::Mapping::default(),
    };
    mapping.check().map_err(|e| anyhow!("the mapping: {e}"))?;
    let mode: grid::simulator::Mode = match &o.mode {
        Some(m) => serde_json::from_str(m).context("--mode is not a mode")?,
        None => grid::simulator::Mode::default(),
    };
    let callback = match (o.callback_url, o.platform_code, o.app_id, o.app_secret) {
        (Some(base_url), Some(platform_code), Some(app_id), Some(secret)) => Some(grid::simulator::CallbackTarget {
            base_url,
            platform_code,
            app_id,
            secret,
            sign_alg: "hmac-sm3".into(),
        }),
        (None, None, None, None) => None,
        _ => bail!("to call back give all of --callback-url, --platform-code, --app-id and --app-secret"),
    };
    let sim = grid::simulator::Simulator::start(
        &o.listen,
        grid::simulator::Config {
            name: "simulator".into(),
            ticket_prefix: o.ticket_prefix,
            key: o.key,
            secret: o.secret,
            sign_alg: "hmac-sm3".into(),
            mapping,
            callback,
            mode,
        },
        std::sync::Arc::new(kernel::SystemClock),
    )
    .await
    .with_context(|| format!("cannot listen on {}", o.listen))?;
    println!("Platform simulator listening on {}  (GET /sim/stats, GET /sim/tickets, PUT /sim/mode)", sim.url());
    app::shutdown_signal().await;
    Ok(())
}
