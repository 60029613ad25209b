//! Area boundaries: GeoJSON import (checked: invalid geometry, overlaps, gaps, strays) and
//! export, the point → grid index (reloaded on every node when boundaries change), and the grid
//! workers of each grid.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use identity::perms::{GRID_AREA_READ, GRID_MANAGE, ORG_MANAGE};
use identity::{Actor, Caller};
use kernel::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use spatial::check::{GeometryProblem, check_siblings};
use spatial::geojson::FeatureProblem;
use spatial::{Crs, GridIndex, LonLat, Shape};
use store::{DbResultExt, Row};

use crate::{Grid, OrgRef, to_json};

/// How often a node looks whether another node changed the boundaries.
const RELOAD_CHECK_MS: i64 = 2_000;

/// The point → grid index as loaded, with the boundary version it reflects.
#[derive(Default)]
pub struct Loaded {
    pub version: i64,
    pub checked_at: i64,
    pub index: Option<Arc<GridIndex<String>>>,
}

/// The result of an import (or of its dry run).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Features read from the file.
    pub features: usize,
    /// Boundaries written (0 on a dry run or when refused).
    pub imported: usize,
    /// Features that could not be read, or name no known organisation.
    pub feature_problems: Vec<FeatureProblem>,
    /// Invalid polygons, overlaps, gaps and strays among siblings.
    pub geometry_problems: Vec<GeometryProblem>,
    /// Organisations the file adds to the tree (created with their boundaries; on a dry run,
    /// the ones that would be).
    pub new_orgs: Vec<NewArea>,
}

/// An organisation a boundary file adds: a feature whose code is not yet in the tree, with its
/// `name`, `level` and `parent_code` (the properties an export writes).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewArea {
    pub code: String,
    pub name: String,
    pub level: String,
    pub parent_code: String,
    /// The organisation's id once created (absent on a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Provisional ids of organisations a file adds, until they are written.
const NEW_ID: &str = "new:";

/// Options of an import.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Coordinate system of the file: wgs84 (default), cgcs2000, gcj02 or bd09.
    pub crs: Option<String>,
    /// Check only; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Import even though overlaps or gaps were found (invalid polygons are never imported).
    #[serde(default)]
    pub accept_overlaps: bool,
    /// Create the organisations the file names that are not yet in the tree, from each such
    /// feature's `name`, `level` (default `grid`) and `parent_code`. Grids need `grid.manage`
    /// over their parent; other levels need `org.manage`.
    #[serde(default)]
    pub create_orgs: bool,
}

/// Where a point is.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Location {
    /// The point in WGS84.
    pub point: LonLat,
    /// The grid, then community, street, district, city…
    pub lineage: Vec<OrgRef>,
}

/// One area boundary for the map.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AreaSummary {
    pub org: OrgRef,
    pub area_m2: f64,
    pub label: LonLat,
    pub workers: i64,
}

impl Grid {
    /// The current index, reloaded when the boundaries changed (on any node).
    pub async fn index(&self) -> Result<Arc<GridIndex<String>>> {
        let now = self.now();
        {
            let l = self.inner.index.read().expect("index lock");
            if let Some(i) = &l.index
                && now - l.checked_at < RELOAD_CHECK_MS
            {
                return Ok(i.clone());
            }
        }
        let version: i64 = sqlx::query("SELECT value FROM grid_meta WHERE key = 'areas_version'")
            .fetch_one(self.db().reader())
            .await
            .db()?
            .get(0);
        {
            let mut l = self.inner.index.write().expect("index lock");
            if let Some(i) = l.index.clone()
                && l.version == version
            {
                l.checked_at = now;
                return Ok(i);
            }
        }
        let rows = sqlx::query(
            "SELECT a.org_id, a.shape FROM grid_areas a JOIN orgs o ON o.id = a.org_id WHERE o.kind = 'grid'",
        )
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let shape: Shape =
                serde_json::from_str(&r.get::<String, _>(1)).map_err(|e| Error::internal(e.to_string()))?;
            entries.push((r.get::<String, _>(0), shape));
        }
        let index = Arc::new(
            tokio::task::spawn_blocking(move || GridIndex::build(entries))
                .await
                .map_err(|e| Error::internal(e.to_string()))?,
        );
        let mut l = self.inner.index.write().expect("index lock");
        *l = Loaded { version, checked_at: now, index: Some(index.clone()) };
        Ok(index)
    }

    /// The grid containing a WGS84 point, if any.
    pub async fn grid_at(&self, p: LonLat) -> Result<Option<String>> {
        Ok(self.index().await?.lookup(p.lon, p.lat).cloned())
    }

    /// Where a point is: its grid and the grid's ancestors.
    pub async fn locate(&self, caller: &Caller, lon: f64, lat: f64, crs: Option<&str>) -> Result<Location> {
        caller.require(GRID_AREA_READ)?;
        let crs = crs.map(Crs::parse).transpose()?.unwrap_or_default();
        let point = spatial::coord::to_wgs84(crs, LonLat::checked(lon, lat)?);
        let grid = self.grid_at(point).await?.ok_or_else(|| outside(point))?;
        Ok(Location { point, lineage: self.lineage(&grid).await? })
    }

    /// Reads, checks and (unless it is a dry run or refused) writes boundaries from GeoJSON.
    /// Each feature names its organisation by the `code` property. Nothing is written when any
    /// feature has a problem or a polygon is invalid; overlaps and gaps refuse the import unless
    /// `accept_overlaps` is set.
    pub async fn import_areas(
        &self,
        caller: &Caller,
        actor: &Actor,
        text: &str,
        p: &ImportParams,
    ) -> Result<ImportReport> {
        caller.require(GRID_MANAGE)?;
        let crs = p.crs.as_deref().map(Crs::parse).transpose()?.unwrap_or_default();
        let (features, mut feature_problems) = spatial::geojson::parse(text, crs)
            .map_err(|e| Error::validation(format!("the GeoJSON cannot be read: {}", e.message)))?;
        self.reload_orgs().await?;
        let by_code: HashMap<String, OrgRef> =
            self.inner.orgs.read().expect("orgs lock").values().map(|o| (o.code.clone(), o.clone())).collect();
        // Features naming an organisation the tree does not have yet, when the caller asks to create them.
        let unknown: HashMap<String, (usize, &spatial::geojson::Feature)> = if p.create_orgs {
            features
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.prop("code").filter(|c| !by_code.contains_key(c)).map(|c| (c, (i, f))))
                .collect()
        } else {
            HashMap::new()
        };
        let mut matched: Vec<(OrgRef, Shape)> = Vec::new();
        let mut new_orgs: Vec<NewArea> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, f) in features.iter().enumerate() {
            let Some(code) = f.prop("code") else {
                feature_problems.push(FeatureProblem {
                    feature: Some(i),
                    code: None,
                    message: "the feature has no \"code\" property naming its organisation".into(),
                });
                continue;
            };
            if !seen.insert(code.clone()) {
                feature_problems.push(FeatureProblem {
                    feature: Some(i),
                    code: Some(code.clone()),
                    message: format!("code {code} appears twice in the file"),
                });
                continue;
            }
            let org = match by_code.get(&code) {
                Some(org) => org.clone(),
                None if p.create_orgs => match plan_new_org(caller, &by_code, &unknown, &code) {
                    Ok((org, area)) => {
                        new_orgs.push(area);
                        org
                    }
                    Err(message) => {
                        feature_problems.push(FeatureProblem { feature: Some(i), code: Some(code.clone()), message });
                        continue;
                    }
                },
                None => {
                    feature_problems.push(FeatureProblem {
                        feature: Some(i),
                        code: Some(code.clone()),
                        message: format!(
                            "there is no organisation with code {code}; create it in 组织机构 first, or import with create_orgs and give the feature name, level and parent_code"
                        ),
                    });
                    continue;
                }
            };
            if !org.id.starts_with(NEW_ID) && !caller.scope(GRID_MANAGE).covers_org(&identity_org(&org)) {
                feature_problems.push(FeatureProblem {
                    feature: Some(i),
                    code: Some(code.clone()),
                    message: format!("{} is outside the organisations you manage", org.name),
                });
                continue;
            }
            matched.push((org, f.shape.clone()));
        }
        let geometry_problems = self.check_against_stored(&matched).await?;
        let mut report = ImportReport {
            features: matched.len() + feature_problems.len(),
            imported: 0,
            feature_problems,
            geometry_problems,
            new_orgs,
        };
        let invalid = report.geometry_problems.iter().any(|g| g.kind == "invalid");
        let blocking = !report.feature_problems.is_empty()
            || invalid
            || (!p.accept_overlaps && !report.geometry_problems.is_empty());
        if p.dry_run || blocking || matched.is_empty() {
            return Ok(report);
        }
        let now = self.now();
        let mut tx = self.db().begin().await?;
        // New organisations first, parents before children (a parent new in the file is created
        // before its children because `new_orgs` lists the created ids as it goes).
        let mut created: HashMap<String, String> = HashMap::new();
        let mut pending: Vec<usize> = (0..report.new_orgs.len()).collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut still = Vec::new();
            for k in pending {
                let a = &report.new_orgs[k];
                let parent_id = match by_code.get(&a.parent_code) {
                    Some(o) => o.id.clone(),
                    None => match created.get(&a.parent_code) {
                        Some(id) => id.clone(),
                        None => {
                            still.push(k);
                            continue;
                        }
                    },
                };
                let kind = identity::OrgKind::parse(&a.level).unwrap_or(identity::OrgKind::Grid);
                let perm = if kind == identity::OrgKind::Grid { GRID_MANAGE } else { ORG_MANAGE };
                let new = identity::orgs::NewOrg {
                    parent_id: Some(parent_id),
                    kind,
                    code: a.code.clone(),
                    name: a.name.clone(),
                    sort: 0,
                };
                let org = self.identity().create_org_in(&mut tx, &caller.scope(perm), actor, new).await?;
                created.insert(a.code.clone(), org.id.0.clone());
            }
            if still.len() == before {
                return Err(Error::internal("the organisations to create do not form a tree"));
            }
            pending = still;
        }
        for a in &mut report.new_orgs {
            a.id = created.get(&a.code).cloned();
        }
        let matched: Vec<(OrgRef, Shape)> = matched
            .into_iter()
            .map(|(mut o, s)| {
                if let Some(id) = created.get(&o.code) {
                    o.id = id.clone();
                }
                (o, s)
            })
            .collect();
        for (org, shape) in &matched {
            let b = shape.bbox();
            let label = shape.label_point();
            let area = spatial::check::area_m2(shape);
            sqlx::query("DELETE FROM grid_areas WHERE org_id = $1").bind(&org.id).execute(&mut *tx).await.db()?;
            sqlx::query(
                "INSERT INTO grid_areas (org_id, shape, min_lon, min_lat, max_lon, max_lat, label_lon, label_lat, area_m2, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&org.id)
            .bind(to_json(shape)?)
            .bind(b.min_lon)
            .bind(b.min_lat)
            .bind(b.max_lon)
            .bind(b.max_lat)
            .bind(label[0])
            .bind(label[1])
            .bind(area)
            .bind(now)
            .bind(&caller.username)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        sqlx::query("UPDATE grid_meta SET value = value + 1 WHERE key = 'areas_version'")
            .execute(&mut *tx)
            .await
            .db()?;
        let entry = actor
            .entry(now, "grid.area.import")
            .object("grid_area", format!("{} boundaries", matched.len()))
            .detail(json!({
                "codes": matched.iter().map(|(o, _)| &o.code).collect::<Vec<_>>(),
                "created_orgs": report.new_orgs.iter().map(|a| &a.code).collect::<Vec<_>>(),
                "accepted_problems": report.geometry_problems.len(),
            }));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        report.imported = matched.len();
        if !created.is_empty() {
            self.reload_orgs().await?;
        }
        // Force the next lookup to see the new version.
        self.inner.index.write().expect("index lock").checked_at = i64::MIN / 2;
        Ok(report)
    }

    /// Checks the new boundaries among themselves and against the stored boundaries of their
    /// siblings and parents.
    async fn check_against_stored(&self, matched: &[(OrgRef, Shape)]) -> Result<Vec<GeometryProblem>> {
        let new: HashMap<&str, &Shape> = matched.iter().map(|(o, s)| (o.id.as_str(), s)).collect();
        let mut parents: BTreeMap<String, ()> = BTreeMap::new();
        for (o, _) in matched {
            parents.insert(o.parent_id.clone().unwrap_or_default(), ());
        }
        let mut out = Vec::new();
        for parent_id in parents.keys() {
            // Siblings: every child of the parent with a boundary, the new one winning.
            let rows = if parent_id.is_empty() {
                sqlx::query("SELECT a.org_id, a.shape, o.code FROM grid_areas a JOIN orgs o ON o.id = a.org_id WHERE o.parent_id IS NULL")
                    .fetch_all(self.db().reader())
                    .await
            } else {
                sqlx::query("SELECT a.org_id, a.shape, o.code FROM grid_areas a JOIN orgs o ON o.id = a.org_id WHERE o.parent_id = $1")
                    .bind(parent_id)
                    .fetch_all(self.db().reader())
                    .await
            }
            .db()?;
            let mut stored: Vec<(String, String, Shape)> = Vec::new();
            for r in rows {
                let id: String = r.get(0);
                if new.contains_key(id.as_str()) {
                    continue;
                }
                let shape: Shape =
                    serde_json::from_str(&r.get::<String, _>(1)).map_err(|e| Error::internal(e.to_string()))?;
                stored.push((id, r.get(2), shape));
            }
            let mut sib: Vec<(String, &Shape)> = matched
                .iter()
                .filter(|(o, _)| o.parent_id.clone().unwrap_or_default() == *parent_id)
                .map(|(o, s)| (o.code.clone(), s))
                .collect();
            sib.extend(stored.iter().map(|(_, c, s)| (c.clone(), s)));
            let parent_shape: Option<(String, Shape)> = if parent_id.is_empty() {
                None
            } else if let Some(s) = new.get(parent_id.as_str()) {
                let code = match matched.iter().find(|(o, _)| o.id == *parent_id) {
                    Some((o, _)) => o.code.clone(),
                    None => self.org(parent_id).await?.code,
                };
                Some((code, (*s).clone()))
            } else if parent_id.starts_with(NEW_ID) {
                None
            } else {
                let row = sqlx::query("SELECT shape FROM grid_areas WHERE org_id = $1")
                    .bind(parent_id)
                    .fetch_optional(self.db().reader())
                    .await
                    .db()?;
                match row {
                    Some(r) => Some((
                        self.org(parent_id).await?.code,
                        serde_json::from_str(&r.get::<String, _>(0)).map_err(|e| Error::internal(e.to_string()))?,
                    )),
                    None => None,
                }
            };
            // Only the siblings that are boundaries of the same level as the parent's children
            // are compared; the parent check needs the whole set of children to report gaps.
            let parent = parent_shape.as_ref().map(|(c, s)| (c.as_str(), s));
            let found = check_siblings(&sib, parent);
            out.extend(found);
        }
        Ok(out)
    }

    /// Boundaries for the map or for export, as a GeoJSON FeatureCollection.
    /// A point inside an org's boundary (its label point).
    pub async fn area_label_point(&self, org_id: &str) -> Result<LonLat> {
        let row = sqlx::query("SELECT label_lon, label_lat FROM grid_areas WHERE org_id = $1")
            .bind(org_id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("boundary"))?;
        Ok(LonLat::new(row.get(0), row.get(1)))
    }

    pub async fn areas_geojson(&self, caller: &Caller, kind: Option<&str>, under: Option<&str>) -> Result<Value> {
        let scope = caller.require(GRID_AREA_READ)?.clone();
        let mut w = store::Where::new();
        if let Some(k) = kind {
            w.and("o.kind = ?", [k.into()]);
        }
        if let Some(u) = under {
            let o = self.org(u).await?;
            w.and("o.path >= ? AND o.path < ?", [o.path.clone().into(), identity::scope::subtree_end(&o.path).into()]);
        }
        scope.restrict(&mut w, "o.id", None);
        let sql = format!(
            "SELECT o.id, o.code, o.name, o.kind, p.code, a.shape, a.area_m2,
                (SELECT COUNT(*) FROM grid_workers g WHERE g.grid_id = o.id)
             FROM grid_areas a JOIN orgs o ON o.id = a.org_id LEFT JOIN orgs p ON p.id = o.parent_id {} ORDER BY o.path",
            w.clause()
        );
        let rows = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_all(self.db().reader()).await.db()?;
        let mut features = Vec::with_capacity(rows.len());
        for r in rows {
            let shape: Shape =
                serde_json::from_str(&r.get::<String, _>(5)).map_err(|e| Error::internal(e.to_string()))?;
            let mut props = Map::new();
            props.insert("id".into(), Value::String(r.get(0)));
            props.insert("code".into(), Value::String(r.get(1)));
            props.insert("name".into(), Value::String(r.get(2)));
            props.insert("level".into(), Value::String(r.get(3)));
            props.insert("parent_code".into(), r.get::<Option<String>, _>(4).map(Value::String).unwrap_or(Value::Null));
            props.insert("area_m2".into(), json!(r.get::<f64, _>(6).round()));
            props.insert("workers".into(), json!(r.get::<i64, _>(7)));
            features.push(spatial::geojson::feature(&shape, props));
        }
        Ok(spatial::geojson::collection(features))
    }

    /// Assigns a user to a grid as its grid worker.
    pub async fn assign_worker(&self, caller: &Caller, actor: &Actor, grid_id: &str, username: &str) -> Result<()> {
        caller.require(GRID_MANAGE)?;
        let g = self.org(grid_id).await?;
        if g.kind != "grid" {
            return Err(Error::validation(format!("{} is not a grid", g.name)));
        }
        if !caller.scope(GRID_MANAGE).covers_org(&identity_org(&g)) {
            return Err(Error::not_found("grid"));
        }
        let row = sqlx::query("SELECT id FROM users WHERE username_key = $1 AND status = 'active'")
            .bind(username.trim().to_lowercase())
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::validation(format!("there is no active user '{}'", username.trim())))?;
        let user_id: String = row.get(0);
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let exists = sqlx::query("SELECT 1 FROM grid_workers WHERE grid_id = $1 AND user_id = $2")
            .bind(grid_id)
            .bind(&user_id)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if exists.is_some() {
            return Err(Error::conflict(format!("{} already works in this grid", username.trim())));
        }
        sqlx::query("INSERT INTO grid_workers (grid_id, user_id, assigned_at) VALUES ($1, $2, $3)")
            .bind(grid_id)
            .bind(&user_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
        let entry =
            actor.entry(now, "grid.worker.assign").object("grid", grid_id).detail(json!({"user": username.trim()}));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        Ok(())
    }

    /// The grids a user works in.
    pub async fn grids_of(&self, user_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT grid_id FROM grid_workers WHERE user_id = $1 ORDER BY grid_id")
            .bind(user_id)
            .fetch_all(self.db().reader())
            .await
            .db()?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}

pub(crate) fn outside(p: LonLat) -> Error {
    Error::validation(format!(
        "the point ({:.6}, {:.6}) is outside every grid; check the coordinates and their system (phones in China report gcj02)",
        p.lon, p.lat
    ))
}

/// Plans an organisation a boundary file adds: its provisional `OrgRef` (id `new:<code>`) and
/// what the report says of it, or why it cannot be created.
fn plan_new_org(
    caller: &Caller,
    by_code: &HashMap<String, OrgRef>,
    unknown: &HashMap<String, (usize, &spatial::geojson::Feature)>,
    code: &str,
) -> std::result::Result<(OrgRef, NewArea), String> {
    let f = unknown[code].1;
    identity::orgs::check_code(code).map_err(|e| e.message)?;
    let name = f.prop("name").ok_or_else(|| {
        format!("there is no organisation with code {code}; to create it the feature needs a \"name\" property")
    })?;
    let name = identity::orgs::check_name("name", &name, 100).map_err(|e| e.message)?;
    let level = f.prop("level").unwrap_or_else(|| "grid".into());
    let kind = identity::OrgKind::parse(&level)
        .filter(|k| !matches!(k, identity::OrgKind::Department | identity::OrgKind::Province))
        .ok_or_else(|| format!("level {level} is not one of city, district, street, community or grid"))?;
    let parent_code = f.prop("parent_code").ok_or_else(|| {
        format!("there is no organisation with code {code}; to create it the feature needs a \"parent_code\" property")
    })?;
    // The parent's kind, and the nearest ancestor already in the tree (for the scope check).
    let level_of = |f: &spatial::geojson::Feature| f.prop("level").unwrap_or_else(|| "grid".into());
    let parent_kind = match (by_code.get(&parent_code), unknown.get(&parent_code)) {
        (Some(o), _) => identity::OrgKind::parse(&o.kind),
        (None, Some((_, pf))) => identity::OrgKind::parse(&level_of(pf)),
        (None, None) => {
            return Err(format!("the parent {parent_code} is neither an organisation nor a feature of this file"));
        }
    }
    .ok_or_else(|| format!("the parent {parent_code} has no valid level"))?;
    if !kind.may_sit_under(parent_kind) {
        return Err(format!("a {} cannot sit under a {} ({parent_code})", kind.as_str(), parent_kind.as_str()));
    }
    let mut cur = parent_code.clone();
    let mut steps = 0;
    let ancestor = loop {
        if let Some(o) = by_code.get(&cur) {
            break o;
        }
        steps += 1;
        match unknown.get(&cur) {
            // Each step goes one feature up; more steps than features means a circle.
            Some((_, pf)) if steps <= unknown.len() => cur = pf.prop("parent_code").unwrap_or_default(),
            Some(_) => return Err(format!("the parents named from {code} go round in a circle")),
            None => return Err(format!("the parents named from {code} do not lead to an organisation of the tree")),
        }
    };
    let perm = if kind == identity::OrgKind::Grid { GRID_MANAGE } else { ORG_MANAGE };
    let scope = caller.scope(perm);
    if scope.is_empty() {
        return Err(format!(
            "creating a {} needs the permission 管理组织机构 (org.manage); create {code} in 组织机构 first",
            kind.as_str()
        ));
    }
    if !scope.covers_org(&identity_org(ancestor)) {
        return Err(format!("{} is outside the organisations you manage", ancestor.name));
    }
    let parent_id = match by_code.get(&parent_code) {
        Some(o) => o.id.clone(),
        None => format!("{NEW_ID}{parent_code}"),
    };
    let org = OrgRef {
        id: format!("{NEW_ID}{code}"),
        code: code.to_string(),
        name: name.clone(),
        kind: kind.as_str().to_string(),
        parent_id: Some(parent_id),
        path: String::new(),
    };
    Ok((org, NewArea { code: code.to_string(), name, level: kind.as_str().to_string(), parent_code, id: None }))
}

/// The identity crate's org type, for scope checks.
pub(crate) fn identity_org(o: &OrgRef) -> identity::Org {
    identity::Org {
        id: identity::OrgId(o.id.clone()),
        parent_id: o.parent_id.clone().map(identity::OrgId),
        kind: identity::OrgKind::parse(&o.kind).unwrap_or(identity::OrgKind::Grid),
        code: o.code.clone(),
        name: o.name.clone(),
        path: o.path.clone(),
        depth: 0,
        sort: 0,
    }
}
