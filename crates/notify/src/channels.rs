//! The transports: webhook (signed), SMTP mail, SMS through an HTTP gateway, DingTalk and WeCom
//! group robots. Each takes a rendered message and an address and reports success or why not.
//! The in-app inbox needs no transport: its delivery is the row itself.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::NotifyOptions;

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = MessageChannel)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The in-app inbox (站内信), pushed live to the web UI.
    Inapp,
    /// An HTTP POST to the configured endpoint, signed with HMAC-SM3.
    Webhook,
    Email,
    Sms,
    Dingtalk,
    Wecom,
}

impl Channel {
    pub const ALL: [Channel; 6] =
        [Channel::Inapp, Channel::Webhook, Channel::Email, Channel::Sms, Channel::Dingtalk, Channel::Wecom];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Inapp => "inapp",
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Dingtalk => "dingtalk",
            Channel::Wecom => "wecom",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// True when the platform has what this channel needs.
    pub fn configured(self, o: &NotifyOptions) -> bool {
        match self {
            Channel::Inapp => true,
            Channel::Webhook => !o.webhook_url.is_empty(),
            Channel::Email => !o.smtp_host.is_empty(),
            Channel::Sms => !o.sms_gateway_url.is_empty(),
            Channel::Dingtalk => !o.dingtalk_webhook.is_empty(),
            Channel::Wecom => !o.wecom_webhook.is_empty(),
        }
    }
}

/// What a transport sends.
pub struct Outgoing<'a> {
    pub delivery_id: &'a str,
    pub username: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub link: Option<&'a str>,
    pub urgent: bool,
}

fn client(o: &NotifyOptions) -> Result<reqwest::Client, String> {
    reqwest::Client::builder().timeout(Duration::from_secs(o.timeout_seconds.max(1))).build().map_err(|e| e.to_string())
}

async fn post_json(o: &NotifyOptions, url: &str, body: String, headers: &[(&str, String)]) -> Result<(), String> {
    let mut req = client(o)?.post(url).header("content-type", "application/json").body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("answered {status}: {}", text.chars().take(200).collect::<String>()));
    }
    // The robots answer 200 with an error code in the body.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(code) = v.get("errcode").and_then(|c| c.as_i64()).filter(|c| *c != 0)
    {
        return Err(format!("refused with errcode {code}: {}", v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("")));
    }
    Ok(())
}

/// Sends one message on one channel.
pub async fn send(o: &NotifyOptions, channel: Channel, address: Option<&str>, m: &Outgoing<'_>) -> Result<(), String> {
    let text = match m.link {
        Some(l) => format!("{}\n{}\n{}", m.title, m.body, l),
        None => format!("{}\n{}", m.title, m.body),
    };
    match channel {
        Channel::Inapp => Ok(()),
        Channel::Webhook => {
            let body = json!({"id": m.delivery_id, "recipient": m.username, "title": m.title, "body": m.body, "link": m.link, "urgent": m.urgent}).to_string();
            let ts = chrono::Utc::now().timestamp().to_string();
            let sig =
                crypto::hmac(crypto::HashAlg::Sm3, o.webhook_secret.as_bytes(), format!("{ts}.{body}").as_bytes());
            let header = format!("t={ts},sig={}", data_encoding::HEXLOWER.encode(&sig));
            post_json(o, &o.webhook_url, body, &[("x-zhongshu-signature", header)]).await
        }
        Channel::Sms => {
            let mobile = address.ok_or("the user has no mobile number")?;
            let body = json!({"mobile": mobile, "content": text.replace('\n', " "), "sign": o.sms_sign}).to_string();
            let auth = if o.sms_gateway_token.is_empty() {
                vec![]
            } else {
                vec![("authorization", format!("Bearer {}", o.sms_gateway_token))]
            };
            post_json(o, &o.sms_gateway_url, body, &auth).await
        }
        Channel::Dingtalk => {
            let mut url = o.dingtalk_webhook.clone();
            if !o.dingtalk_secret.is_empty() {
                let ts = chrono::Utc::now().timestamp_millis();
                let mac = crypto::hmac(
                    crypto::HashAlg::Sha256,
                    o.dingtalk_secret.as_bytes(),
                    format!("{ts}\n{}", o.dingtalk_secret).as_bytes(),
                );
                let sign = data_encoding::BASE64.encode(&mac);
                let sign: String = sign
                    .chars()
                    .map(|c| match c {
                        '+' => "%2B".to_string(),
                        '/' => "%2F".to_string(),
                        '=' => "%3D".to_string(),
                        c => c.to_string(),
                    })
                    .collect();
                url = format!("{url}{}timestamp={ts}&sign={sign}", if url.contains('?') { '&' } else { '?' });
            }
            let body = json!({"msgtype": "text", "text": {"content": text}, "at": {"isAtAll": m.urgent}}).to_string();
            post_json(o, &url, body, &[]).await
        }
        Channel::Wecom => {
            let body = json!({"msgtype": "text", "text": {"content": text}}).to_string();
            post_json(o, &o.wecom_webhook, body, &[]).await
        }
        Channel::Email => {
            let to = address.ok_or("the user has no e-mail address")?;
            smtp_send(o, to, m.title, &text).await
        }
    }
}

/// A small SMTP client (RFC 5321): EHLO, STARTTLS (RFC 3207) or implicit TLS as
/// `smtp_tls` says, optional AUTH PLAIN (never over plain TCP unless `smtp_tls = "none"`),
/// MAIL, RCPT, DATA. The server's certificate is checked against the system's CAs or
/// `smtp_ca_file`, and its name against `smtp_host`.
async fn smtp_send(o: &NotifyOptions, to: &str, subject: &str, text: &str) -> Result<(), String> {
    if to.contains(['\r', '\n']) || o.smtp_from.contains(['\r', '\n']) {
        return Err("invalid address".into());
    }
    let timeout = Duration::from_secs(o.timeout_seconds.max(1));
    let addr = format!("{}:{}", o.smtp_host, o.smtp_port);
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    match o.smtp_tls.as_str() {
        "tls" => {
            let tls = tls_connect(o, tcp, timeout).await?;
            let mut s = BufReader::new(tls);
            smtp_reply(&mut s, timeout, 220).await?;
            smtp_ehlo(&mut s, timeout).await?;
            smtp_deliver(&mut s, o, to, subject, text, timeout).await
        }
        "none" => {
            let mut s = BufReader::new(tcp);
            smtp_reply(&mut s, timeout, 220).await?;
            smtp_ehlo(&mut s, timeout).await?;
            smtp_deliver(&mut s, o, to, subject, text, timeout).await
        }
        _ => {
            let mut s = BufReader::new(tcp);
            smtp_reply(&mut s, timeout, 220).await?;
            let offers = smtp_ehlo(&mut s, timeout).await?;
            if !offers.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                return Err(format!(
                    "the mail server {addr} does not offer STARTTLS; use smtp_tls = \"tls\" for port 465, or \"none\" for a relay on a trusted network"
                ));
            }
            smtp_cmd(&mut s, "STARTTLS").await?;
            smtp_reply(&mut s, timeout, 220).await?;
            // Nothing may follow the server's 220 before the handshake (RFC 3207 §5).
            if !s.buffer().is_empty() {
                return Err("the mail server sent data before the TLS handshake".into());
            }
            let tls = tls_connect(o, s.into_inner(), timeout).await?;
            let mut s = BufReader::new(tls);
            smtp_ehlo(&mut s, timeout).await?;
            smtp_deliver(&mut s, o, to, subject, text, timeout).await
        }
    }
}

/// The TLS client configuration for the mail server: its CA file, else the system's CAs. Built
/// once per CA file (reading the system's store takes milliseconds); a changed file is read at
/// the next start.
fn smtp_tls_config(o: &NotifyOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    static BUILT: std::sync::Mutex<Option<std::collections::HashMap<String, Arc<rustls::ClientConfig>>>> =
        std::sync::Mutex::new(None);
    if let Some(c) = BUILT.lock().expect("tls config lock").get_or_insert_default().get(&o.smtp_ca_file) {
        return Ok(c.clone());
    }
    let config = build_smtp_tls_config(o)?;
    BUILT.lock().expect("tls config lock").get_or_insert_default().insert(o.smtp_ca_file.clone(), config.clone());
    Ok(config)
}

fn build_smtp_tls_config(o: &NotifyOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if o.smtp_ca_file.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        for c in found.certs {
            let _ = roots.add(c);
        }
    } else {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&o.smtp_ca_file)
            .map_err(|e| format!("cannot read smtp_ca_file {}: {e}", o.smtp_ca_file))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("smtp_ca_file {}: {e}", o.smtp_ca_file))?;
        for c in certs {
            roots.add(c).map_err(|e| format!("smtp_ca_file {}: {e}", o.smtp_ca_file))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates for the mail server (set smtp_ca_file)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn tls_connect(
    o: &NotifyOptions,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = rustls::pki_types::ServerName::try_from(o.smtp_host.clone())
        .map_err(|_| format!("smtp_host {} is not a valid server name", o.smtp_host))?;
    let connector = tokio_rustls::TlsConnector::from(smtp_tls_config(o)?);
    tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| "the TLS handshake with the mail server timed out".to_string())?
        .map_err(|e| format!("TLS with the mail server failed: {e}"))
}

/// Reads one (possibly multi-line) reply; answers its lines' texts when its class is `want`'s.
async fn smtp_reply<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    timeout: Duration,
    want: u16,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(timeout, s.read_line(&mut line))
            .await
            .map_err(|_| "the mail server did not answer".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the mail server closed the connection".into());
        }
        let code: u16 =
            line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| format!("unexpected answer: {}", line.trim()))?;
        lines.push(line.get(4..).unwrap_or("").trim().to_string());
        if line.as_bytes().get(3) == Some(&b'-') {
            continue; // multi-line reply
        }
        return if code / 100 == want / 100 { Ok(lines) } else { Err(format!("mail server: {}", line.trim())) };
    }
}

async fn smtp_cmd<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, line: &str) -> Result<(), String> {
    s.write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())
}

/// EHLO; answers the extensions the server offers.
async fn smtp_ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    smtp_cmd(s, "EHLO zhongshu").await?;
    let lines = smtp_reply(s, timeout, 250).await?;
    Ok(lines.into_iter().skip(1).collect())
}

async fn smtp_deliver<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    o: &NotifyOptions,
    to: &str,
    subject: &str,
    text: &str,
    timeout: Duration,
) -> Result<(), String> {
    if !o.smtp_username.is_empty() {
        let token = data_encoding::BASE64.encode(format!("\0{}\0{}", o.smtp_username, o.smtp_password).as_bytes());
        smtp_cmd(s, &format!("AUTH PLAIN {token}")).await?;
        smtp_reply(s, timeout, 235).await?;
    }
    smtp_cmd(s, &format!("MAIL FROM:<{}>", o.smtp_from)).await?;
    smtp_reply(s, timeout, 250).await?;
    smtp_cmd(s, &format!("RCPT TO:<{to}>")).await?;
    smtp_reply(s, timeout, 250).await?;
    smtp_cmd(s, "DATA").await?;
    smtp_reply(s, timeout, 354).await?;
    let subject_b64 = data_encoding::BASE64.encode(subject.as_bytes());
    let body_b64 = data_encoding::BASE64.encode(text.as_bytes());
    let wrapped: Vec<String> =
        body_b64.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    let date = chrono::Utc::now().to_rfc2822();
    let msg = format!(
        "From: <{}>\r\nTo: <{to}>\r\nSubject: =?UTF-8?B?{subject_b64}?=\r\nDate: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n.",
        o.smtp_from,
        wrapped.join("\r\n")
    );
    smtp_cmd(s, &msg).await?;
    smtp_reply(s, timeout, 250).await?;
    let _ = smtp_cmd(s, "QUIT").await;
    Ok(())
}
