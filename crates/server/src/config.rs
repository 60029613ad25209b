//! Typed configuration, loaded once: defaults < file < environment < flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use identity::SecurityPolicy;
use serde::Deserialize;

/// The documented default configuration (`zhongshu config default`); the defaults are parsed
/// from this text, so the documentation cannot drift from the code.
pub const DEFAULT_TOML: &str = include_str!("default-config.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub security: SecurityConfig,
    pub platform: PlatformConfig,
    pub flow: flow::FlowOptions,
    pub notify: notify::NotifyOptions,
    pub grid: grid::GridOptions,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub secure_cookies: bool,
    pub trust_forwarded_for: bool,
    pub body_limit_bytes: usize,
    pub admin_networks: Vec<String>,
    pub tls: TlsConfig,
}

/// `[server.tls]`: serve HTTPS directly. Both empty: plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: String,
    pub key_file: String,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    pub key_file: String,
    pub key_cipher: String,
    pub audit_hash: String,
    pub audit_checkpoint_every: i64,
    pub audit_retention_days: i64,
    pub audit_archive_dir: String,
    pub audit_archive_after_days: i64,
    pub audit_auto_purge: bool,
    pub password_hash: String,
    pub password_hash_pbkdf2_iterations: u32,
    pub password_hash_memory_kib: u32,
    pub password_hash_iterations: u32,
    pub totp_issuer: String,
    pub otp_algorithm: String,
    pub policy: SecurityPolicy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    pub root_org_name: String,
    pub root_org_code: String,
    pub root_org_kind: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: String,
    pub level: String,
}

/// Flags that override the configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl Config {
    /// The defaults.
    pub fn defaults() -> Config {
        toml::from_str(DEFAULT_TOML).expect("the default configuration parses")
    }

    /// Loads defaults, then `file` (if any), then the environment, then `flags`.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> anyhow::Result<Config> {
        let mut value: toml::Table = toml::from_str(DEFAULT_TOML).expect("defaults parse");
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            let over: toml::Table =
                toml::from_str(&text).with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            merge(&mut value, over);
        }
        let mut cfg: Config =
            toml::Value::Table(value).try_into().context("the configuration has an unknown or mistyped setting")?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        if let Some(l) = &flags.listen {
            cfg.server.listen.clone_from(l);
        }
        if let Some(d) = &flags.data_dir {
            cfg.storage.data_dir.clone_from(d);
        }
        if let Some(u) = &flags.database_url {
            cfg.storage.database_url.clone_from(u);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies `ZHONGSHU_*` variables.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = get("ZHONGSHU_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = get("ZHONGSHU_SECURE_COOKIES") {
            self.server.secure_cookies = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = get("ZHONGSHU_TLS_CERT_FILE") {
            self.server.tls.cert_file = v;
        }
        if let Some(v) = get("ZHONGSHU_TLS_KEY_FILE") {
            self.server.tls.key_file = v;
        }
        if let Some(v) = get("ZHONGSHU_DATA_DIR") {
            self.storage.data_dir = v.into();
        }
        if let Some(v) = get("ZHONGSHU_DATABASE_URL") {
            self.storage.database_url = v;
        }
        if let Some(v) = get("ZHONGSHU_KEY_FILE") {
            self.security.key_file = v;
        }
        if let Some(v) = get("ZHONGSHU_LOG_FORMAT") {
            self.log.format = v;
        }
        if let Some(v) = get("ZHONGSHU_LOG") {
            self.log.level = v;
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if crypto::password::Scheme::parse(&self.security.password_hash).is_none() {
            bail!("security.password_hash must be \"argon2id\" or \"pbkdf2-sm3\"");
        }
        if crypto::otp::Algorithm::parse(&self.security.otp_algorithm).is_none() {
            bail!("security.otp_algorithm must be \"totp\" or \"sm3\"");
        }
        if !(10_000..=10_000_000).contains(&self.security.password_hash_pbkdf2_iterations) {
            bail!("security.password_hash_pbkdf2_iterations must be between 10000 and 10000000");
        }
        if self.server.tls.cert_file.is_empty() != self.server.tls.key_file.is_empty() {
            bail!("[server.tls] needs both cert_file and key_file (or neither, for plain HTTP)");
        }
        if crypto::HashAlg::parse(&self.security.audit_hash).is_none() {
            bail!("security.audit_hash must be \"sm3\" or \"sha256\"");
        }
        if !matches!(self.security.key_cipher.as_str(), "sm4-gcm" | "aes-256-gcm") {
            bail!("security.key_cipher must be \"sm4-gcm\" or \"aes-256-gcm\"");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be \"text\" or \"json\"");
        }
        if identity::OrgKind::parse(&self.platform.root_org_kind).is_none() {
            bail!("platform.root_org_kind must be one of province, city, district, street, community");
        }
        if self.security.audit_checkpoint_every < 1 {
            bail!("security.audit_checkpoint_every must be at least 1");
        }
        if !(audit::MIN_RETENTION_DAYS..=36_500).contains(&self.security.audit_retention_days) {
            bail!(
                "security.audit_retention_days must be between {} and 36500 (network logs are kept at least six months)",
                audit::MIN_RETENTION_DAYS
            );
        }
        if !(0..=36_500).contains(&self.security.audit_archive_after_days) {
            bail!("security.audit_archive_after_days must be between 0 (off) and 36500");
        }
        if !matches!(self.notify.smtp_tls.as_str(), "starttls" | "tls" | "none") {
            bail!("notify.smtp_tls must be \"starttls\", \"tls\" or \"none\"");
        }
        if !self.notify.smtp_ca_file.is_empty() && !std::path::Path::new(&self.notify.smtp_ca_file).is_file() {
            bail!("notify.smtp_ca_file {} is not a readable file", self.notify.smtp_ca_file);
        }
        self.security.policy.validate().map_err(|e| anyhow::anyhow!("security.policy: {}", e.message))?;
        Ok(())
    }

    /// The database URL, defaulting to SQLite in the data dir.
    pub fn database_url(&self) -> String {
        if self.storage.database_url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.sqlite_path().display())
        } else {
            self.storage.database_url.clone()
        }
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.storage.data_dir.join("zhongshu.db")
    }

    /// Where audit archive files go.
    pub fn audit_archive_dir(&self) -> PathBuf {
        if self.security.audit_archive_dir.is_empty() {
            self.storage.data_dir.join("audit-archive")
        } else {
            PathBuf::from(&self.security.audit_archive_dir)
        }
    }

    pub fn key_file(&self) -> PathBuf {
        if self.security.key_file.is_empty() {
            self.storage.data_dir.join("keys.txt")
        } else {
            PathBuf::from(&self.security.key_file)
        }
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_example_config_is_the_default() {
        let example = include_str!("../../../config/zhongshu.example.toml");
        assert_eq!(example, DEFAULT_TOML, "run `zhongshu config default > config/zhongshu.example.toml`");
    }

    #[test]
    fn defaults_parse_and_validate() {
        let c = Config::defaults();
        c.validate().unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.security.policy, SecurityPolicy::default(), "the documented policy is the code's default");
    }

    #[test]
    fn environment_overrides_file_values() {
        let mut c = Config::defaults();
        c.apply_env(|k| (k == "ZHONGSHU_LISTEN").then(|| "0.0.0.0:9000".to_string())).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000");
    }

    #[test]
    fn unknown_settings_are_refused() {
        let dir = store::testing::TempDir::new();
        let f = dir.0.join("c.toml");
        std::fs::write(&f, "[server]\nlisten_on = \"x\"\n").unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("unknown"), "{err:#}");
        std::fs::write(&f, "[server]\nlisten = \"127.0.0.1:9\"\n[security]\naudit_hash = \"md5\"\n").unwrap();
        assert!(Config::load(Some(&f), &Overrides::default()).is_err());
        std::fs::write(&f, "[server.tls]\ncert_file = \"/etc/zhongshu/cert.pem\"\n").unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("both cert_file and key_file"), "{err:#}");
    }
}
