//! Photos of cases: uploaded first (type checked by content, size limited), then linked to a case
//! by the intake or the action that uses them, and served only to those who may see the case.

use identity::perms::{GRID_CASE_READ, GRID_CASE_REPORT};
use identity::{Actor, Caller};
use kernel::{Error, Result};
use serde::Serialize;
use serde_json::json;
use store::{DbResultExt, Row, Tx};

use crate::Grid;

/// An attachment as listed with its case.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attachment {
    pub id: String,
    pub case_id: Option<String>,
    /// report, handle or verify: the step that added it.
    pub stage: Option<String>,
    pub name: String,
    pub mime: String,
    pub size: i64,
    pub uploaded_by: String,
    pub created_at: i64,
}

/// Unlinked uploads older than this are removed.
pub const UNLINKED_TTL_MS: i64 = 24 * 3_600_000;
/// At most this many attachments per step.
pub const MAX_PER_STEP: usize = 9;

/// The image type of `data` by its first bytes (never by the name or the declared type).
pub fn sniff(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

const COLUMNS: &str = "id, case_id, stage, name, mime, size, uploaded_by, created_at";

fn from_row(r: &store::AnyRow) -> Attachment {
    Attachment {
        id: r.get(0),
        case_id: r.get(1),
        stage: r.get(2),
        name: r.get(3),
        mime: r.get(4),
        size: r.get(5),
        uploaded_by: r.get(6),
        created_at: r.get(7),
    }
}

impl Grid {
    /// Stores an uploaded photo (JPEG, PNG or WebP, at most `[grid] max_attachment_bytes`).
    pub async fn upload(&self, caller: &Caller, actor: &Actor, name: &str, data: &[u8]) -> Result<Attachment> {
        caller.require(GRID_CASE_REPORT).or_else(|_| caller.require(identity::perms::GRID_CASE_WORK))?;
        let max = self.options().max_attachment_bytes;
        if data.is_empty() {
            return Err(Error::validation("the file is empty"));
        }
        if data.len() > max {
            return Err(Error::validation(format!(
                "the file is {} KiB; at most {} KiB (phones can send a smaller photo)",
                data.len() / 1024,
                max / 1024
            )));
        }
        let mime = sniff(data).ok_or_else(|| Error::validation("only photos can be attached: JPEG, PNG or WebP"))?;
        let name: String =
            name.trim().chars().filter(|c| !c.is_control() && !matches!(c, '/' | '\\')).take(100).collect();
        let name = if name.is_empty() { "photo".to_string() } else { name };
        let digest = data_encoding::HEXLOWER.encode(&crypto::hash::digest(crypto::hash::HashAlg::Sm3, data));
        let id = uuid::Uuid::now_v7().to_string();
        let now = self.now();
        let mut tx = self.db().begin().await?;
        // Unlinked uploads of a day ago are abandoned forms: remove them on the way.
        sqlx::query("DELETE FROM grid_attachments WHERE case_id IS NULL AND created_at < $1")
            .bind(now - UNLINKED_TTL_MS)
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query(
            "INSERT INTO grid_attachments (id, name, mime, size, sm3, data, uploaded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&name)
        .bind(mime)
        .bind(data.len() as i64)
        .bind(&digest)
        .bind(data.to_vec())
        .bind(&caller.username)
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        let entry = actor
            .entry(now, "grid.attachment.upload")
            .object("grid_attachment", &id)
            .detail(json!({"size": data.len(), "sm3": digest}));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        Ok(Attachment {
            id,
            case_id: None,
            stage: None,
            name,
            mime: mime.into(),
            size: data.len() as i64,
            uploaded_by: caller.username.clone(),
            created_at: now,
        })
    }

    /// Links the uploader's unlinked uploads to a case, in the transaction of the step using them.
    pub(crate) async fn link(tx: &mut Tx, uploader: &str, case_id: &str, stage: &str, ids: &[String]) -> Result<()> {
        if ids.len() > MAX_PER_STEP {
            return Err(Error::validation(format!("at most {MAX_PER_STEP} photos per step")));
        }
        for id in ids {
            let n = sqlx::query(
                "UPDATE grid_attachments SET case_id = $2, stage = $3 WHERE id = $1 AND case_id IS NULL AND uploaded_by = $4",
            )
            .bind(id)
            .bind(case_id)
            .bind(stage)
            .bind(uploader)
            .execute(&mut **tx)
            .await
            .db()?
            .rows_affected();
            if n != 1 {
                return Err(Error::validation(format!("attachment {id} is not an upload of yours waiting to be used")));
            }
        }
        Ok(())
    }

    /// The attachments of a case (the caller must see the case).
    pub async fn attachments(&self, case_id: &str) -> Result<Vec<Attachment>> {
        let sql = format!("SELECT {COLUMNS} FROM grid_attachments WHERE case_id = $1 ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(case_id).fetch_all(self.db().reader()).await.db()?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// The bytes of an attachment: the uploader's own, or one of a case the caller may see.
    pub async fn attachment_data(&self, caller: &Caller, id: &str) -> Result<(String, Vec<u8>)> {
        caller.require(GRID_CASE_READ).or_else(|_| caller.require(GRID_CASE_REPORT))?;
        let row = sqlx::query("SELECT case_id, uploaded_by, mime, data FROM grid_attachments WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("attachment"))?;
        let case_id: Option<String> = row.get(0);
        let uploader: String = row.get(1);
        let allowed = match &case_id {
            _ if uploader == caller.username => true,
            Some(c) => self.case(caller, c).await.is_ok(),
            None => false,
        };
        if !allowed {
            return Err(Error::not_found("attachment"));
        }
        Ok((row.get(2), row.get(3)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn images_are_known_by_their_bytes() {
        assert_eq!(super::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), Some("image/jpeg"));
        assert_eq!(super::sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(super::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(super::sniff(b"<svg xmlns=..."), None);
        assert_eq!(super::sniff(b"MZ\x90\0"), None);
    }
}
