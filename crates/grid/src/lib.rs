//! Multi-grid fusion (多网格融合应用平台, part B of the standards): area boundaries over the org
//! tree with the point → grid index ([`areas`]), the event category taxonomy with suggestions
//! ([`categories`]), automatic assignment by category owner and territory ([`rules`]), and
//! cases — intake from every source and the case loop, which runs on the workflow engine as the
//! shipped, editable process `grid_case` ([`cases`]). `api` serves `/api/v1/grid/...`.
//!
//! Architecture invariant: a case's stage, timestamps and timeline are written by the process
//! observer inside the same transaction as the engine step that changed the instance, so they
//! cannot disagree with the process — whoever moved it (these screens, the generic inbox, a timer).

pub mod api;
pub mod areas;
pub mod attachments;
pub mod cases;
pub mod categories;
pub mod delivery;
mod intake;
pub(crate) mod integrity;
pub mod people;
pub mod places;
pub mod platforms;
pub mod registry;
pub mod rules;
pub mod simulator;
mod taxonomy;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use identity::{Actor, Identity};
use kernel::cache::TtlCell;
use kernel::{Clock, Error, Result};
use serde::{Deserialize, Serialize};
use store::{Db, DbResultExt, Row};

pub static MIGRATIONS: store::MigrationSet = store::migrations!("grid": 1 => portable "0001_grid", 2 => "0002_attachments", 3 => portable "0003_case_indexes", 4 => portable "0004_people", 5 => portable "0005_registry", 6 => portable "0006_platforms", 7 => portable "0007_places", 8 => "0008_open_nearby", 9 => portable "0009_case_seals", 10 => portable "0010_record_seals", 11 => portable "0011_main_cases_nearby");

/// The case process shipped with the platform (deployed on first start; editable in the designer
/// as long as the user task ids stay).
pub const CASE_PROCESS_XML: &str = include_str!("../process/grid_case.bpmn");
pub const CASE_PROCESS_KEY: &str = "grid_case";

/// `[grid]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridOptions {
    /// Code of the org that runs the dispatch centre (accepts and dispatches cases). When empty
    /// or unknown, the root org.
    pub dispatch_center: String,
    /// Reports of the same category within this many metres …
    pub duplicate_radius_m: f64,
    /// … and this many minutes of each other are flagged as possible duplicates.
    pub duplicate_window_minutes: i64,
    /// Largest photo accepted, in bytes (the phone page shrinks photos before sending).
    pub max_attachment_bytes: usize,
    /// Deliver messages to third-party platforms from this node.
    pub relay: bool,
    /// Messages the relay claims at a time, and how many it sends at once.
    pub outbox_batch: i64,
    pub outbox_concurrency: usize,
    /// Retry backoff after a failed delivery: doubles from the first delay up to the longest.
    pub outbox_retry_first_ms: i64,
    pub outbox_retry_max_ms: i64,
    /// When (China Standard Time, HH:MM) the nightly reconciliation with each platform runs.
    pub reconcile_at: String,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            dispatch_center: String::new(),
            duplicate_radius_m: 50.0,
            duplicate_window_minutes: 120,
            max_attachment_bytes: 2 * 1024 * 1024,
            relay: true,
            outbox_batch: 512,
            outbox_concurrency: 64,
            outbox_retry_first_ms: 2_000,
            outbox_retry_max_ms: 600_000,
            reconcile_at: "02:30".into(),
        }
    }
}

/// An org as the grid platform needs it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrgRef {
    pub id: String,
    pub code: String,
    pub name: String,
    pub kind: String,
    #[serde(skip)]
    pub parent_id: Option<String>,
    #[serde(skip)]
    pub path: String,
}

/// The grid service. Cheap to clone.
#[derive(Clone)]
pub struct Grid {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub db: Db,
    pub identity: Identity,
    pub flow: flow::Flow,
    pub clock: Arc<dyn Clock>,
    pub opts: GridOptions,
    pub index: RwLock<areas::Loaded>,
    pub orgs: RwLock<HashMap<String, OrgRef>>,
    pub writer: intake::Writer,
    pub refs: RefCache,
    /// Platforms paused after failures, by platform id.
    pub breakers: std::sync::Mutex<HashMap<String, delivery::Breaker>>,
    /// Platform connections, by platform id (dropped when a platform changes; reloaded after 2 s).
    pub conns: std::sync::Mutex<Option<(i64, platforms::Conns)>>,
    pub http: reqwest::Client,
    pub notify: std::sync::OnceLock<notify::Notify>,
    /// The MAC keys of case reports and timeline steps.
    pub seals: Arc<integrity::Seals>,
}

/// Reference data every intake reads (categories, enabled rules, the dispatch centre; the case
/// process's latest version is cached by the engine), kept for `REF_TTL_MS` and dropped at once when changed on this
/// node — so another node's change shows within two seconds.
pub(crate) struct RefCache {
    pub categories: TtlCell<Arc<Vec<categories::Category>>>,
    pub rules: TtlCell<Arc<Vec<rules::Rule>>>,
    pub center: TtlCell<OrgRef>,
}

const REF_TTL_MS: i64 = 2_000;

impl Default for RefCache {
    fn default() -> Self {
        RefCache {
            categories: TtlCell::new(REF_TTL_MS),
            rules: TtlCell::new(REF_TTL_MS),
            center: TtlCell::new(REF_TTL_MS),
        }
    }
}

impl Grid {
    /// Builds the service, deploys the case process when it is not deployed yet, and hooks the
    /// case observer into the engine.
    pub async fn new(
        db: Db,
        identity: Identity,
        flow: flow::Flow,
        clock: Arc<dyn Clock>,
        opts: GridOptions,
    ) -> Result<Grid> {
        let seals = Arc::new(integrity::Seals::new(identity.keys()));
        let grid = Grid {
            inner: Arc::new(Inner {
                db,
                identity,
                flow,
                clock,
                opts,
                index: RwLock::new(areas::Loaded::default()),
                orgs: RwLock::new(HashMap::new()),
                writer: store::group::GroupCommit::new(intake::BATCH),
                refs: RefCache::default(),
                breakers: std::sync::Mutex::new(HashMap::new()),
                conns: std::sync::Mutex::new(None),
                http: reqwest::Client::builder()
                    .pool_max_idle_per_host(256)
                    .build()
                    .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?,
                notify: std::sync::OnceLock::new(),
                seals: seals.clone(),
            }),
        };
        grid.inner.flow.observe(CASE_PROCESS_KEY, Arc::new(cases::CaseObserver { seals }));
        let sealed = grid.seal_unsealed_cases().await? + grid.seal_unsealed_records().await?;
        if sealed > 0 {
            tracing::info!(
                rows = sealed,
                "sealed cases, timeline steps and base records that had no integrity MAC yet"
            );
        }
        Ok(grid)
    }

    /// First-start work that needs the org tree: the case process and the shipped taxonomy.
    pub async fn ensure_installed(&self) -> Result<()> {
        if self.inner.flow.definition_id(CASE_PROCESS_KEY, None).await.is_err() {
            let system = identity::users::system_caller();
            self.inner.flow.deploy(&system, &Actor::system(), CASE_PROCESS_XML, Default::default()).await?;
        }
        categories::seed_taxonomy(self).await?;
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    pub fn flow(&self) -> &flow::Flow {
        &self.inner.flow
    }

    pub fn options(&self) -> &GridOptions {
        &self.inner.opts
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// An org by id (cached; the org tree changes rarely).
    pub async fn org(&self, id: &str) -> Result<OrgRef> {
        if let Some(o) = self.inner.orgs.read().expect("orgs lock").get(id) {
            return Ok(o.clone());
        }
        self.reload_orgs().await?;
        self.inner.orgs.read().expect("orgs lock").get(id).cloned().ok_or_else(|| Error::not_found("organisation"))
    }

    /// An org by code.
    pub async fn org_by_code(&self, code: &str) -> Result<Option<OrgRef>> {
        let row = sqlx::query("SELECT id FROM orgs WHERE code = $1")
            .bind(code)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        match row {
            Some(r) => Ok(Some(self.org(&r.get::<String, _>(0)).await?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn reload_orgs(&self) -> Result<()> {
        let rows = sqlx::query("SELECT id, code, name, kind, parent_id, path FROM orgs")
            .fetch_all(self.db().reader())
            .await
            .db()?;
        let map = rows
            .into_iter()
            .map(|r| {
                let o = OrgRef {
                    id: r.get(0),
                    code: r.get(1),
                    name: r.get(2),
                    kind: r.get(3),
                    parent_id: r.get(4),
                    path: r.get(5),
                };
                (o.id.clone(), o)
            })
            .collect();
        *self.inner.orgs.write().expect("orgs lock") = map;
        Ok(())
    }

    /// The org and its ancestors, nearest first.
    pub async fn lineage(&self, id: &str) -> Result<Vec<OrgRef>> {
        let mut out = Vec::new();
        let mut cur = Some(id.to_string());
        while let Some(c) = cur {
            let o = self.org(&c).await?;
            cur = o.parent_id.clone();
            out.push(o);
            if out.len() > 32 {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) fn refs(&self) -> &RefCache {
        &self.inner.refs
    }

    /// The id of the case process's latest version (cached by the engine).
    pub(crate) async fn case_definition(&self) -> Result<String> {
        self.flow().definition_id(CASE_PROCESS_KEY, None).await
    }

    /// The dispatch centre (cached).
    pub async fn dispatch_center(&self) -> Result<OrgRef> {
        self.refs().center.get(self.now(), || self.find_dispatch_center()).await
    }

    async fn find_dispatch_center(&self) -> Result<OrgRef> {
        if !self.inner.opts.dispatch_center.is_empty()
            && let Some(o) = self.org_by_code(&self.inner.opts.dispatch_center).await?
        {
            return Ok(o);
        }
        let row = sqlx::query("SELECT id FROM orgs WHERE parent_id IS NULL ORDER BY sort, code LIMIT 1")
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::conflict("there is no organisation yet"))?;
        self.org(&row.get::<String, _>(0)).await
    }
}

impl Grid {
    /// An org by id or, failing that, by code.
    pub(crate) async fn org_by_id_or_code(&self, key: &str) -> Result<Option<OrgRef>> {
        let key = key.trim();
        match self.org(key).await {
            Ok(o) => Ok(Some(o)),
            Err(_) => self.org_by_code(key).await,
        }
    }

    /// The grid named by id or code, which the caller may maintain base information in.
    pub(crate) async fn maintained_grid(&self, caller: &identity::Caller, key: &str) -> Result<OrgRef> {
        let g = self
            .org_by_id_or_code(key)
            .await?
            .ok_or_else(|| Error::validation(format!("there is no grid '{}'", key.trim())))?;
        if g.kind != "grid" {
            return Err(Error::validation(format!("{} is not a grid", g.name)));
        }
        if !caller.scope(identity::perms::GRID_BASE_MANAGE).covers_org(&areas::identity_org(&g)) {
            return Err(Error::forbidden(format!("{} is outside the grids you maintain", g.name)));
        }
        Ok(g)
    }

    /// The grid named by id or code or, when none is named, the grid of the registered place the
    /// address matches; the caller must maintain base information there.
    pub(crate) async fn grid_for(
        &self,
        caller: &identity::Caller,
        grid: &str,
        address: Option<&str>,
    ) -> Result<OrgRef> {
        if !grid.trim().is_empty() {
            return self.maintained_grid(caller, grid).await;
        }
        let address = address.map(str::trim).filter(|a| !a.is_empty()).ok_or_else(|| {
            Error::validation("give the grid, or an address that begins with a registered building's")
        })?;
        let found = self.geocode(address).await?.ok_or_else(|| {
            Error::validation(format!("no registered building matches the address '{address}': give the grid"))
        })?;
        self.maintained_grid(caller, &found.place.grid_id).await
    }

    /// Restricts `col` (an org id column) to the subtree of `area`, when given.
    pub(crate) async fn area_filter(&self, w: &mut store::Where, col: &str, area: Option<&str>) -> Result<()> {
        if let Some(a) = area.filter(|s| !s.is_empty()) {
            let o = self.org(a).await?;
            w.and(
                &format!("{col} IN (SELECT id FROM orgs WHERE path >= ? AND path < ?)"),
                [o.path.clone().into(), identity::scope::subtree_end(&o.path).into()],
            );
        }
        Ok(())
    }

    /// The change history of a base record (person, facility, organisation).
    pub(crate) async fn base_history(&self, kind: &str, id: &str) -> Result<Vec<people::BaseChange>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, fields FROM grid_base_history WHERE object_type = $1 AND object_id = $2 ORDER BY at",
        )
        .bind(kind)
        .bind(id)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        Ok(rows
            .iter()
            .map(|r| people::BaseChange {
                at: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                fields: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or_default(),
            })
            .collect())
    }
}

/// Reads an uploaded table: an XLSX workbook (its first sheet) or CSV text (UTF-8, or GB18030 as
/// Excel saves CSV on Chinese Windows). The first row names the columns; each row comes with its
/// line number (the header is line 1) or why it cannot be read.
pub(crate) fn read_table(data: &[u8]) -> Result<(csv::StringRecord, Vec<CsvRow>)> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::validation(
            "the upload is empty: send a CSV or XLSX file whose first row names the columns",
        ));
    }
    let (headers, rows) = if data.starts_with(b"PK\x03\x04") {
        read_xlsx(data)?
    } else {
        match std::str::from_utf8(data) {
            Ok(text) => read_csv(text)?,
            Err(_) => {
                let (text, _, bad) = encoding_rs::GB18030.decode(data);
                if bad {
                    return Err(Error::validation(
                        "the file is neither CSV text (UTF-8 or GB18030) nor an XLSX workbook",
                    ));
                }
                read_csv(&text)?
            }
        }
    };
    if rows.is_empty() {
        return Err(Error::validation("the file has no rows below its header row"));
    }
    Ok((headers, rows))
}

fn read_xlsx(data: &[u8]) -> Result<(csv::StringRecord, Vec<CsvRow>)> {
    use calamine::Reader;
    let mut wb = calamine::Xlsx::new(std::io::Cursor::new(data))
        .map_err(|e| Error::validation(format!("the XLSX workbook cannot be read: {e}")))?;
    let range = wb
        .worksheet_range_at(0)
        .ok_or_else(|| Error::validation("the workbook has no sheet"))?
        .map_err(|e| Error::validation(format!("the first sheet cannot be read: {e}")))?;
    let first_line = range.start().map(|(r, _)| r as usize + 1).unwrap_or(1);
    let mut it = range.rows();
    let header =
        it.next().ok_or_else(|| Error::validation("the first sheet is empty: its first row names the columns"))?;
    let names: Vec<String> = header.iter().map(|c| cell_text(c).unwrap_or_default()).collect();
    let headers = csv::StringRecord::from(names.clone());
    let mut rows = Vec::new();
    for (i, r) in it.enumerate() {
        if i >= people::MAX_ROWS {
            return Err(Error::validation(format!("at most {} rows per file; split it", people::MAX_ROWS)));
        }
        if r.iter().all(|c| match c {
            calamine::Data::Empty => true,
            calamine::Data::String(s) => s.trim().is_empty(),
            _ => false,
        }) {
            continue;
        }
        let line = first_line + i + 1;
        let cells: std::result::Result<Vec<String>, String> = r
            .iter()
            .enumerate()
            .map(|(col, c)| {
                cell_text(c).map_err(|e| format!("{}: {e}", names.get(col).map(String::as_str).unwrap_or("?")))
            })
            .collect();
        rows.push((line, cells.map(csv::StringRecord::from)));
    }
    Ok((headers, rows))
}

/// A cell as text. Whole numbers lose their ".0"; numbers too long for a spreadsheet to keep
/// exactly (ID-card numbers typed as numbers) are refused rather than read wrong.
fn cell_text(c: &calamine::Data) -> std::result::Result<String, String> {
    use calamine::Data;
    Ok(match c {
        Data::Empty => String::new(),
        Data::String(s) => s.trim().to_string(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) if f.abs() >= 1e15 => {
            return Err("a number too long for a spreadsheet to keep exactly (an ID-card number?): format the column as text and enter it again".into());
        }
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => {
            let (y, mo, day, h, mi, sec, _) = d.to_ymd_hms_milli();
            if (h, mi, sec) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{day:02}")
            } else {
                format!("{y:04}-{mo:02}-{day:02} {h:02}:{mi:02}:{sec:02}")
            }
        }
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => return Err(format!("the cell holds the error {e}")),
    })
}

/// Reads a CSV with a header row (a UTF-8 byte-order mark is skipped); each row comes with its
/// line number (the header is line 1) or why it cannot be read.
pub(crate) fn read_csv(text: &str) -> Result<(csv::StringRecord, Vec<CsvRow>)> {
    let text = text.trim_start_matches('\u{feff}');
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| Error::validation(format!("the CSV header cannot be read: {e}")))?.clone();
    let mut rows = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        if i >= people::MAX_ROWS {
            return Err(Error::validation(format!("at most {} rows per file; split it", people::MAX_ROWS)));
        }
        rows.push((i + 2, r.map_err(|e| format!("the row cannot be read: {e}"))));
    }
    Ok((headers, rows))
}

/// A CSV row with its line number, or why it cannot be read.
pub(crate) type CsvRow = (usize, std::result::Result<csv::StringRecord, String>);

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(format!("cannot encode JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A minimal XLSX workbook: one sheet, text cells inline, cells starting with '#' as numbers.
    fn xlsx(rows: &[&[&str]]) -> Vec<u8> {
        let mut sheet = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
        );
        for (r, row) in rows.iter().enumerate() {
            sheet.push_str(&format!(r#"<row r="{}">"#, r + 1));
            for (c, v) in row.iter().enumerate() {
                let at = format!("{}{}", (b'A' + c as u8) as char, r + 1);
                match v.strip_prefix('#') {
                    Some(n) => sheet.push_str(&format!(r#"<c r="{at}"><v>{n}</v></c>"#)),
                    None => sheet.push_str(&format!(r#"<c r="{at}" t="inlineStr"><is><t>{v}</t></is></c>"#)),
                }
            }
            sheet.push_str("</row>");
        }
        sheet.push_str("</sheetData></worksheet>");
        let files = [
            (
                "[Content_Types].xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_string(),
            ),
            (
                "_rels/.rels",
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_string(),
            ),
            (
                "xl/workbook.xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="人口" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_string(),
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_string(),
            ),
            ("xl/worksheets/sheet1.xml", sheet),
        ];
        let mut out = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, body) in files {
            z.start_file(name, opts).unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn xlsx_sheets_read_like_csv_with_line_numbers_and_clear_problems() {
        let data = xlsx(&[
            &["姓名", "身份证号", "手机号"],
            &["张三", "370102199001011237", "#13800138000"],
            &["", "", ""],
            &["李四", "#370102199001011234", "#1.5"],
        ]);
        let (headers, rows) = read_table(&data).unwrap();
        assert_eq!(headers.iter().collect::<Vec<_>>(), ["姓名", "身份证号", "手机号"]);
        assert_eq!(rows.len(), 2, "empty rows are skipped");
        let (line, first) = &rows[0];
        assert_eq!(*line, 2);
        let first = first.as_ref().unwrap();
        assert_eq!(first.get(2), Some("13800138000"), "whole numbers keep no '.0'");
        let (line, second) = &rows[1];
        assert_eq!(*line, 4, "line numbers are the sheet's");
        let e = second.as_ref().unwrap_err();
        assert!(e.starts_with("身份证号: a number too long"), "{e}");
    }

    #[test]
    fn csv_is_read_as_utf8_or_gb18030_and_garbage_is_refused() {
        let (h, rows) = read_table("\u{feff}姓名,网格\n王五,37010200100101\n".as_bytes()).unwrap();
        assert_eq!(h.get(0), Some("姓名"));
        assert_eq!(rows[0].1.as_ref().unwrap().get(1), Some("37010200100101"));
        let (gbk, _, _) = encoding_rs::GB18030.encode("姓名,网格\n赵六,37010200100101\n");
        let (h, rows) = read_table(&gbk).unwrap();
        assert_eq!(h.get(0), Some("姓名"));
        assert_eq!(rows[0].1.as_ref().unwrap().get(0), Some("赵六"));
        assert!(read_table(b"PK\x03\x04 not really a zip").unwrap_err().message.contains("XLSX"));
        assert!(read_table(&[0xff, 0xfe, 0x00, 0x81, 0x30]).is_err());
        assert!(read_table(b"").unwrap_err().message.contains("empty"));
        assert!(read_table(b" \r\n").unwrap_err().message.contains("empty"));
        assert!(read_table("姓名,网格\n".as_bytes()).unwrap_err().message.contains("no rows"));
    }
}
