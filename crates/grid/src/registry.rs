//! Base information (B1.1) beyond people: facilities (物设/部件) with their digital-city-management
//! component code (GB/T 30428: area, major and minor class, sequence — the class must be one of the
//! component categories), position (placed in its grid by the point → grid index), owner
//! department and state; and organisations (组织) with their unified social credit code checked by
//! its check digit (GB 32100). Both import from CSV with a per-row report, upsert on their code,
//! and keep the history of changed fields.

use std::collections::BTreeMap;

use identity::perms::{GRID_BASE_MANAGE, GRID_BASE_READ};
use identity::{Actor, Caller};
use kernel::{Error, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spatial::{Crs, LonLat};
use store::{DbResultExt, Row, Tx, Where};

use crate::Grid;
use crate::integrity::{FACILITIES, ORG_RECORDS};
use crate::people::{RecordImport, RowProblem};

pub const STATES: [&str; 4] = ["normal", "damaged", "missing", "removed"];
pub const ORG_KINDS: [&str; 4] = ["enterprise", "institution", "social", "individual"];

/// Checks a unified social credit code (统一社会信用代码, GB 32100): 18 characters of
/// 0-9 and A-Y without I, O, Z, S, V, and the check character. Returns it upper-cased.
const USCC_CHARS: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// The check character of the first 17 characters of a unified social credit code (GB 32100),
/// or `None` when one of them is not a code character.
pub fn uscc_check_char(first17: &str) -> Option<char> {
    const W: [usize; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let mut sum = 0;
    for (c, w) in first17.chars().zip(W) {
        sum += USCC_CHARS.find(c)? * w;
    }
    USCC_CHARS.chars().nth((31 - sum % 31) % 31)
}

pub fn check_uscc(s: &str) -> std::result::Result<String, String> {
    let s = s.trim().to_ascii_uppercase();
    if s.chars().count() != 18 {
        return Err("a unified social credit code has 18 characters".into());
    }
    if !s.chars().all(|c| USCC_CHARS.contains(c)) {
        return Err("a unified social credit code uses digits and capital letters except I, O, Z, S, V".into());
    }
    if uscc_check_char(&s[..17]) != s.chars().nth(17) {
        return Err("the check character of the unified social credit code is wrong (a mistyped character?)".into());
    }
    Ok(s)
}

/// Checks a component code (部件编码): 16 digits; returns the category code `BJ<major><minor>`.
pub fn check_facility_code(s: &str) -> std::result::Result<(String, String), String> {
    let s = s.trim().to_string();
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a component code has 16 digits: area (6), major class (2), minor class (2), sequence (6)".into());
    }
    Ok((format!("BJ{}", &s[6..10]), s))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Facility {
    pub id: String,
    pub code: String,
    pub category_code: String,
    pub category_name: String,
    pub name: String,
    pub lon: f64,
    pub lat: f64,
    pub grid_id: String,
    pub grid_name: String,
    pub owner_org_id: Option<String>,
    pub owner_org_name: Option<String>,
    /// normal, damaged, missing, removed
    pub state: String,
    pub address: Option<String>,
    pub updated_at: i64,
    pub updated_by: Option<String>,
    /// The stored record fails its integrity check (changed outside the application): shown
    /// flagged, refused for changes until restored from a backup.
    pub integrity_violation: bool,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FacilityInput {
    pub code: String,
    /// Defaults to the component class's name.
    pub name: Option<String>,
    pub lon: f64,
    pub lat: f64,
    /// wgs84 (default), cgcs2000, gcj02 or bd09
    pub crs: Option<String>,
    /// The owner department by id or code (defaults to the class's owner).
    pub owner: Option<String>,
    pub state: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrgRecord {
    pub id: String,
    pub uscc: String,
    pub name: String,
    /// enterprise, institution, social, individual
    pub kind: String,
    pub address: Option<String>,
    pub grid_id: String,
    pub grid_name: String,
    pub updated_at: i64,
    pub updated_by: Option<String>,
    /// The stored record fails its integrity check (changed outside the application): shown
    /// flagged, refused for changes until restored from a backup.
    pub integrity_violation: bool,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgRecordInput {
    pub uscc: String,
    pub name: String,
    pub kind: String,
    pub address: Option<String>,
    /// The grid by id or code; when absent, the grid of the registered building the address begins with.
    #[serde(default)]
    pub grid: String,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RegistryFilter {
    pub area_id: Option<String>,
    /// An exact code (component code or credit code), or text in the name.
    pub q: Option<String>,
    /// Facilities only: normal, damaged, missing, removed.
    pub state: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

const F_COLUMNS: &str =
    "f.id, f.code, k.code, k.name, f.name, f.lon, f.lat, f.grid_id, g.name, f.owner_org_id, o.name, f.state, f.address,
    f.updated_at, f.updated_by";
const F_FROM: &str =
    "FROM grid_facilities f JOIN grid_categories k ON k.id = f.category_id JOIN orgs g ON g.id = f.grid_id
    LEFT JOIN orgs o ON o.id = f.owner_org_id";
const O_COLUMNS: &str = "r.id, r.uscc, r.name, r.kind, r.address, r.grid_id, g.name, r.updated_at, r.updated_by";
const O_FROM: &str = "FROM grid_org_records r JOIN orgs g ON g.id = r.grid_id";

fn facility_row(r: &store::AnyRow) -> Facility {
    Facility {
        id: r.get(0),
        code: r.get(1),
        category_code: r.get(2),
        category_name: r.get(3),
        name: r.get(4),
        lon: r.get(5),
        lat: r.get(6),
        grid_id: r.get(7),
        grid_name: r.get(8),
        owner_org_id: r.get(9),
        owner_org_name: r.get(10),
        state: r.get(11),
        address: r.get(12),
        updated_at: r.get(13),
        updated_by: r.get(14),
        integrity_violation: false,
    }
}

fn org_row(r: &store::AnyRow) -> OrgRecord {
    OrgRecord {
        id: r.get(0),
        uscc: r.get(1),
        name: r.get(2),
        kind: r.get(3),
        address: r.get(4),
        grid_id: r.get(5),
        grid_name: r.get(6),
        updated_at: r.get(7),
        updated_by: r.get(8),
        integrity_violation: false,
    }
}

/// Writes one history row and one audit record for a change of a base record.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_change(
    g: &Grid,
    tx: &mut Tx,
    actor: &Actor,
    kind: &str,
    id: &str,
    created: bool,
    changed: &[String],
    now: i64,
    who: &str,
) -> Result<()> {
    if changed.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO grid_base_history (object_type, object_id, at, actor, action, fields) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(kind)
        .bind(id)
        .bind(now)
        .bind(who)
        .bind(if created { "create" } else { "update" })
        .bind(serde_json::to_string(changed).unwrap_or_default())
        .execute(&mut **tx)
        .await
        .db()?;
    if let Some(t) = crate::integrity::sealed_table(kind) {
        g.reseal(tx, t, "id", id).await?;
    }
    let entry = actor
        .entry(now, &format!("grid.{kind}.{}", if created { "create" } else { "update" }))
        .object(&format!("grid_{kind}"), id)
        .detail(json!({"fields": changed}));
    g.identity().audit_log().append(tx, &entry).await
}

pub(crate) fn diff(before: &BTreeMap<&'static str, String>, after: &BTreeMap<&'static str, String>) -> Vec<String> {
    after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k.to_string()).collect()
}

impl Grid {
    async fn upsert_facility(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        actor: &Actor,
        input: FacilityInput,
        now: i64,
    ) -> Result<(String, bool)> {
        let (category_code, code) = check_facility_code(&input.code).map_err(Error::validation)?;
        let category = self.category_by_code(&category_code).await.map_err(|_| {
            Error::validation(format!(
                "component class {} (digits 7-10 of the code) is not a component category",
                &category_code[2..]
            ))
        })?;
        if category.kind != "component" {
            return Err(Error::validation(format!("{} is not a component class", category.name)));
        }
        let crs = input.crs.as_deref().map(Crs::parse).transpose()?.unwrap_or_default();
        let p = spatial::coord::to_wgs84(crs, LonLat::checked(input.lon, input.lat)?);
        let grid_id = self.grid_at(p).await?.ok_or_else(|| crate::areas::outside(p))?;
        let grid = self.maintained_grid(caller, &grid_id).await?;
        let owner = match input.owner.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(o) => Some(
                self.org_by_id_or_code(o)
                    .await?
                    .ok_or_else(|| Error::validation(format!("there is no department '{o}'")))?
                    .id,
            ),
            None => category.owner_org_id.clone(),
        };
        let state =
            input.state.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "normal".into());
        let state = match state.as_str() {
            "正常" => "normal".to_string(),
            "损坏" => "damaged".to_string(),
            "丢失" => "missing".to_string(),
            "拆除" => "removed".to_string(),
            s if STATES.contains(&s) => s.to_string(),
            s => {
                return Err(Error::validation(format!(
                    "unknown state '{s}': normal (正常), damaged (损坏), missing (丢失), removed (拆除)"
                )));
            }
        };
        let name =
            input.name.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| category.name.clone());
        let address = input.address.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if name.chars().count() > 100 || address.as_ref().is_some_and(|a| a.chars().count() > 200) {
            return Err(Error::validation("the name is at most 100 characters and the address 200"));
        }
        let after = BTreeMap::from([
            ("name", name.clone()),
            ("position", format!("{:.7},{:.7}", p.lon, p.lat)),
            ("grid", grid.id.clone()),
            ("owner", owner.clone().unwrap_or_default()),
            ("state", state.clone()),
            ("address", address.clone().unwrap_or_default()),
        ]);
        let sql = format!("SELECT {F_COLUMNS} {F_FROM} WHERE f.code = $1");
        let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&code)
            .fetch_optional(&mut **tx)
            .await
            .db()?
            .map(|r| facility_row(&r));
        let (id, created, changed) = match existing {
            Some(f) => {
                self.ensure_record_intact(tx, &FACILITIES, &f.id).await?;
                let before = BTreeMap::from([
                    ("name", f.name.clone()),
                    ("position", format!("{:.7},{:.7}", f.lon, f.lat)),
                    ("grid", f.grid_id.clone()),
                    ("owner", f.owner_org_id.clone().unwrap_or_default()),
                    ("state", f.state.clone()),
                    ("address", f.address.clone().unwrap_or_default()),
                ]);
                let changed = diff(&before, &after);
                if !changed.is_empty() {
                    sqlx::query(
                        "UPDATE grid_facilities SET name = $2, lon = $3, lat = $4, grid_id = $5, owner_org_id = $6, state = $7, address = $8,
                            updated_at = $9, updated_by = $10 WHERE id = $1",
                    )
                    .bind(&f.id)
                    .bind(&name)
                    .bind(p.lon)
                    .bind(p.lat)
                    .bind(&grid.id)
                    .bind(&owner)
                    .bind(&state)
                    .bind(&address)
                    .bind(now)
                    .bind(&caller.username)
                    .execute(&mut **tx)
                    .await
                    .db()?;
                }
                (f.id, false, changed)
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "INSERT INTO grid_facilities (id, code, category_id, name, lon, lat, grid_id, owner_org_id, state, address, created_at, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)",
                )
                .bind(&id)
                .bind(&code)
                .bind(&category.id)
                .bind(&name)
                .bind(p.lon)
                .bind(p.lat)
                .bind(&grid.id)
                .bind(&owner)
                .bind(&state)
                .bind(&address)
                .bind(now)
                .bind(&caller.username)
                .execute(&mut **tx)
                .await
                .db()?;
                (id, true, after.keys().map(|k| k.to_string()).collect())
            }
        };
        record_change(self, tx, actor, "facility", &id, created, &changed, now, &caller.username).await?;
        Ok((id, created))
    }

    /// Adds a facility, or updates the one with the same component code.
    pub async fn save_facility(&self, caller: &Caller, actor: &Actor, input: FacilityInput) -> Result<Facility> {
        caller.require(GRID_BASE_MANAGE)?;
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let (id, _) = self.upsert_facility(&mut tx, caller, actor, input, now).await?;
        tx.commit().await.db()?;
        let sql = format!("SELECT {F_COLUMNS} {F_FROM} WHERE f.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&id).fetch_one(self.db().reader()).await.db()?;
        Ok(facility_row(&row))
    }

    pub async fn facilities(&self, caller: &Caller, f: &RegistryFilter) -> Result<Page<Facility>> {
        let scope = caller.require(GRID_BASE_READ)?;
        let mut w = Where::new();
        scope.restrict(&mut w, "f.grid_id", None);
        self.area_filter(&mut w, "f.grid_id", f.area_id.as_deref()).await?;
        if let Some(s) = f.state.as_deref().filter(|s| !s.is_empty()) {
            w.and("f.state = ?", [s.into()]);
        }
        if let Some(q) = f.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            w.and(
                "(f.code = ? OR f.name LIKE ? ESCAPE '\\')",
                [q.into(), format!("%{}%", store::like_escape(q)).into()],
            );
        }
        let page = PageRequest::new(f.page, f.page_size)?;
        let (rows, total) = store::fetch_page(self.db(), &w, F_COLUMNS, F_FROM, "f.code", page).await?;
        let mut items: Vec<Facility> = rows.iter().map(facility_row).collect();
        self.flag_tampered(&FACILITIES, &mut items, |f| &f.id, |f| f.integrity_violation = true).await?;
        Ok(Page { items, total, page: page.page, page_size: page.page_size })
    }

    async fn upsert_org_record(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        actor: &Actor,
        input: OrgRecordInput,
        now: i64,
    ) -> Result<(String, bool)> {
        let uscc = check_uscc(&input.uscc).map_err(Error::validation)?;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::validation("the name must be 1-100 characters"));
        }
        let kind = match input.kind.trim() {
            "enterprise" | "企业" => "enterprise",
            "institution" | "事业单位" | "机关" => "institution",
            "social" | "社会组织" => "social",
            "individual" | "个体工商户" => "individual",
            other => {
                return Err(Error::validation(format!(
                    "unknown kind '{other}': 企业, 事业单位, 社会组织 or 个体工商户"
                )));
            }
        }
        .to_string();
        let grid = self.grid_for(caller, &input.grid, input.address.as_deref()).await?;
        let address = input.address.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let after = BTreeMap::from([
            ("name", name.clone()),
            ("kind", kind.clone()),
            ("address", address.clone().unwrap_or_default()),
            ("grid", grid.id.clone()),
        ]);
        let sql = format!("SELECT {O_COLUMNS} {O_FROM} WHERE r.uscc = $1");
        let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&uscc)
            .fetch_optional(&mut **tx)
            .await
            .db()?
            .map(|r| org_row(&r));
        let (id, created, changed) = match existing {
            Some(o) => {
                self.ensure_record_intact(tx, &ORG_RECORDS, &o.id).await?;
                let before = BTreeMap::from([
                    ("name", o.name.clone()),
                    ("kind", o.kind.clone()),
                    ("address", o.address.clone().unwrap_or_default()),
                    ("grid", o.grid_id.clone()),
                ]);
                let changed = diff(&before, &after);
                if !changed.is_empty() {
                    sqlx::query("UPDATE grid_org_records SET name = $2, kind = $3, address = $4, grid_id = $5, updated_at = $6, updated_by = $7 WHERE id = $1")
                        .bind(&o.id)
                        .bind(&name)
                        .bind(&kind)
                        .bind(&address)
                        .bind(&grid.id)
                        .bind(now)
                        .bind(&caller.username)
                        .execute(&mut **tx)
                        .await
                        .db()?;
                }
                (o.id, false, changed)
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "INSERT INTO grid_org_records (id, uscc, name, kind, address, grid_id, created_at, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
                )
                .bind(&id)
                .bind(&uscc)
                .bind(&name)
                .bind(&kind)
                .bind(&address)
                .bind(&grid.id)
                .bind(now)
                .bind(&caller.username)
                .execute(&mut **tx)
                .await
                .db()?;
                (id, true, after.keys().map(|k| k.to_string()).collect())
            }
        };
        record_change(self, tx, actor, "org_record", &id, created, &changed, now, &caller.username).await?;
        Ok((id, created))
    }

    /// Adds an organisation, or updates the one with the same credit code.
    pub async fn save_org_record(&self, caller: &Caller, actor: &Actor, input: OrgRecordInput) -> Result<OrgRecord> {
        caller.require(GRID_BASE_MANAGE)?;
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let (id, _) = self.upsert_org_record(&mut tx, caller, actor, input, now).await?;
        tx.commit().await.db()?;
        let sql = format!("SELECT {O_COLUMNS} {O_FROM} WHERE r.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&id).fetch_one(self.db().reader()).await.db()?;
        Ok(org_row(&row))
    }

    pub async fn org_records(&self, caller: &Caller, f: &RegistryFilter) -> Result<Page<OrgRecord>> {
        let scope = caller.require(GRID_BASE_READ)?;
        let mut w = Where::new();
        scope.restrict(&mut w, "r.grid_id", None);
        self.area_filter(&mut w, "r.grid_id", f.area_id.as_deref()).await?;
        if let Some(q) = f.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            w.and(
                "(r.uscc = ? OR r.name LIKE ? ESCAPE '\\')",
                [q.to_ascii_uppercase().into(), format!("%{}%", store::like_escape(q)).into()],
            );
        }
        let page = PageRequest::new(f.page, f.page_size)?;
        let (rows, total) = store::fetch_page(self.db(), &w, O_COLUMNS, O_FROM, "r.name, r.id", page).await?;
        let mut items: Vec<OrgRecord> = rows.iter().map(org_row).collect();
        self.flag_tampered(&ORG_RECORDS, &mut items, |o| &o.id, |o| o.integrity_violation = true).await?;
        Ok(Page { items, total, page: page.page, page_size: page.page_size })
    }

    /// Imports facilities (部件编码, 名称, 经度, 纬度, 坐标系, 权属部门, 状态, 地址) or organisations
    /// (统一社会信用代码, 名称, 类型, 地址, 网格) from CSV or XLSX: rows with a problem import nothing, the
    /// others import together; known codes update.
    pub async fn import_registry(
        &self,
        caller: &Caller,
        actor: &Actor,
        kind: &str,
        data: &[u8],
    ) -> Result<RecordImport> {
        caller.require(GRID_BASE_MANAGE)?;
        let (headers, rows) = crate::read_table(data)?;
        let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h));
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let (mut created, mut updated, mut problems) = (0, 0, Vec::new());
        let n = rows.len();
        for (line, rec) in rows {
            let rec = match rec {
                Ok(r) => r,
                Err(m) => {
                    problems.push(RowProblem { line, message: m });
                    continue;
                }
            };
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(String::from).filter(|s| !s.is_empty());
            // Each row in a savepoint: a bad row leaves nothing behind.
            sqlx::query("SAVEPOINT import_row").execute(&mut *tx).await.db()?;
            let r = match kind {
                "facility" => {
                    let num = |c: Option<usize>, what: &str| -> Result<f64> {
                        get(c)
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| Error::validation(format!("{what} is missing or not a number")))
                    };
                    let input = (|| -> Result<FacilityInput> {
                        Ok(FacilityInput {
                            code: get(col(&["部件编码", "code"])).unwrap_or_default(),
                            name: get(col(&["名称", "name"])),
                            lon: num(col(&["经度", "lon"]), "the longitude")?,
                            lat: num(col(&["纬度", "lat"]), "the latitude")?,
                            crs: get(col(&["坐标系", "crs"])),
                            owner: get(col(&["权属部门", "owner"])),
                            state: get(col(&["状态", "state"])),
                            address: get(col(&["地址", "address"])),
                        })
                    })();
                    match input {
                        Ok(i) => self.upsert_facility(&mut tx, caller, actor, i, now).await,
                        Err(e) => Err(e),
                    }
                }
                "place" => {
                    let num = |c: Option<usize>, what: &str| -> Result<Option<f64>> {
                        match get(c) {
                            None => Ok(None),
                            Some(s) => {
                                s.parse().map(Some).map_err(|_| Error::validation(format!("{what} is not a number")))
                            }
                        }
                    };
                    let input = (|| -> Result<crate::places::PlaceInput> {
                        Ok(crate::places::PlaceInput {
                            code: get(col(&["编码", "地址编码", "code"])).unwrap_or_default(),
                            kind: get(col(&["类型", "kind"])).unwrap_or_default(),
                            building: get(col(&["所属楼栋", "楼栋编码", "building"])),
                            name: get(col(&["名称", "name"])).unwrap_or_default(),
                            address: get(col(&["地址", "标准地址", "address"])),
                            lon: num(col(&["经度", "lon"]), "the longitude")?,
                            lat: num(col(&["纬度", "lat"]), "the latitude")?,
                            crs: get(col(&["坐标系", "crs"])),
                            usage: get(col(&["用途", "usage"])),
                            floors: num(col(&["层数", "floors"]), "the number of floors")?.map(|f| f as i64),
                        })
                    })();
                    match input {
                        Ok(i) => self.upsert_place(&mut tx, caller, actor, i, now).await,
                        Err(e) => Err(e),
                    }
                }
                _ => {
                    let input = OrgRecordInput {
                        uscc: get(col(&["统一社会信用代码", "uscc"])).unwrap_or_default(),
                        name: get(col(&["名称", "name"])).unwrap_or_default(),
                        kind: get(col(&["类型", "kind"])).unwrap_or_default(),
                        address: get(col(&["地址", "address"])),
                        grid: get(col(&["网格", "grid"])).unwrap_or_default(),
                    };
                    self.upsert_org_record(&mut tx, caller, actor, input, now).await
                }
            };
            match r {
                Ok((_, new)) => {
                    sqlx::query("RELEASE SAVEPOINT import_row").execute(&mut *tx).await.db()?;
                    if new {
                        created += 1;
                    } else {
                        updated += 1;
                    }
                }
                Err(e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT import_row").execute(&mut *tx).await.db()?;
                    sqlx::query("RELEASE SAVEPOINT import_row").execute(&mut *tx).await.db()?;
                    problems.push(RowProblem { line, message: e.message });
                }
            }
        }
        tx.commit().await.db()?;
        Ok(RecordImport { rows: n, created, updated, problems })
    }

    /// The change history of a facility or organisation.
    pub async fn registry_history(
        &self,
        caller: &Caller,
        kind: &str,
        id: &str,
    ) -> Result<Vec<crate::people::BaseChange>> {
        let scope = caller.require(GRID_BASE_READ)?;
        let (table, alias) = match kind {
            "facility" => ("grid_facilities", "f"),
            "place" => ("grid_places", "p"),
            _ => ("grid_org_records", "r"),
        };
        let mut w = Where::new();
        scope.restrict(&mut w, &format!("{alias}.grid_id"), None);
        w.and(&format!("{alias}.id = ?"), [id.into()]);
        let sql = format!("SELECT {alias}.id FROM {table} {alias} {}", w.clause());
        if w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_optional(self.db().reader()).await.db()?.is_none() {
            return Err(Error::not_found("record"));
        }
        self.base_history(kind, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_codes_are_checked_by_their_check_character() {
        // Real, published codes.
        assert!(check_uscc("9144030071526726XG").is_ok());
        assert!(check_uscc("91330100799655058b").is_ok());
        assert!(check_uscc("9144030071526726XH").unwrap_err().contains("check character"));
        assert!(check_uscc("9144030071526726XO").unwrap_err().contains("except I, O"));
        assert!(check_uscc("91440300").unwrap_err().contains("18 characters"));
    }

    #[test]
    fn component_codes_name_their_class() {
        assert_eq!(check_facility_code("3701020102000123").unwrap().0, "BJ0102");
        assert!(check_facility_code("37010201020001").is_err());
    }
}
