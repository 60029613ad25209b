//! Base information (B1.1), people (人口): ID-card numbers checked by their check digit (GB 11643),
//! personal fields encrypted at rest and masked on output unless the caller holds `pi.unmask`,
//! each person placed in a grid, key-group tags, CSV import with a per-row report (a bad row
//! imports nothing, the others import; the same ID-card number updates instead of duplicating),
//! and an edit history of which fields changed.

use std::collections::BTreeMap;

use crypto::mask::{Masker, Sensitive};
use identity::perms::{GRID_BASE_MANAGE, GRID_BASE_READ, PI_UNMASK};
use identity::{Actor, Caller};
use kernel::{Error, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{DbResultExt, Row, Tx, Where};

use crate::Grid;

pub const RESIDENCES: [&str; 3] = ["registered", "resident", "floating"];
/// Key groups (重点人群) the platform knows; others are refused so statistics stay clean.
pub const TAGS: [&str; 10] = [
    "独居老人",
    "空巢老人",
    "残疾人",
    "低保户",
    "特困人员",
    "退役军人",
    "留守儿童",
    "社区矫正",
    "精神障碍",
    "刑满释放",
];
/// Rows per CSV file.
pub const MAX_ROWS: usize = 20_000;

/// Checks a mainland resident ID-card number (18 characters, GB 11643): region, a real birth
/// date, and the check digit. Returns it normalised (upper-case X).
pub fn check_id_card(s: &str) -> std::result::Result<String, String> {
    let s = s.trim().to_ascii_uppercase();
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) || !(b[17].is_ascii_digit() || b[17] == b'X') {
        return Err("an ID-card number has 17 digits and a final digit or X".into());
    }
    let (y, m, d) = (&s[6..10], &s[10..12], &s[12..14]);
    let date = format!("{y}-{m}-{d}");
    if chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_err() || y < "1900" {
        return Err("the birth date inside the ID-card number is not a real date".into());
    }
    if b[17] as char != id_card_check_digit(&s[..17]) {
        return Err("the check digit of the ID-card number is wrong (a mistyped digit?)".into());
    }
    Ok(s)
}

/// The check digit (0-9 or X) of the first 17 digits of an ID-card number (GB 11643).
pub fn id_card_check_digit(first17: &str) -> char {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17.bytes().zip(W).map(|(c, w)| c.wrapping_sub(b'0') as u32 * w).sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

/// A person as shown (personal fields masked unless the caller may see them).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub id_card: String,
    pub gender: String,
    pub birth_year: i64,
    pub mobile: Option<String>,
    pub household: Option<String>,
    pub relation: Option<String>,
    pub residence: String,
    pub address: Option<String>,
    pub grid_id: String,
    pub grid_name: String,
    pub tags: Vec<String>,
    pub updated_at: i64,
    pub updated_by: Option<String>,
    /// The stored record fails its integrity check (changed outside the application): shown
    /// flagged, refused for changes until restored from a backup.
    pub integrity_violation: bool,
}

/// Adding or changing a person.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    pub name: String,
    pub id_card: String,
    pub mobile: Option<String>,
    pub household: Option<String>,
    pub relation: Option<String>,
    /// registered (户籍), resident (常住), floating (流动)
    pub residence: String,
    pub address: Option<String>,
    /// The grid by id or code; when absent, the grid of the registered building the address begins with.
    #[serde(default)]
    pub grid: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PersonFilter {
    /// People in this area (any org).
    pub area_id: Option<String>,
    pub tag: Option<String>,
    pub residence: Option<String>,
    /// An exact ID-card number.
    pub id_card: Option<String>,
    pub household: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// One row of an import that could not be taken.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowProblem {
    /// The line in the file (the header is line 1).
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordImport {
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    pub problems: Vec<RowProblem>,
}

/// One change in a record's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BaseChange {
    pub at: i64,
    pub actor: Option<String>,
    pub action: String,
    pub fields: Vec<String>,
}

/// A checked person, ready to store.
struct Valid {
    name: String,
    id_card: String,
    gender: &'static str,
    birth_year: i64,
    mobile: Option<String>,
    household: Option<String>,
    relation: Option<String>,
    residence: String,
    address: Option<String>,
    grid_id: String,
    tags: Vec<String>,
}

impl Valid {
    fn fields(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("name", self.name.clone()),
            ("mobile", self.mobile.clone().unwrap_or_default()),
            ("household", self.household.clone().unwrap_or_default()),
            ("relation", self.relation.clone().unwrap_or_default()),
            ("residence", self.residence.clone()),
            ("address", self.address.clone().unwrap_or_default()),
            ("grid", self.grid_id.clone()),
            ("tags", self.tags.join(",")),
        ])
    }
}

/// What a personal field that does not decrypt shows.
const UNREADABLE: &str = "（无法解密）";

const COLUMNS: &str =
    "p.id, p.name_enc, p.id_card_enc, p.gender, p.birth_year, p.mobile_enc, p.household, p.relation, p.residence,
    p.address_enc, p.grid_id, g.name, p.tags, p.updated_at, p.updated_by";
const FROM: &str = "FROM grid_people p JOIN orgs g ON g.id = p.grid_id";

fn opt(v: Option<String>, what: &str, max: usize) -> Result<Option<String>> {
    let v = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(s) = &v
        && s.chars().count() > max
    {
        return Err(Error::validation(format!("{what} must be at most {max} characters")));
    }
    Ok(v)
}

impl Grid {
    fn masker(caller: &Caller) -> Masker {
        Masker { unmask: caller.has(PI_UNMASK) }
    }

    fn person_from_row(&self, r: &store::AnyRow, m: Masker) -> Result<Person> {
        let keys = self.identity().keys();
        // A field that does not decrypt was changed in the database (the row's seal fails too and
        // flags the record) or its key is gone: shown as such, never a failed page.
        let open = |ctx: &str, v: Option<String>| -> Result<Option<String>> {
            Ok(v.map(|e| {
                keys.open(ctx, &e).unwrap_or_else(|_| {
                    tracing::error!(field = ctx, "a personal field does not decrypt");
                    UNREADABLE.to_string()
                })
            }))
        };
        Ok(Person {
            id: r.get(0),
            name: m.apply(Sensitive::Name, &open("grid_people.name", Some(r.get(1)))?.unwrap_or_default()),
            id_card: m.apply(Sensitive::IdCard, &open("grid_people.id_card", Some(r.get(2)))?.unwrap_or_default()),
            gender: r.get(3),
            birth_year: r.get(4),
            mobile: m.apply_opt(Sensitive::Mobile, open("grid_people.mobile", r.get(5))?.as_deref()),
            household: r.get(6),
            relation: r.get(7),
            residence: r.get(8),
            address: m.apply_opt(Sensitive::Address, open("grid_people.address", r.get(9))?.as_deref()),
            grid_id: r.get(10),
            grid_name: r.get(11),
            tags: r.get::<String, _>(12).split(',').filter(|t| !t.is_empty()).map(String::from).collect(),
            updated_at: r.get(13),
            updated_by: r.get(14),
            integrity_violation: false,
        })
    }

    async fn check_person(&self, caller: &Caller, p: PersonInput) -> Result<Valid> {
        let name = p.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 50 {
            return Err(Error::validation("the name must be 1-50 characters"));
        }
        let id_card = check_id_card(&p.id_card).map_err(Error::validation)?;
        let gender = if (id_card.as_bytes()[16] - b'0') % 2 == 1 { "male" } else { "female" };
        let birth_year: i64 = id_card[6..10].parse().unwrap_or(0);
        let mobile = opt(p.mobile, "the mobile number", 20)?;
        if let Some(m) = &mobile
            && (m.len() != 11 || !m.starts_with('1') || !m.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Error::validation("a mobile number has 11 digits starting with 1"));
        }
        let residence = match p.residence.trim() {
            "registered" | "户籍" | "户籍人口" => "registered",
            "resident" | "常住" | "常住人口" => "resident",
            "floating" | "流动" | "流动人口" => "floating",
            other => {
                return Err(Error::validation(format!(
                    "unknown residence type '{other}': registered (户籍), resident (常住) or floating (流动)"
                )));
            }
        }
        .to_string();
        let g = self.grid_for(caller, &p.grid, p.address.as_deref()).await?;
        let mut tags = Vec::new();
        for t in p.tags.iter().flat_map(|t| t.split(['、', ',', '，', ';'])).map(str::trim).filter(|t| !t.is_empty())
        {
            if !TAGS.contains(&t) {
                return Err(Error::validation(format!("unknown key-group tag '{t}': use {}", TAGS.join("、"))));
            }
            if !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        }
        Ok(Valid {
            name,
            id_card,
            gender,
            birth_year,
            mobile,
            household: opt(p.household, "the household number", 40)?,
            relation: opt(p.relation, "the relation", 20)?,
            residence,
            address: opt(p.address, "the address", 200)?,
            grid_id: g.id,
            tags,
        })
    }

    /// Writes a checked person (new, or the existing one with the same ID-card number);
    /// returns (id, created, fields changed).
    async fn store_person(
        &self,
        tx: &mut Tx,
        v: &Valid,
        who: &str,
        now: i64,
        action: &str,
    ) -> Result<(String, bool, Vec<String>)> {
        let keys = self.identity().keys();
        let idx = keys.blind_index("grid_people.id_card", &v.id_card);
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} {FROM} WHERE p.id_card_idx = $1")))
            .bind(&idx)
            .fetch_optional(&mut **tx)
            .await
            .db()?;
        let seal = |ctx: &str, s: &Option<String>| s.as_ref().map(|s| keys.seal(ctx, s));
        let tags = if v.tags.is_empty() { String::new() } else { format!(",{},", v.tags.join(",")) };
        let (id, created, changed) = match existing {
            Some(row) => {
                self.ensure_record_intact(tx, &crate::integrity::PEOPLE, &row.get::<String, _>(0)).await?;
                let old = self.person_from_row(&row, Masker { unmask: true })?;
                let before = Valid {
                    name: old.name.clone(),
                    id_card: v.id_card.clone(),
                    gender: v.gender,
                    birth_year: v.birth_year,
                    mobile: old.mobile.clone(),
                    household: old.household.clone(),
                    relation: old.relation.clone(),
                    residence: old.residence.clone(),
                    address: old.address.clone(),
                    grid_id: old.grid_id.clone(),
                    tags: old.tags.clone(),
                }
                .fields();
                let changed: Vec<String> = v
                    .fields()
                    .iter()
                    .filter(|(k, val)| before.get(*k) != Some(val))
                    .map(|(k, _)| k.to_string())
                    .collect();
                if !changed.is_empty() {
                    sqlx::query(
                        "UPDATE grid_people SET name_enc = $2, mobile_enc = $3, household = $4, relation = $5, residence = $6,
                            address_enc = $7, grid_id = $8, tags = $9, updated_at = $10, updated_by = $11 WHERE id = $1",
                    )
                    .bind(&old.id)
                    .bind(keys.seal("grid_people.name", &v.name))
                    .bind(seal("grid_people.mobile", &v.mobile))
                    .bind(&v.household)
                    .bind(&v.relation)
                    .bind(&v.residence)
                    .bind(seal("grid_people.address", &v.address))
                    .bind(&v.grid_id)
                    .bind(&tags)
                    .bind(now)
                    .bind(who)
                    .execute(&mut **tx)
                    .await
                    .db()?;
                }
                (old.id, false, changed)
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "INSERT INTO grid_people (id, name_enc, id_card_enc, id_card_idx, gender, birth_year, mobile_enc, household, relation,
                        residence, address_enc, grid_id, tags, created_at, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)",
                )
                .bind(&id)
                .bind(keys.seal("grid_people.name", &v.name))
                .bind(keys.seal("grid_people.id_card", &v.id_card))
                .bind(&idx)
                .bind(v.gender)
                .bind(v.birth_year)
                .bind(seal("grid_people.mobile", &v.mobile))
                .bind(&v.household)
                .bind(&v.relation)
                .bind(&v.residence)
                .bind(seal("grid_people.address", &v.address))
                .bind(&v.grid_id)
                .bind(&tags)
                .bind(now)
                .bind(who)
                .execute(&mut **tx)
                .await
                .db()?;
                (id, true, v.fields().keys().map(|k| k.to_string()).collect())
            }
        };
        if !changed.is_empty() {
            sqlx::query("INSERT INTO grid_base_history (object_type, object_id, at, actor, action, fields) VALUES ('person', $1, $2, $3, $4, $5)")
                .bind(&id)
                .bind(now)
                .bind(who)
                .bind(if created { "create" } else { action })
                .bind(serde_json::to_string(&changed).unwrap_or_default())
                .execute(&mut **tx)
                .await
                .db()?;
            self.reseal(tx, &crate::integrity::PEOPLE, "id", &id).await?;
        }
        Ok((id, created, changed))
    }

    /// Adds a person, or updates the one with the same ID-card number.
    pub async fn save_person(&self, caller: &Caller, actor: &Actor, input: PersonInput) -> Result<Person> {
        caller.require(GRID_BASE_MANAGE)?;
        let v = self.check_person(caller, input).await?;
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let (id, created, changed) = self.store_person(&mut tx, &v, &caller.username, now, "update").await?;
        // The audit record names the fields, never their values.
        let entry = actor
            .entry(now, if created { "grid.person.create" } else { "grid.person.update" })
            .object("grid_person", &id)
            .detail(json!({"fields": changed}));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        self.person(caller, &id).await
    }

    pub async fn person(&self, caller: &Caller, id: &str) -> Result<Person> {
        let scope = caller.require(GRID_BASE_READ)?;
        let mut w = Where::new();
        scope.restrict(&mut w, "p.grid_id", None);
        w.and("p.id = ?", [id.into()]);
        let sql = format!("SELECT {COLUMNS} {FROM} {}", w.clause());
        let row = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_optional(self.db().reader()).await.db()?;
        let row = row.ok_or_else(|| Error::not_found("person"))?;
        let mut person = [self.person_from_row(&row, Self::masker(caller))?];
        self.flag_tampered(&crate::integrity::PEOPLE, &mut person, |p| &p.id, |p| p.integrity_violation = true).await?;
        let [person] = person;
        Ok(person)
    }

    pub async fn people(&self, caller: &Caller, f: &PersonFilter) -> Result<Page<Person>> {
        let scope = caller.require(GRID_BASE_READ)?;
        let mut w = Where::new();
        scope.restrict(&mut w, "p.grid_id", None);
        self.area_filter(&mut w, "p.grid_id", f.area_id.as_deref()).await?;
        if let Some(t) = f.tag.as_deref().filter(|s| !s.is_empty()) {
            w.and("p.tags LIKE ?", [format!("%,{},%", store::like_escape(t)).into()]);
        }
        if let Some(r) = f.residence.as_deref().filter(|s| !s.is_empty()) {
            w.and("p.residence = ?", [r.into()]);
        }
        if let Some(c) = f.id_card.as_deref().filter(|s| !s.is_empty()) {
            let c = c.trim().to_ascii_uppercase();
            w.and("p.id_card_idx = ?", [self.identity().keys().blind_index("grid_people.id_card", &c).into()]);
        }
        if let Some(h) = f.household.as_deref().filter(|s| !s.is_empty()) {
            w.and("p.household = ?", [h.trim().into()]);
        }
        let page = PageRequest::new(f.page, f.page_size)?;
        let (rows, total) =
            store::fetch_page(self.db(), &w, COLUMNS, FROM, "p.grid_id, p.household, p.id", page).await?;
        let m = Self::masker(caller);
        let mut items = rows.iter().map(|r| self.person_from_row(r, m)).collect::<Result<Vec<_>>>()?;
        self.flag_tampered(&crate::integrity::PEOPLE, &mut items, |p| &p.id, |p| p.integrity_violation = true).await?;
        Ok(Page { items, total, page: page.page, page_size: page.page_size })
    }

    /// Which fields changed when, and by whom.
    pub async fn person_history(&self, caller: &Caller, id: &str) -> Result<Vec<BaseChange>> {
        self.person(caller, id).await?;
        self.base_history("person", id).await
    }

    /// Imports people from CSV (UTF-8, header row; columns by Chinese or English name:
    /// 姓名/name, 身份证号/id_card, 手机号/mobile, 户号/household, 与户主关系/relation,
    /// 人口类型/residence, 住址/address, 网格/grid (code), 标签/tags). Every row is checked; rows with
    /// a problem are reported by line and import nothing; the others import together.
    pub async fn import_people(&self, caller: &Caller, actor: &Actor, data: &[u8]) -> Result<RecordImport> {
        caller.require(GRID_BASE_MANAGE)?;
        let (headers, records) = crate::read_table(data)?;
        let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h));
        let c_name = col(&["姓名", "name"]).ok_or_else(|| Error::validation("the file has no 姓名 (name) column"))?;
        let c_id = col(&["身份证号", "身份证号码", "id_card"])
            .ok_or_else(|| Error::validation("the file has no 身份证号 (id_card) column"))?;
        let c_grid = col(&["网格", "网格编码", "grid"]);
        let c_res = col(&["人口类型", "residence"]);
        let (c_mob, c_hh, c_rel, c_addr, c_tags) = (
            col(&["手机号", "mobile"]),
            col(&["户号", "household"]),
            col(&["与户主关系", "relation"]),
            col(&["住址", "address"]),
            col(&["标签", "tags"]),
        );
        if c_grid.is_none() && c_addr.is_none() {
            return Err(Error::validation(
                "the file has neither a 网格 (grid) nor a 住址 (address) column to place people by",
            ));
        }
        let mut valid = Vec::new();
        let mut problems = Vec::new();
        let mut seen = std::collections::HashMap::new();
        let rows = records.len();
        for (line, rec) in records {
            let rec = match rec {
                Ok(r) => r,
                Err(message) => {
                    problems.push(RowProblem { line, message });
                    continue;
                }
            };
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(String::from).filter(|s| !s.is_empty());
            let input = PersonInput {
                name: get(Some(c_name)).unwrap_or_default(),
                id_card: get(Some(c_id)).unwrap_or_default(),
                mobile: get(c_mob),
                household: get(c_hh),
                relation: get(c_rel),
                residence: get(c_res).unwrap_or_else(|| "registered".into()),
                address: get(c_addr),
                grid: get(c_grid).unwrap_or_default(),
                tags: get(c_tags).map(|t| vec![t]).unwrap_or_default(),
            };
            match self.check_person(caller, input).await {
                Ok(v) => {
                    if let Some(first) = seen.insert(v.id_card.clone(), line) {
                        problems.push(RowProblem { line, message: format!("the same ID-card number as line {first}") });
                    } else {
                        valid.push(v);
                    }
                }
                Err(e) => problems.push(RowProblem { line, message: e.message }),
            }
        }
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let (mut created, mut updated) = (0, 0);
        for v in &valid {
            let (_, new, changed) = self.store_person(&mut tx, v, &caller.username, now, "import").await?;
            if new {
                created += 1;
            } else if !changed.is_empty() {
                updated += 1;
            }
        }
        let entry = actor
            .entry(now, "grid.person.import")
            .object("grid_person", format!("{} rows", rows))
            .detail(json!({"created": created, "updated": updated, "refused": problems.len()}));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        Ok(RecordImport { rows, created, updated, problems })
    }
}

#[cfg(test)]
mod tests {
    use super::check_id_card;

    #[test]
    fn id_card_numbers_are_checked_by_their_check_digit() {
        // The example of GB 11643-1999.
        assert_eq!(check_id_card("11010519491231002x").unwrap(), "11010519491231002X");
        assert!(check_id_card("110105194912310021").unwrap_err().contains("check digit"));
        assert!(check_id_card("110105194913310029").unwrap_err().contains("birth date"));
        assert!(check_id_card("1101051949123100").unwrap_err().contains("17 digits"));
    }
}
