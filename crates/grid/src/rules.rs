//! Automatic assignment (B2.3): rules of category owner (属主) and territory (属地).
//!
//! A rule says "events of this category (or top class, or any) in this area (or any area)
//! go to this department" — or to the event's own street / community / district office. The
//! most specific matching rule wins: the nearest area along the org tree first (so a grid's
//! rule beats its street's, which beats the city's), then the more specific category, then the
//! higher priority. With no rule, the category's owner department takes it; with no owner, the
//! dispatch centre decides.

use identity::perms::{GRID_CASE_READ, GRID_MANAGE};
use identity::{Actor, Caller};
use kernel::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spatial::{Crs, LonLat};
use store::{DbResultExt, Row};

use crate::{Grid, OrgRef};

/// An assignment rule.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub category_id: Option<String>,
    pub category_name: Option<String>,
    pub area_org_id: Option<String>,
    pub area_name: Option<String>,
    pub department_id: Option<String>,
    pub department_name: Option<String>,
    /// `street`, `community` or `district`: the event's own office of that level.
    pub target_level: Option<String>,
    pub priority: i64,
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub name: String,
    pub category_id: Option<String>,
    pub area_org_id: Option<String>,
    pub department_id: Option<String>,
    pub target_level: Option<String>,
    #[serde(default)]
    pub priority: i64,
    pub enabled: Option<bool>,
}

/// "Where would this event go?"
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteQuery {
    pub category_id: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub crs: Option<String>,
    /// The grid, when there is no position.
    pub grid_id: Option<String>,
}

/// Where an event would go, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Route {
    pub department: Option<OrgRef>,
    pub grid: Option<OrgRef>,
    /// The rule that decided, if one did.
    pub rule: Option<Rule>,
    /// `rule`, `owner` (the category's owner department) or `dispatcher` (nobody: the dispatch centre decides).
    pub by: String,
    /// Why, in Chinese, for the people reading it (shown as is in the case timeline).
    pub explanation: String,
}

const COLUMNS: &str = "r.id, r.name, r.category_id, c.name, r.area_org_id, a.name, r.department_id, d.name, r.target_level, r.priority, r.enabled";
const FROM: &str = "FROM grid_rules r LEFT JOIN grid_categories c ON c.id = r.category_id
    LEFT JOIN orgs a ON a.id = r.area_org_id LEFT JOIN orgs d ON d.id = r.department_id";

fn from_row(r: &store::AnyRow) -> Rule {
    Rule {
        id: r.get(0),
        name: r.get(1),
        category_id: r.get(2),
        category_name: r.get(3),
        area_org_id: r.get(4),
        area_name: r.get(5),
        department_id: r.get(6),
        department_name: r.get(7),
        target_level: r.get(8),
        priority: r.get(9),
        enabled: r.get::<i64, _>(10) != 0,
    }
}

impl Grid {
    pub async fn rules(&self, caller: &Caller) -> Result<Vec<Rule>> {
        caller.require(GRID_CASE_READ).or_else(|_| caller.require(GRID_MANAGE))?;
        let sql = format!("SELECT {COLUMNS} {FROM} ORDER BY r.priority DESC, r.created_at");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db().reader()).await.db()?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn rule(&self, id: &str) -> Result<Rule> {
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE r.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db().reader()).await.db()?;
        row.map(|r| from_row(&r)).ok_or_else(|| Error::not_found("rule"))
    }

    /// Creates (`id` = None) or replaces a rule.
    pub async fn save_rule(&self, caller: &Caller, actor: &Actor, id: Option<&str>, input: RuleInput) -> Result<Rule> {
        caller.require(GRID_MANAGE)?;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::validation("the rule name must be 1-100 characters"));
        }
        let category = input.category_id.filter(|c| !c.is_empty());
        if let Some(c) = &category {
            self.category(c).await?;
        }
        let area = input.area_org_id.filter(|c| !c.is_empty());
        if let Some(a) = &area {
            self.org(a).await.map_err(|_| Error::validation("the area does not exist"))?;
        }
        let dept = input.department_id.filter(|c| !c.is_empty());
        let level = input.target_level.filter(|c| !c.is_empty());
        match (&dept, &level) {
            (Some(d), None) => {
                let o = self.org(d).await.map_err(|_| Error::validation("the department does not exist"))?;
                if o.kind == "grid" {
                    return Err(Error::validation("events go to departments or offices, not to a grid"));
                }
            }
            (None, Some(l)) if ["street", "community", "district"].contains(&l.as_str()) => {}
            (None, Some(_)) => return Err(Error::validation("target_level must be street, community or district")),
            _ => {
                return Err(Error::validation(
                    "give either a department or a target level (the event's own office), not both",
                ));
            }
        }
        if !(-1000..=1000).contains(&input.priority) {
            return Err(Error::validation("priority must be between -1000 and 1000"));
        }
        if let Some(id) = id {
            self.rule(id).await?;
        }
        let now = self.now();
        let rid = id.map(String::from).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut tx = self.db().begin().await?;
        if id.is_some() {
            sqlx::query(
                "UPDATE grid_rules SET name = $2, category_id = $3, area_org_id = $4, department_id = $5, target_level = $6,
                    priority = $7, enabled = $8, updated_at = $9 WHERE id = $1",
            )
        } else {
            sqlx::query(
                "INSERT INTO grid_rules (id, name, category_id, area_org_id, department_id, target_level, priority, enabled, updated_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
        }
        .bind(&rid)
        .bind(&name)
        .bind(&category)
        .bind(&area)
        .bind(&dept)
        .bind(&level)
        .bind(input.priority)
        .bind(input.enabled.unwrap_or(true) as i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        let entry = actor
            .entry(now, if id.is_some() { "grid.rule.update" } else { "grid.rule.create" })
            .object("grid_rule", &rid);
        self.identity().audit_log().append(&mut tx, &entry.detail(json!({"name": name}))).await?;
        tx.commit().await.db()?;
        self.refs().rules.clear();
        self.rule(&rid).await
    }

    pub async fn delete_rule(&self, caller: &Caller, actor: &Actor, id: &str) -> Result<()> {
        caller.require(GRID_MANAGE)?;
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let n =
            sqlx::query("DELETE FROM grid_rules WHERE id = $1").bind(id).execute(&mut *tx).await.db()?.rows_affected();
        if n == 0 {
            return Err(Error::not_found("rule"));
        }
        self.identity()
            .audit_log()
            .append(&mut tx, &actor.entry(now, "grid.rule.delete").object("grid_rule", id))
            .await?;
        tx.commit().await.db()?;
        self.refs().rules.clear();
        Ok(())
    }

    /// "Where would this event go?" for the rule editor.
    pub async fn test_route(&self, caller: &Caller, q: &RouteQuery) -> Result<Route> {
        caller.require(GRID_CASE_READ)?;
        let grid = match (q.lon, q.lat, &q.grid_id) {
            (Some(lon), Some(lat), _) => {
                let crs = q.crs.as_deref().map(Crs::parse).transpose()?.unwrap_or_default();
                let p = spatial::coord::to_wgs84(crs, LonLat::checked(lon, lat)?);
                Some(self.grid_at(p).await?.ok_or_else(|| crate::areas::outside(p))?)
            }
            (_, _, Some(g)) => Some(self.org(g).await?.id),
            _ => None,
        };
        self.route(&q.category_id, grid.as_deref()).await
    }

    /// The enabled rules, cached (see `RefCache`).
    async fn enabled_rules(&self) -> Result<std::sync::Arc<Vec<Rule>>> {
        let load = || async {
            let sql = format!("SELECT {COLUMNS} {FROM} WHERE r.enabled = 1");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db().reader()).await.db()?;
            Ok(std::sync::Arc::new(rows.iter().map(from_row).collect::<Vec<_>>()))
        };
        self.refs().rules.get(self.now(), load).await
    }

    /// Decides the department for an event of `category_id` in `grid_id`.
    pub async fn route(&self, category_id: &str, grid_id: Option<&str>) -> Result<Route> {
        let cat = self.category(category_id).await?;
        let lineage = match grid_id {
            Some(g) => self.lineage(g).await?,
            None => Vec::new(),
        };
        let grid = lineage.first().cloned();
        let rules = self.enabled_rules().await?;
        // Specificity: (area distance along the tree — smaller is nearer, any-area last),
        // (category: own 0, top class 1, any 2), priority (higher first).
        let mut best: Option<((usize, u8, i64), Rule)> = None;
        for r in rules.iter() {
            let area_rank = match &r.area_org_id {
                None => usize::MAX - 1,
                Some(a) => match lineage.iter().position(|o| &o.id == a) {
                    Some(p) => p,
                    None => continue,
                },
            };
            let cat_rank = match &r.category_id {
                None => 2u8,
                Some(c) if *c == cat.id => 0,
                Some(c) if Some(c) == cat.parent_id.as_ref() => 1,
                Some(_) => continue,
            };
            // A rule for the event's own office needs a grid to find that office.
            if r.target_level.is_some() && grid.is_none() {
                continue;
            }
            let key = (area_rank, cat_rank, -r.priority);
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, r.clone()));
            }
        }
        if let Some((_, rule)) = best {
            let dept = match (&rule.department_id, &rule.target_level) {
                (Some(d), _) => Some(self.org(d).await?),
                (None, Some(level)) => lineage.iter().find(|o| &o.kind == level).cloned(),
                _ => None,
            };
            if let Some(d) = dept {
                let explanation = format!(
                    "按规则“{}”（{}，{}）派往{}",
                    rule.name,
                    rule.category_name.clone().unwrap_or_else(|| "任意分类".into()),
                    rule.area_name.clone().unwrap_or_else(|| "任意区域".into()),
                    d.name
                );
                return Ok(Route { department: Some(d), grid, rule: Some(rule), by: "rule".into(), explanation });
            }
        }
        if let Some(owner) = &cat.owner_org_id {
            let d = self.org(owner).await?;
            let explanation = format!("无匹配规则，按属主派往{}（{}的主管部门）", d.name, cat.name);
            return Ok(Route { department: Some(d), grid, rule: None, by: "owner".into(), explanation });
        }
        Ok(Route {
            department: None,
            grid,
            rule: None,
            by: "dispatcher".into(),
            explanation: format!("无匹配规则，{}未设主管部门，由指挥中心确定处置部门", cat.name),
        })
    }
}
