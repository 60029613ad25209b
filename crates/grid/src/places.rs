//! Places (地所, base information B1.1): buildings (楼栋) and the houses (房屋) in them, each with
//! a standard address, a position and its grid; and geocoding — a free-text address ("济南市历下区
//! 山大路3号楼1单元101室", "山大路３号楼东侧") matched to the most specific place whose standard
//! address begins it, which gives events, people and organisations known only by address their
//! position and grid.
//!
//! Addresses are compared normalised: full-width characters folded, spaces and punctuation
//! dropped, the names of the province, city and district orgs at the front removed (people write
//! them or not).

use std::collections::BTreeMap;

use identity::perms::{GRID_BASE_MANAGE, GRID_BASE_READ};
use identity::{Actor, Caller};
use kernel::{Error, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use spatial::{Crs, LonLat};
use store::{DbResultExt, Row, Tx, Where};

use crate::Grid;
use crate::registry::{diff, record_change};

pub const BUILDING_USES: [&str; 6] = ["residential", "commercial", "office", "public", "industrial", "mixed"];
pub const HOUSE_USES: [&str; 4] = ["owner_occupied", "rented", "vacant", "business"];

/// A building or a house.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Place {
    pub id: String,
    pub code: String,
    /// building (楼栋) or house (房屋)
    pub kind: String,
    pub building_id: Option<String>,
    pub building_name: Option<String>,
    pub name: String,
    /// The standard address (标准地址).
    pub address: String,
    pub lon: f64,
    pub lat: f64,
    pub grid_id: String,
    pub grid_name: String,
    pub usage: String,
    pub floors: Option<i64>,
    /// Houses in a building.
    pub houses: i64,
    pub updated_at: i64,
    pub updated_by: Option<String>,
    /// The stored record fails its integrity check (changed outside the application): shown
    /// flagged, refused for changes until restored from a backup.
    pub integrity_violation: bool,
}

/// A building or house to add, or to update by its code.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceInput {
    /// The place's code (地址编码), unique.
    pub code: String,
    /// building (楼栋) or house (房屋).
    pub kind: String,
    /// A house's building, by code.
    pub building: Option<String>,
    pub name: String,
    /// The standard address; a house defaults to its building's address followed by its name.
    pub address: Option<String>,
    /// A building's position (a house takes its building's).
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    /// wgs84 (default), cgcs2000, gcj02 or bd09
    pub crs: Option<String>,
    /// Buildings: residential (住宅), commercial (商业), office (办公), public (公共), industrial (工业), mixed (混合);
    /// houses: owner_occupied (自住), rented (出租), vacant (空置), business (经营).
    pub usage: Option<String>,
    pub floors: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlaceFilter {
    pub area_id: Option<String>,
    /// building or house
    pub kind: Option<String>,
    /// The houses of this building (id).
    pub building_id: Option<String>,
    /// An exact code, or text in the name or address.
    pub q: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// Where an address is.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Geocode {
    /// The most specific place whose standard address begins the address given.
    pub place: Place,
    /// How much of the address the place explains (characters, normalised).
    pub matched: usize,
    /// What is left over (e.g. "东侧").
    pub rest: String,
}

const COLUMNS: &str = "p.id, p.code, p.kind, p.building_id, b.name, p.name, p.address, p.lon, p.lat, p.grid_id, g.name,
    p.usage, p.floors, (SELECT COUNT(*) FROM grid_places h WHERE h.building_id = p.id), p.updated_at, p.updated_by";
const FROM: &str = "FROM grid_places p JOIN orgs g ON g.id = p.grid_id LEFT JOIN grid_places b ON b.id = p.building_id";

fn place_row(r: &store::AnyRow) -> Place {
    Place {
        id: r.get(0),
        code: r.get(1),
        kind: r.get(2),
        building_id: r.get(3),
        building_name: r.get(4),
        name: r.get(5),
        address: r.get(6),
        lon: r.get(7),
        lat: r.get(8),
        grid_id: r.get(9),
        grid_name: r.get(10),
        usage: r.get(11),
        floors: r.get(12),
        houses: r.get(13),
        updated_at: r.get(14),
        updated_by: r.get(15),
        integrity_violation: false,
    }
}

/// An address folded for comparison: full-width forms to ASCII, no spaces or punctuation, and
/// none of `prefixes` (administrative names) at the front.
pub fn normalize_address(s: &str, prefixes: &[String]) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .filter(|c| {
            !c.is_whitespace()
                && !c.is_ascii_punctuation()
                && !matches!(c, '，' | '、' | '。' | '（' | '）' | '—' | '－' | '·' | '“' | '”' | '：' | '；')
        })
        .collect();
    loop {
        let before = out.len();
        for p in prefixes {
            if !p.is_empty()
                && let Some(rest) = out.strip_prefix(p.as_str())
            {
                out = rest.to_string();
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

fn usage_of(kind: &str, s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    let v = match s {
        "住宅" => "residential",
        "商业" => "commercial",
        "办公" => "office",
        "公共" | "公共服务" => "public",
        "工业" => "industrial",
        "混合" | "商住" => "mixed",
        "自住" => "owner_occupied",
        "出租" => "rented",
        "空置" => "vacant",
        "经营" => "business",
        other => other,
    };
    let allowed: &[&str] = if kind == "building" { &BUILDING_USES } else { &HOUSE_USES };
    if allowed.contains(&v) {
        Ok(v.to_string())
    } else if kind == "building" {
        Err(format!("unknown use '{s}' of a building: 住宅, 商业, 办公, 公共, 工业 or 混合"))
    } else {
        Err(format!("unknown use '{s}' of a house: 自住, 出租, 空置 or 经营"))
    }
}

impl Grid {
    /// Names dropped from the front of addresses: the province, city and district orgs.
    async fn address_prefixes(&self) -> Result<Vec<String>> {
        if self.inner.orgs.read().expect("orgs lock").is_empty() {
            self.reload_orgs().await?;
        }
        let orgs = self.inner.orgs.read().expect("orgs lock");
        let mut names: Vec<String> = orgs
            .values()
            .filter(|o| matches!(o.kind.as_str(), "province" | "city" | "district"))
            .map(|o| o.name.clone())
            .collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Ok(names)
    }

    pub(crate) async fn upsert_place(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        actor: &Actor,
        input: PlaceInput,
        now: i64,
    ) -> Result<(String, bool)> {
        let code = input.code.trim().to_string();
        if code.is_empty() || code.chars().count() > 40 {
            return Err(Error::validation("the place code must be 1-40 characters"));
        }
        let kind = match input.kind.trim() {
            "building" | "楼栋" => "building",
            "house" | "房屋" => "house",
            other => return Err(Error::validation(format!("unknown kind '{other}': 楼栋 (building) or 房屋 (house)"))),
        };
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 60 {
            return Err(Error::validation("the name must be 1-60 characters"));
        }
        let usage = match input.usage.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(u) => usage_of(kind, u).map_err(Error::validation)?,
            None => if kind == "building" { "residential" } else { "owner_occupied" }.to_string(),
        };
        if input.floors.is_some_and(|f| !(1..=200).contains(&f)) {
            return Err(Error::validation("floors must be between 1 and 200"));
        }
        let given_address = input.address.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let (building, address, point) = if kind == "house" {
            let bcode = input
                .building
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::validation("a house names its building (building, by code)"))?;
            let sql = format!("SELECT {COLUMNS} {FROM} WHERE p.code = $1");
            let b = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(bcode)
                .fetch_optional(&mut **tx)
                .await
                .db()?
                .map(|r| place_row(&r))
                .filter(|b| b.kind == "building")
                .ok_or_else(|| Error::validation(format!("there is no building with the code '{bcode}'")))?;
            let address = given_address.unwrap_or_else(|| format!("{}{}", b.address, name));
            let p = LonLat::new(b.lon, b.lat);
            (Some(b.id), address, p)
        } else {
            let (Some(lon), Some(lat)) = (input.lon, input.lat) else {
                return Err(Error::validation("a building needs its position (lon, lat)"));
            };
            let crs = input.crs.as_deref().map(Crs::parse).transpose()?.unwrap_or_default();
            let p = spatial::coord::to_wgs84(crs, LonLat::checked(lon, lat)?);
            let address = given_address.ok_or_else(|| Error::validation("a building needs its standard address"))?;
            (None, address, p)
        };
        if address.chars().count() > 200 {
            return Err(Error::validation("the address must be at most 200 characters"));
        }
        let key = normalize_address(&address, &self.address_prefixes().await?);
        if key.chars().count() < 4 {
            return Err(Error::validation("the address is too short to find anything by: give street and number"));
        }
        let grid_id = self.grid_at(point).await?.ok_or_else(|| crate::areas::outside(point))?;
        let grid = self.maintained_grid(caller, &grid_id).await?;
        let after = BTreeMap::from([
            ("kind", kind.to_string()),
            ("building", building.clone().unwrap_or_default()),
            ("name", name.clone()),
            ("address", address.clone()),
            ("position", format!("{:.7},{:.7}", point.lon, point.lat)),
            ("grid", grid.id.clone()),
            ("usage", usage.clone()),
            ("floors", input.floors.map(|f| f.to_string()).unwrap_or_default()),
        ]);
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE p.code = $1");
        let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&code)
            .fetch_optional(&mut **tx)
            .await
            .db()?
            .map(|r| place_row(&r));
        let (id, created, changed) = match existing {
            Some(p) => {
                self.ensure_record_intact(tx, &crate::integrity::PLACES, &p.id).await?;
                if p.kind != kind {
                    return Err(Error::validation(format!("{code} is a {} already; a code names one place", p.kind)));
                }
                let before = BTreeMap::from([
                    ("kind", p.kind.clone()),
                    ("building", p.building_id.clone().unwrap_or_default()),
                    ("name", p.name.clone()),
                    ("address", p.address.clone()),
                    ("position", format!("{:.7},{:.7}", p.lon, p.lat)),
                    ("grid", p.grid_id.clone()),
                    ("usage", p.usage.clone()),
                    ("floors", p.floors.map(|f| f.to_string()).unwrap_or_default()),
                ]);
                let changed = diff(&before, &after);
                if !changed.is_empty() {
                    sqlx::query(
                        "UPDATE grid_places SET building_id = $2, name = $3, address = $4, address_key = $5, lon = $6, lat = $7,
                            grid_id = $8, usage = $9, floors = $10, updated_at = $11, updated_by = $12 WHERE id = $1",
                    )
                    .bind(&p.id)
                    .bind(&building)
                    .bind(&name)
                    .bind(&address)
                    .bind(&key)
                    .bind(point.lon)
                    .bind(point.lat)
                    .bind(&grid.id)
                    .bind(&usage)
                    .bind(input.floors)
                    .bind(now)
                    .bind(&caller.username)
                    .execute(&mut **tx)
                    .await
                    .db()?;
                    if kind == "building" && changed.iter().any(|c| c == "position" || c == "grid") {
                        // Houses stand where their building stands.
                        sqlx::query("UPDATE grid_places SET lon = $2, lat = $3, grid_id = $4, updated_at = $5 WHERE building_id = $1")
                            .bind(&p.id)
                            .bind(point.lon)
                            .bind(point.lat)
                            .bind(&grid.id)
                            .bind(now)
                            .execute(&mut **tx)
                            .await
                            .db()?;
                        self.reseal(tx, &crate::integrity::PLACES, "building_id", &p.id).await?;
                    }
                }
                (p.id, false, changed)
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "INSERT INTO grid_places (id, code, kind, building_id, name, address, address_key, lon, lat, grid_id, usage, floors,
                        created_at, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)",
                )
                .bind(&id)
                .bind(&code)
                .bind(kind)
                .bind(&building)
                .bind(&name)
                .bind(&address)
                .bind(&key)
                .bind(point.lon)
                .bind(point.lat)
                .bind(&grid.id)
                .bind(&usage)
                .bind(input.floors)
                .bind(now)
                .bind(&caller.username)
                .execute(&mut **tx)
                .await
                .db()?;
                (id, true, after.keys().map(|k| k.to_string()).collect())
            }
        };
        record_change(self, tx, actor, "place", &id, created, &changed, now, &caller.username).await?;
        Ok((id, created))
    }

    /// Adds a building or house, or updates the one with the same code.
    pub async fn save_place(&self, caller: &Caller, actor: &Actor, input: PlaceInput) -> Result<Place> {
        caller.require(GRID_BASE_MANAGE)?;
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let (id, _) = self.upsert_place(&mut tx, caller, actor, input, now).await?;
        tx.commit().await.db()?;
        self.place_row(&id).await
    }

    async fn place_row(&self, id: &str) -> Result<Place> {
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE p.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db().reader()).await.db()?;
        let mut place = [row.map(|r| place_row(&r)).ok_or_else(|| Error::not_found("place"))?];
        self.flag_tampered(&crate::integrity::PLACES, &mut place, |p| &p.id, |p| p.integrity_violation = true).await?;
        let [place] = place;
        Ok(place)
    }

    /// Buildings and houses in the caller's scope.
    pub async fn places(&self, caller: &Caller, f: &PlaceFilter) -> Result<Page<Place>> {
        let scope = caller.require(GRID_BASE_READ)?;
        let mut w = Where::new();
        scope.restrict(&mut w, "p.grid_id", None);
        self.area_filter(&mut w, "p.grid_id", f.area_id.as_deref()).await?;
        match f.kind.as_deref() {
            None | Some("") => {}
            Some(k @ ("building" | "house")) => {
                w.and("p.kind = ?", [k.into()]);
            }
            Some(other) => return Err(Error::validation(format!("unknown kind '{other}': building or house"))),
        }
        if let Some(b) = f.building_id.as_deref().filter(|s| !s.is_empty()) {
            w.and("p.building_id = ?", [b.into()]);
        }
        if let Some(q) = f.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let like = format!("%{}%", store::like_escape(q));
            w.and(
                "(p.code = ? OR p.name LIKE ? ESCAPE '\\' OR p.address LIKE ? ESCAPE '\\')",
                [q.into(), like.clone().into(), like.into()],
            );
        }
        let page = PageRequest::new(f.page, f.page_size)?;
        let (rows, total) = store::fetch_page(self.db(), &w, COLUMNS, FROM, "p.address, p.code", page).await?;
        let mut items: Vec<Place> = rows.iter().map(place_row).collect();
        self.flag_tampered(&crate::integrity::PLACES, &mut items, |p| &p.id, |p| p.integrity_violation = true).await?;
        Ok(Page { items, total, page: page.page, page_size: page.page_size })
    }

    /// The most specific place whose standard address begins `address`, if any.
    pub async fn geocode(&self, address: &str) -> Result<Option<Geocode>> {
        let key = normalize_address(address, &self.address_prefixes().await?);
        let chars: Vec<(usize, char)> = key.char_indices().collect();
        // Every prefix of four characters or more, longest first (at most 80).
        let prefixes: Vec<&str> = (4..=chars.len().min(80))
            .rev()
            .map(|n| if n == chars.len() { key.as_str() } else { &key[..chars[n].0] })
            .collect();
        if prefixes.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {COLUMNS}, p.address_key {FROM} WHERE p.address_key IN ({}) ORDER BY LENGTH(p.address_key) DESC, p.kind DESC LIMIT 1",
            crate::cases::marks(0, prefixes.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in &prefixes {
            q = q.bind(*p);
        }
        let Some(row) = q.fetch_optional(self.db().reader()).await.db()? else { return Ok(None) };
        let matched_key: String = row.get(16);
        let rest = key[matched_key.len()..].to_string();
        Ok(Some(Geocode { place: place_row(&row), matched: matched_key.chars().count(), rest }))
    }

    /// Where an address is (`grid.area.read`).
    pub async fn geocode_for(&self, caller: &Caller, address: &str) -> Result<Option<Geocode>> {
        caller.require(identity::perms::GRID_AREA_READ)?;
        if address.trim().is_empty() || address.chars().count() > 200 {
            return Err(Error::validation("give an address of at most 200 characters"));
        }
        self.geocode(address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_fold_widths_spaces_punctuation_and_admin_prefixes() {
        let p = vec!["山东省".to_string(), "济南市".to_string(), "历下区".to_string()];
        assert_eq!(normalize_address("山东省济南市历下区 山大路１２号（3号楼）", &p), "山大路12号3号楼");
        assert_eq!(normalize_address("历下区山大路12号3号楼", &p), "山大路12号3号楼");
        assert_eq!(normalize_address("济南市 山大路12号-3号楼", &p), "山大路12号3号楼");
        assert_eq!(normalize_address("山大路小区3号楼", &p), "山大路小区3号楼", "only whole admin names go");
    }

    #[test]
    fn uses_read_in_chinese_or_english_per_kind() {
        assert_eq!(usage_of("building", "住宅").unwrap(), "residential");
        assert_eq!(usage_of("house", "出租").unwrap(), "rented");
        assert!(usage_of("house", "住宅").unwrap_err().contains("自住"));
    }
}
