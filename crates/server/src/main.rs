//! `zhongshu`: serve the platform, run the demo city, and administer an installation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use zhongshu::cli;
use zhongshu::config::{Config, DEFAULT_TOML, Overrides};

#[derive(Parser)]
#[command(name = "zhongshu", version, about = "中枢 — an open platform for smart-city governance")]
struct Cli {
    /// Configuration file (TOML); see `zhongshu config default`.
    #[arg(long, global = true, env = "ZHONGSHU_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    place: Place,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct Place {
    /// Data directory (embedded database, key file); for `demo` default ./demo-data.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL (postgres://…); default: SQLite in the data directory.
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the platform.
    Serve {
        /// Address to listen on (127.0.0.1:0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create a fresh data directory with the demo city (济南市) and serve it.
    Demo {
        /// Address to listen on (127.0.0.1:0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage user accounts on the server.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Copy the embedded database to FILE while the server runs (SQLite; use pg_dump for PostgreSQL).
    Backup { file: PathBuf },
    /// Replace the embedded database with a backup (stop the server first).
    Restore { file: PathBuf },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run a third-party platform simulator (数字城管 / 综治 / 12345 stand-in) for integration tests.
    SimulatePlatform(SimulateArgs),
}

#[derive(Args)]
struct SimulateArgs {
    /// Address to listen on (127.0.0.1:0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: String,
    /// The key and secret Zhongshu signs with at this platform (the platform's out_key / out_secret).
    #[arg(long)]
    key: String,
    #[arg(long, env = "ZHONGSHU_SIM_SECRET")]
    secret: String,
    /// The platform's dialect: a JSON file with the mapping (fields, categories, paths, ack, crs).
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Prefix of its ticket numbers.
    #[arg(long, default_value = "SIM")]
    ticket_prefix: String,
    /// Zhongshu's base URL, the platform's code there and its connected application (to call back).
    #[arg(long)]
    callback_url: Option<String>,
    #[arg(long)]
    platform_code: Option<String>,
    #[arg(long)]
    app_id: Option<String>,
    #[arg(long, env = "ZHONGSHU_SIM_APP_SECRET")]
    app_secret: Option<String>,
    /// Behaviour as JSON, e.g. {"accept_after_ms": 5000, "handle_after_ms": 60000, "fail_every": 10};
    /// change it while running with PUT /sim/mode.
    #[arg(long)]
    mode: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; prints a one-time password that must be changed at first login.
    Create {
        #[arg(long)]
        username: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Code of the user's organisation.
        #[arg(long)]
        org: String,
        /// Role code to grant (e.g. staff, org_admin, sysadmin, secadmin, auditor).
        #[arg(long)]
        role: Option<String>,
        /// Data scope of the role: all, org_and_below, own_org, self.
        #[arg(long, default_value = "org_and_below")]
        scope: String,
    },
    /// Give a user a new one-time password.
    ResetPassword { username: String },
    /// Lift a lockout.
    Unlock { username: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the audit chain; exits 1 and names the first bad record if it was tampered with.
    Verify {
        /// Checkpoints exported earlier (JSON from `zhongshu audit checkpoints`).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Print the checkpoints as JSON, to keep outside the database.
    Checkpoints,
    /// Archive the sealed records written before a day into a verified file in the archive
    /// directory (security.audit_archive_dir).
    Archive {
        /// First day not archived (YYYY-MM-DD, China time; or an RFC 3339 time). Default: today minus
        /// security.audit_archive_after_days (30 when that is 0).
        #[arg(long)]
        before: Option<String>,
    },
    /// List the archives.
    Archives,
    /// Remove archived segments older than security.audit_retention_days from the database.
    Purge,
    /// Check an archive file record by record; exits 1 naming the first problem.
    VerifyArchive { file: PathBuf },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the documented default configuration.
    Default,
}

fn load(config: Option<&PathBuf>, place: &Place, listen: Option<String>) -> anyhow::Result<Config> {
    Config::load(
        config.map(PathBuf::as_path),
        &Overrides { listen, data_dir: place.data_dir.clone(), database_url: place.database_url.clone() },
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config { command: ConfigCommand::Default } = cli.command {
        print!("{DEFAULT_TOML}");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg_path = cli.config.as_ref();
    let place = cli.place;
    match cli.command {
        Command::Serve { listen } => {
            let cfg = load(cfg_path, &place, listen)?;
            cli::init_logging(&cfg);
            cli::serve(cfg).await?;
        }
        Command::Demo { listen } => {
            // The demo always uses embedded SQLite in its own directory, which it replaces.
            let data_dir = place.data_dir.unwrap_or_else(|| PathBuf::from("demo-data"));
            let place = Place { data_dir: Some(data_dir), database_url: Some(String::new()) };
            let cfg = load(cfg_path, &place, listen)?;
            cli::init_logging(&cfg);
            cli::demo(cfg).await?;
        }
        Command::Migrate => {
            let cfg = load(cfg_path, &place, None)?;
            cli::migrate(&cfg).await?;
        }
        Command::User { command } => {
            let cfg = load(cfg_path, &place, None)?;
            match command {
                UserCommand::Create { username, name, org, role, scope } => {
                    cli::user_create(&cfg, &username, &name, &org, role.as_deref(), &scope).await?
                }
                UserCommand::ResetPassword { username } => cli::user_reset_password(&cfg, &username).await?,
                UserCommand::Unlock { username } => cli::user_unlock(&cfg, &username).await?,
            }
        }
        Command::Audit { command } => {
            let cfg = load(cfg_path, &place, None)?;
            match command {
                AuditCommand::Verify { checkpoints } => return cli::audit_verify(&cfg, checkpoints.as_deref()).await,
                AuditCommand::Checkpoints => cli::audit_checkpoints(&cfg).await?,
                AuditCommand::Archive { before } => cli::audit_archive(&cfg, before.as_deref()).await?,
                AuditCommand::Archives => cli::audit_archives(&cfg).await?,
                AuditCommand::Purge => cli::audit_purge(&cfg).await?,
                AuditCommand::VerifyArchive { file } => return cli::audit_verify_archive(&cfg, &file).await,
            }
        }
        Command::Backup { file } => cli::backup(&load(cfg_path, &place, None)?, &file).await?,
        Command::Restore { file } => cli::restore(&load(cfg_path, &place, None)?, &file).await?,
        Command::Config { .. } => unreachable!("handled before the runtime starts"),
        Command::SimulatePlatform(a) => {
            cli::simulate_platform(cli::SimulateOptions {
                listen: a.listen,
                key: a.key,
                secret: a.secret,
                mapping: a.mapping,
                ticket_prefix: a.ticket_prefix,
                callback_url: a.callback_url,
                platform_code: a.platform_code,
                app_id: a.app_id,
                app_secret: a.app_secret,
                mode: a.mode,
            })
            .await?
        }
    }
    Ok(ExitCode::SUCCESS)
}
