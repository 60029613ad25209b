use serde::Serialize;
use store::{AnyRow, Row};

/// How a request reached the platform (DJ-AU-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[schema(as = AuditChannel)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The web UI or API with a user session.
    #[default]
    Web,
    /// A connected application with signed requests.
    Api,
    /// The command line on the server.
    Cli,
    /// The platform itself (background work).
    System,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Api => "api",
            Channel::Cli => "cli",
            Channel::System => "system",
        }
    }

    pub fn parse(s: &str) -> Channel {
        match s {
            "api" => Channel::Api,
            "cli" => Channel::Cli,
            "system" => Channel::System,
            _ => Channel::Web,
        }
    }
}

/// The outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Success,
    Failure,
    Denied,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
            AuditResult::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<AuditResult> {
        match s {
            "success" => Some(AuditResult::Success),
            "failure" => Some(AuditResult::Failure),
            "denied" => Some(AuditResult::Denied),
            _ => None,
        }
    }
}

/// One audited event, as written.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at: i64,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_org: Option<String>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub channel: Channel,
    /// Dotted action name, e.g. `user.create`, `auth.login`.
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub result: AuditResult,
    /// Why it failed or was denied (an error code), or a reason the actor gave.
    pub reason: Option<String>,
    /// Extra facts as JSON text (never unmasked personal data).
    pub detail: Option<String>,
}

impl AuditEntry {
    /// A successful entry for `action` at `at` on `channel`, with nothing else filled in.
    pub fn new(at: i64, action: &str, channel: Channel) -> AuditEntry {
        AuditEntry {
            at,
            actor_id: None,
            actor_name: None,
            actor_org: None,
            source_ip: None,
            request_id: None,
            channel,
            action: action.into(),
            object_type: None,
            object_id: None,
            result: AuditResult::Success,
            reason: None,
            detail: None,
        }
    }

    pub fn object(mut self, kind: &str, id: impl Into<String>) -> Self {
        self.object_type = Some(kind.into());
        self.object_id = Some(id.into());
        self
    }

    pub fn result(mut self, result: AuditResult, reason: Option<String>) -> Self {
        self.result = result;
        self.reason = reason;
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// The unambiguous byte encoding hashed into the chain and MAC: each field length-prefixed,
    /// absent fields marked, so no two different records encode alike.
    pub fn canonical_bytes(&self, record_id: Option<i64>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.canonical_into(record_id, &mut out);
        out
    }

    /// [`AuditEntry::canonical_bytes`] into a reused buffer (cleared first).
    pub fn canonical_into(&self, record_id: Option<i64>, out: &mut Vec<u8>) {
        out.clear();
        encode_canonical(
            out,
            record_id,
            self.at,
            [
                self.actor_id.as_deref(),
                self.actor_name.as_deref(),
                self.actor_org.as_deref(),
                self.source_ip.as_deref(),
                self.request_id.as_deref(),
                Some(self.channel.as_str()),
                Some(&self.action),
                self.object_type.as_deref(),
                self.object_id.as_deref(),
                Some(self.result.as_str()),
                self.reason.as_deref(),
                self.detail.as_deref(),
            ]
            .map(|f| f.map(str::as_bytes)),
        );
    }
}

/// Appends the canonical encoding of a record to `out`: the record id (or the absent marker), the
/// time in decimal, then the twelve text fields in [`RECORD_COLUMNS`] order from `actor_id` to
/// `detail` (channel and result as stored). Verification encodes straight from database rows with it.
pub(crate) fn encode_canonical(out: &mut Vec<u8>, record_id: Option<i64>, at: i64, text: [Option<&[u8]>; 12]) {
    let mut put = |v: Option<&[u8]>| crypto::hash::put_field(out, v);
    let mut id = itoa::Buffer::new();
    put(record_id.map(|i| id.format(i).as_bytes()));
    let mut time = itoa::Buffer::new();
    put(Some(time.format(at).as_bytes()));
    for field in text {
        put(field);
    }
}

/// A stored record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    /// Position in the chain; `None` until sealed (normally within a second).
    pub seq: Option<i64>,
    #[serde(flatten)]
    pub entry: AuditEntry,
    #[serde(skip)]
    pub digest: String,
    #[serde(skip)]
    pub mac: String,
}

pub(crate) const RECORD_COLUMNS: &str = "r.id, r.at, r.actor_id, r.actor_name, r.actor_org, r.source_ip, r.request_id, \
     r.channel, r.action, r.object_type, r.object_id, r.result, r.reason, r.detail, r.digest, r.mac";

impl AuditRecord {
    /// Reads [`RECORD_COLUMNS`] starting at column `base`.
    pub(crate) fn from_row(row: &AnyRow, base: usize, seq: Option<i64>) -> AuditRecord {
        let s = |i: usize| row.get::<Option<String>, _>(base + i);
        AuditRecord {
            id: row.get(base),
            seq,
            entry: AuditEntry {
                at: row.get(base + 1),
                actor_id: s(2),
                actor_name: s(3),
                actor_org: s(4),
                source_ip: s(5),
                request_id: s(6),
                channel: Channel::parse(&row.get::<String, _>(base + 7)),
                action: row.get(base + 8),
                object_type: s(9),
                object_id: s(10),
                result: AuditResult::parse(&row.get::<String, _>(base + 11)).unwrap_or(AuditResult::Failure),
                reason: s(12),
                detail: s(13),
            },
            digest: row.get(base + 14),
            mac: row.get(base + 15),
        }
    }
}

/// The chain hash of the record `record_id` at `seq` following `prev_hash`: it links the record's
/// digest (its content) and MAC, so neither can change without breaking the chain.
pub(crate) fn chain_hash_bytes(
    alg: crypto::HashAlg,
    prev_hash: &[u8],
    seq: i64,
    record_id: i64,
    digest: &[u8],
    mac: &[u8],
) -> [u8; 32] {
    let mut h = crypto::hash::Hasher::new(alg);
    h.update(prev_hash);
    h.update(&seq.to_be_bytes());
    h.update(&record_id.to_be_bytes());
    h.update(digest);
    h.update(mac);
    h.finish()
}

/// [`chain_hash_bytes`] as lowercase hex, as stored.
pub(crate) fn chain_hash(
    alg: crypto::HashAlg,
    prev_hash: &str,
    seq: i64,
    record_id: i64,
    digest: &str,
    mac: &str,
) -> String {
    crypto::hash::to_hex(&chain_hash_bytes(
        alg,
        prev_hash.as_bytes(),
        seq,
        record_id,
        digest.as_bytes(),
        mac.as_bytes(),
    ))
}

/// The hash before the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
