//! The two-level event category taxonomy (top classes and categories), each category with its
//! owner department (属主), urgency levels and per-stage time limits; and the suggested category
//! for free text, from keywords and from what dispatchers chose before for similar text.

use std::collections::HashMap;

use identity::perms::{GRID_CASE_READ, GRID_MANAGE};
use identity::{Actor, Caller};
use kernel::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{DbResultExt, Row, Tx};

use crate::taxonomy::TAXONOMY;
use crate::{Grid, to_json};

pub const STAGES: [&str; 4] = ["accept", "dispatch", "handle", "verify"];
pub const URGENCIES: [&str; 3] = ["normal", "urgent", "critical"];

/// A category (or a top class, when `parent_id` is empty).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Category {
    pub id: String,
    pub parent_id: Option<String>,
    pub code: String,
    pub name: String,
    /// `component` (部件), `event` (事件) or `governance` (综治).
    pub kind: String,
    pub owner_org_id: Option<String>,
    pub owner_org_name: Option<String>,
    pub urgencies: Vec<String>,
    /// Per-stage time limits (accept, dispatch, handle, verify) as ISO 8601 durations counted
    /// on the working-day calendar, e.g. `PT1H`, `P2D`.
    #[schema(value_type = Object)]
    pub limits: serde_json::Map<String, Value>,
    pub keywords: String,
    pub sort: i64,
    pub enabled: bool,
}

/// Editing a category.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryInput {
    pub parent_id: Option<String>,
    pub code: String,
    pub name: String,
    pub kind: Option<String>,
    pub owner_org_id: Option<String>,
    pub urgencies: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub limits: Option<serde_json::Map<String, Value>>,
    pub keywords: Option<String>,
    pub sort: Option<i64>,
    pub enabled: Option<bool>,
}

/// A suggested category with its score and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    pub category: Category,
    pub score: f64,
    /// The keywords found, or `learned` when dispatchers chose it for similar text.
    pub reasons: Vec<String>,
}

const COLUMNS: &str = "c.id, c.parent_id, c.code, c.name, c.kind, c.owner_org_id, o.name, c.urgencies, c.limits, c.keywords, c.sort, c.enabled";
const FROM: &str = "FROM grid_categories c LEFT JOIN orgs o ON o.id = c.owner_org_id";

fn from_row(r: &store::AnyRow) -> Category {
    Category {
        id: r.get(0),
        parent_id: r.get(1),
        code: r.get(2),
        name: r.get(3),
        kind: r.get(4),
        owner_org_id: r.get(5),
        owner_org_name: r.get(6),
        urgencies: serde_json::from_str(&r.get::<String, _>(7)).unwrap_or_default(),
        limits: serde_json::from_str(&r.get::<String, _>(8)).unwrap_or_default(),
        keywords: r.get(9),
        sort: r.get(10),
        enabled: r.get::<i64, _>(11) != 0,
    }
}

/// Inserts the shipped taxonomy into an empty table.
pub(crate) async fn seed_taxonomy(g: &Grid) -> Result<()> {
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM grid_categories").fetch_one(g.db().reader()).await.db()?.get(0);
    if n > 0 {
        return Ok(());
    }
    let now = g.now();
    let mut tx = g.db().begin().await?;
    for (ti, top) in TAXONOMY.iter().enumerate() {
        let limits = to_json(
            &json!({"accept": top.limits[0], "dispatch": top.limits[1], "handle": top.limits[2], "verify": top.limits[3]}),
        )?;
        let top_id = uuid::Uuid::now_v7().to_string();
        insert(&mut tx, &top_id, None, top.code, top.name, top.kind, &limits, "", ti as i64, now).await?;
        for (li, (code, name, kw)) in top.leaves.iter().enumerate() {
            let id = uuid::Uuid::now_v7().to_string();
            insert(&mut tx, &id, Some(&top_id), code, name, top.kind, &limits, kw, li as i64, now).await?;
        }
    }
    tx.commit().await.db()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    tx: &mut Tx,
    id: &str,
    parent: Option<&str>,
    code: &str,
    name: &str,
    kind: &str,
    limits: &str,
    keywords: &str,
    sort: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO grid_categories (id, parent_id, code, name, kind, urgencies, limits, keywords, sort, enabled, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)",
    )
    .bind(id)
    .bind(parent)
    .bind(code)
    .bind(name)
    .bind(kind)
    .bind(r#"["normal","urgent","critical"]"#)
    .bind(limits)
    .bind(keywords)
    .bind(sort)
    .bind(now)
    .execute(&mut **tx)
    .await
    .db()?;
    Ok(())
}

/// Splits text into the tokens the suggestion learns on: CJK character pairs and ASCII words.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace() && !c.is_ascii_punctuation()).collect();
    let mut word = String::new();
    for w in chars.windows(2) {
        if !w[0].is_ascii() && !w[1].is_ascii() {
            out.push(w.iter().collect());
        }
    }
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.sort();
    out.dedup();
    out.truncate(200);
    out
}

impl Grid {
    /// Every category, top classes first, in display order.
    pub async fn categories(&self, caller: &Caller) -> Result<Vec<Category>> {
        caller.require(GRID_CASE_READ).or_else(|_| caller.require(GRID_MANAGE))?;
        Ok(self.all_categories().await?.as_ref().clone())
    }

    /// Every category, cached (see `RefCache`).
    pub(crate) async fn all_categories(&self) -> Result<std::sync::Arc<Vec<Category>>> {
        let load = || async {
            let sql = format!("SELECT {COLUMNS} {FROM} ORDER BY c.parent_id IS NOT NULL, c.sort, c.code");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db().reader()).await.db()?;
            Ok(std::sync::Arc::new(rows.iter().map(from_row).collect::<Vec<_>>()))
        };
        self.refs().categories.get(self.now(), load).await
    }

    pub async fn category(&self, id: &str) -> Result<Category> {
        if let Some(c) = self.all_categories().await?.iter().find(|c| c.id == id) {
            return Ok(c.clone());
        }
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE c.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db().reader()).await.db()?;
        row.map(|r| from_row(&r)).ok_or_else(|| Error::validation(format!("unknown category '{id}'")))
    }

    pub async fn category_by_code(&self, code: &str) -> Result<Category> {
        if let Some(c) = self.all_categories().await?.iter().find(|c| c.code == code) {
            return Ok(c.clone());
        }
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE c.code = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(code).fetch_optional(self.db().reader()).await.db()?;
        row.map(|r| from_row(&r)).ok_or_else(|| Error::validation(format!("unknown category '{code}'")))
    }

    /// Creates (`id` = None) or updates a category.
    pub async fn save_category(
        &self,
        caller: &Caller,
        actor: &Actor,
        id: Option<&str>,
        input: CategoryInput,
    ) -> Result<Category> {
        caller.require(GRID_MANAGE)?;
        let code = input.code.trim().to_string();
        let name = input.name.trim().to_string();
        if code.is_empty()
            || code.len() > 32
            || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::validation("the code must be 1-32 letters, digits, '-' or '_'"));
        }
        if name.is_empty() || name.chars().count() > 50 {
            return Err(Error::validation("the name must be 1-50 characters"));
        }
        let existing = match id {
            Some(id) => Some(self.category(id).await.map_err(|_| Error::not_found("category"))?),
            None => None,
        };
        let parent = match input.parent_id.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                let parent = self.category(p).await?;
                if parent.parent_id.is_some() {
                    return Err(Error::validation("categories have two levels: the parent must be a top class"));
                }
                if Some(p) == id {
                    return Err(Error::validation("a category cannot be its own parent"));
                }
                Some(parent)
            }
            None => None,
        };
        let kind = input
            .kind
            .or_else(|| parent.as_ref().map(|p| p.kind.clone()))
            .or_else(|| existing.as_ref().map(|e| e.kind.clone()))
            .unwrap_or_else(|| "event".into());
        if !["component", "event", "governance"].contains(&kind.as_str()) {
            return Err(Error::validation("kind must be component, event or governance"));
        }
        let urgencies = input
            .urgencies
            .or_else(|| existing.as_ref().map(|e| e.urgencies.clone()))
            .unwrap_or_else(|| URGENCIES.iter().map(|s| s.to_string()).collect());
        if urgencies.is_empty() || urgencies.iter().any(|u| !URGENCIES.contains(&u.as_str())) {
            return Err(Error::validation("urgencies must be a non-empty list of normal, urgent, critical"));
        }
        let limits = input
            .limits
            .or_else(|| existing.as_ref().map(|e| e.limits.clone()))
            .or_else(|| parent.as_ref().map(|p| p.limits.clone()))
            .unwrap_or_default();
        let calendar = kernel::WorkCalendar::default();
        for stage in STAGES {
            let v = limits.get(stage).and_then(Value::as_str).ok_or_else(|| {
                Error::validation(format!(
                    "the time limit for stage '{stage}' is missing (an ISO 8601 duration such as PT2H or P1D)"
                ))
            })?;
            if !v.starts_with('P') {
                return Err(Error::validation(format!(
                    "the time limit for '{stage}' must be a duration such as PT2H or P1D"
                )));
            }
            flow::timer::deadline(v, 0, &calendar)
                .map_err(|e| Error::validation(format!("the time limit for '{stage}': {e}")))?;
        }
        if let Some(k) = limits.keys().find(|k| !STAGES.contains(&k.as_str())) {
            return Err(Error::validation(format!("unknown stage '{k}' in the time limits")));
        }
        if let Some(o) = input.owner_org_id.as_deref().filter(|o| !o.is_empty()) {
            self.org(o).await.map_err(|_| Error::validation("the owner department does not exist"))?;
        }
        let keywords =
            input.keywords.unwrap_or_else(|| existing.as_ref().map(|e| e.keywords.clone()).unwrap_or_default());
        if keywords.chars().count() > 1000 {
            return Err(Error::validation("keywords must be at most 1000 characters"));
        }
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let dup = sqlx::query("SELECT id FROM grid_categories WHERE code = $1")
            .bind(&code)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if let Some(d) = dup
            && Some(d.get::<String, _>(0).as_str()) != id
        {
            return Err(Error::conflict(format!("the code {code} is taken")));
        }
        let new_id = id.map(String::from).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let owner = input
            .owner_org_id
            .filter(|o| !o.is_empty())
            .or_else(|| existing.as_ref().and_then(|e| e.owner_org_id.clone()));
        let enabled = input.enabled.unwrap_or_else(|| existing.as_ref().is_none_or(|e| e.enabled));
        let sort = input.sort.unwrap_or_else(|| existing.as_ref().map(|e| e.sort).unwrap_or(0));
        if existing.is_some() {
            sqlx::query(
                "UPDATE grid_categories SET parent_id = $2, code = $3, name = $4, kind = $5, owner_org_id = $6, urgencies = $7,
                    limits = $8, keywords = $9, sort = $10, enabled = $11, updated_at = $12 WHERE id = $1",
            )
        } else {
            sqlx::query(
                "INSERT INTO grid_categories (id, parent_id, code, name, kind, owner_org_id, urgencies, limits, keywords, sort, enabled, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
        }
        .bind(&new_id)
        .bind(parent.as_ref().map(|p| p.id.clone()))
        .bind(&code)
        .bind(&name)
        .bind(&kind)
        .bind(&owner)
        .bind(to_json(&urgencies)?)
        .bind(to_json(&limits)?)
        .bind(&keywords)
        .bind(sort)
        .bind(enabled as i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        let entry = actor
            .entry(now, if existing.is_some() { "grid.category.update" } else { "grid.category.create" })
            .object("grid_category", &new_id);
        self.identity().audit_log().append(&mut tx, &entry.detail(json!({"code": code, "name": name}))).await?;
        tx.commit().await.db()?;
        self.refs().categories.clear();
        self.category(&new_id).await
    }

    /// Suggests categories for free text: keywords found (longer keywords weigh more) plus what
    /// dispatchers chose before for texts sharing its character pairs. Best first, at most 3.
    pub async fn suggest(&self, caller: &Caller, text: &str) -> Result<Vec<Suggestion>> {
        caller.require(GRID_CASE_READ)?;
        let all = self.categories(caller).await?;
        let mut scores: HashMap<String, (f64, Vec<String>)> = HashMap::new();
        for c in all.iter().filter(|c| c.parent_id.is_some() && c.enabled) {
            for kw in c.keywords.split([',', '，', ' ']).map(str::trim).filter(|k| !k.is_empty()) {
                if text.contains(kw) {
                    let e = scores.entry(c.id.clone()).or_default();
                    e.0 += kw.chars().count() as f64;
                    e.1.push(kw.to_string());
                }
            }
            if text.contains(c.name.as_str()) {
                let e = scores.entry(c.id.clone()).or_default();
                e.0 += c.name.chars().count() as f64 + 1.0;
                e.1.push(c.name.clone());
            }
        }
        let toks = tokens(text);
        if !toks.is_empty() {
            let marks: Vec<String> = (1..=toks.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT token, category_id, hits FROM grid_category_learning WHERE token IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for t in &toks {
                q = q.bind(t.as_str());
            }
            let rows = q.fetch_all(self.db().reader()).await.db()?;
            let mut per_token: HashMap<String, Vec<(String, i64)>> = HashMap::new();
            for r in rows {
                per_token.entry(r.get(0)).or_default().push((r.get(1), r.get(2)));
            }
            for hits in per_token.values() {
                let total: i64 = hits.iter().map(|h| h.1).sum();
                for (cat, n) in hits {
                    let e = scores.entry(cat.clone()).or_default();
                    // Each shared pair adds up to one point, split by how often each category was chosen.
                    e.0 += *n as f64 / total as f64;
                    if !e.1.iter().any(|r| r == "learned") {
                        e.1.push("learned".into());
                    }
                }
            }
        }
        let mut ranked: Vec<(String, f64, Vec<String>)> = scores.into_iter().map(|(k, (s, r))| (k, s, r)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let by_id: HashMap<&str, &Category> = all.iter().map(|c| (c.id.as_str(), c)).collect();
        Ok(ranked
            .into_iter()
            .filter_map(|(id, score, reasons)| {
                by_id.get(id.as_str()).map(|c| Suggestion {
                    category: (*c).clone(),
                    score: (score * 100.0).round() / 100.0,
                    reasons,
                })
            })
            .take(3)
            .collect())
    }

    /// Remembers that a dispatcher filed `text` under `category` (called when a case is accepted).
    pub(crate) async fn learn(tx: &mut Tx, text: &str, category: &str) -> Result<()> {
        for t in tokens(text) {
            let n =
                sqlx::query("UPDATE grid_category_learning SET hits = hits + 1 WHERE token = $1 AND category_id = $2")
                    .bind(&t)
                    .bind(category)
                    .execute(&mut **tx)
                    .await
                    .db()?
                    .rows_affected();
            if n == 0 {
                sqlx::query("INSERT INTO grid_category_learning (token, category_id, hits) VALUES ($1, $2, 1)")
                    .bind(&t)
                    .bind(category)
                    .execute(&mut **tx)
                    .await
                    .db()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_character_pairs_and_words() {
        let t = super::tokens("井盖破损 near No.5");
        assert!(t.contains(&"井盖".to_string()));
        assert!(t.contains(&"盖破".to_string()));
        assert!(t.contains(&"near".to_string()));
        assert!(t.contains(&"no".to_string()));
    }
}
