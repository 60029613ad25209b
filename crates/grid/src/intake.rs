//! Filing checked events in batches (group commit). Every intake is checked and looked up by the
//! caller's task (reads only); the writes go to one writer that files whatever has queued up —
//! up to `BATCH` events — in one transaction with multi-row INSERTs: case numbers, cases,
//! timeline rows, audit records and the started case processes. A batch that fails is filed
//! again one event at a time, so one bad event never fails the others.

use std::sync::Arc;

use audit::AuditEntry;
use kernel::{Error, Result};
use serde_json::{Map, Value, json};
use spatial::LonLat;
use store::{DbResultExt, Row, Tx, Value as Bound};

use crate::Grid;

/// Most events one transaction files.
pub const BATCH: usize = 256;
const ROWS: usize = store::ROWS_PER_STATEMENT;

/// An event checked and ready to file: everything read, nothing written.
pub(crate) struct Prepared {
    pub id: String,
    pub source: String,
    pub external_id: Option<String>,
    pub title: String,
    pub description: String,
    pub category_id: String,
    pub urgency: String,
    pub point: Option<LonLat>,
    pub address: Option<String>,
    pub grid_id: Option<String>,
    pub org_id: String,
    pub reporter: String,
    pub reporter_id: String,
    pub username: String,
    pub department: Option<String>,
    pub rule: Option<String>,
    pub vars: Map<String, Value>,
    pub attachments: Vec<String>,
    pub note: String,
    pub def: Arc<flow::runtime::Deployed>,
    /// The third-party platform that sent the event.
    pub platform: Option<String>,
    pub audit: AuditEntry,
}

/// What became of a filed event.
pub(crate) enum Filed {
    /// A new case, as committed.
    New(Box<crate::cases::Case>),
    /// The event was received before (same source and external id): that case's id.
    Existing(String),
}

/// The grid's intake as a group writer (`store::group`): batches of checked events.
pub(crate) struct IntakeWriter(Grid);

impl store::group::GroupWrite for IntakeWriter {
    type Item = Prepared;
    type Out = Filed;
    type Weak = std::sync::Weak<crate::Inner>;

    fn downgrade(&self) -> Self::Weak {
        Arc::downgrade(&self.0.inner)
    }

    fn upgrade(weak: &Self::Weak) -> Option<Self> {
        weak.upgrade().map(|inner| IntakeWriter(Grid { inner }))
    }

    async fn write(&self, items: &[Prepared]) -> Result<Vec<store::group::Filed<Filed>>> {
        Ok(write_batch(&self.0, items).await?.into_iter().map(|f| store::group::Filed::Done(Ok(f))).collect())
    }
}

/// The single writer's queue.
pub(crate) type Writer = store::group::GroupCommit<IntakeWriter>;

impl Grid {
    /// Files one checked event through the batch writer and waits until it is committed.
    pub(crate) async fn file(&self, item: Prepared) -> Result<Filed> {
        self.inner.writer.submit(&IntakeWriter(self.clone()), item).await
    }
}

/// China Standard Time day of `now`, as YYYYMMDD.
fn day(now: i64) -> String {
    kernel::calendar::china_date(now).map(|d| d.format("%Y%m%d").to_string()).unwrap_or_default()
}

/// Files a batch; answers, for each item in order, its new case or the case it repeats.
async fn write_batch(g: &Grid, all: &[Prepared]) -> Result<Vec<Filed>> {
    // The steps' actor: the reporter, when one person sent the whole batch.
    let actor = all.first().map(|i| i.username.as_str()).filter(|u| all.iter().all(|i| i.username == *u));
    let mut ft = g.flow().begin(actor).await?;
    let now = ft.now();
    // Resubmissions: events whose source and external id are filed already, or earlier in this batch.
    let mut repeat: Vec<Option<String>> = vec![None; all.len()];
    let keyed: Vec<(usize, &str, &str)> = all
        .iter()
        .enumerate()
        .filter_map(|(i, it)| it.external_id.as_deref().map(|e| (i, it.source.as_str(), e)))
        .collect();
    let mut known: std::collections::HashMap<(String, String), String> = std::collections::HashMap::new();
    for chunk in store::chunks_pow2(&keyed, ROWS * 2) {
        let cond: Vec<String> =
            (0..chunk.len()).map(|i| format!("(source = ${} AND external_id = ${})", i * 2 + 1, i * 2 + 2)).collect();
        let sql = format!("SELECT source, external_id, id FROM grid_cases WHERE {}", cond.join(" OR "));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (_, s, e) in chunk {
            q = q.bind(*s).bind(*e);
        }
        for r in q.fetch_all(&mut **ft.tx()).await.db()? {
            known.insert((r.get(0), r.get(1)), r.get(2));
        }
    }
    for (i, s, e) in &keyed {
        match known.get(&(s.to_string(), e.to_string())) {
            Some(id) => repeat[*i] = Some(id.clone()),
            None => {
                known.insert((s.to_string(), e.to_string()), all[*i].id.clone());
            }
        }
    }
    let items: Vec<&Prepared> = all.iter().zip(&repeat).filter(|(_, r)| r.is_none()).map(|(it, _)| it).collect();
    if items.is_empty() {
        drop(ft);
        return Ok(repeat.into_iter().map(|r| Filed::Existing(r.unwrap_or_default())).collect());
    }
    let backend = g.db().backend();
    let dups = possible_duplicates(g, ft.tx(), &items, now).await?;
    let day = day(now);
    let k = items.len() as i64;
    let last: i64 = sqlx::query(
        "INSERT INTO grid_counters (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = grid_counters.value + $2 RETURNING value",
    )
    .bind(format!("case:{day}"))
    .bind(k)
    .fetch_one(&mut **ft.tx())
    .await
    .db()?
    .get(0);
    let mut rows = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let case_no = format!("{day}{:05}", last - k + 1 + i as i64);
        let mut vars = it.vars.clone();
        vars.insert("case_no".into(), case_no.clone().into());
        let instance =
            ft.start(it.def.clone(), Some(it.id.clone()), Some(it.org_id.clone()), Some(it.username.clone()), vars);
        rows.push((case_no, instance));
    }
    let filed: Vec<_> = items.iter().copied().zip(rows.iter()).zip(dups.iter()).collect();
    for chunk in store::chunks_pow2(&filed, ROWS) {
        insert_cases(ft.tx(), chunk, now, &g.inner.seals).await?;
    }
    for it in items.iter().filter(|i| i.platform.is_some()) {
        sqlx::query(
            "INSERT INTO grid_platform_links (platform_id, case_id, direction, created_at) VALUES ($1, $2, 'in', $3)",
        )
        .bind(&it.platform)
        .bind(&it.id)
        .bind(now)
        .execute(&mut **ft.tx())
        .await
        .db()?;
    }
    for it in items.iter().filter(|i| !i.attachments.is_empty()) {
        Grid::link(ft.tx(), &it.username, &it.id, "report", &it.attachments).await?;
    }
    let logged: Vec<_> = items.iter().zip(dups.iter()).collect();
    for chunk in store::chunks_pow2(&logged, ROWS * 2) {
        let sql = format!(
            "INSERT INTO grid_case_log (case_id, seq, at, action, stage, actor, note, row_mac) VALUES {}",
            backend.values(chunk.len(), 8, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (it, dup) in chunk {
            let note = match dup {
                Some(_) => format!("{}；附近有同类未结事件，可能重复", it.note),
                None => it.note.clone(),
            };
            let step = crate::integrity::Step {
                case_id: &it.id,
                seq: 1,
                at: now,
                action: "report",
                stage: "report",
                actor: Some(&it.username),
                note: Some(note.as_str()),
            };
            let mac = g.inner.seals.step(&step);
            q = q
                .bind(&it.id)
                .bind(1i64)
                .bind(now)
                .bind("report")
                .bind("report")
                .bind(&it.username)
                .bind(note)
                .bind(mac);
        }
        q.execute(&mut **ft.tx()).await.db()?;
    }
    let entries: Vec<AuditEntry> = items
        .iter()
        .zip(rows.iter())
        .map(|(it, (no, _))| {
            let mut e = it.audit.clone().detail(json!({"case_no": no, "source": it.source}));
            e.at = now;
            e
        })
        .collect();
    g.identity().audit_log().append_many(ft.tx(), &entries).await?;
    // Run the processes (the observer sets each case's stage), then read the cases back as they
    // will be committed: one query for the batch instead of one per caller.
    ft.run().await?;
    let mut cases: std::collections::HashMap<String, crate::cases::Case> = std::collections::HashMap::new();
    for chunk in store::chunks_pow2(&items, ROWS * 4) {
        let sql = format!(
            "SELECT {} {} WHERE c.id IN ({})",
            crate::cases::COLUMNS,
            crate::cases::FROM,
            crate::cases::marks(0, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for it in chunk {
            q = q.bind(&it.id);
        }
        for r in q.fetch_all(&mut **ft.tx()).await.db()? {
            let c = crate::cases::from_row(&r, now);
            cases.insert(c.id.clone(), c);
        }
    }
    ft.commit().await?;
    all.iter()
        .zip(repeat)
        .map(|(it, r)| match r {
            // Filed before, or earlier in this batch (then the first one's case).
            Some(existing) => Ok(Filed::Existing(existing)),
            None => cases
                .remove(&it.id)
                .map(|c| Filed::New(Box::new(c)))
                .ok_or_else(|| Error::internal("a filed case could not be read back")),
        })
        .collect()
}

/// A case to insert: the event, its case number and process instance, the case it may repeat.
type ToInsert<'a> = ((&'a Prepared, &'a (String, String)), &'a Option<String>);

/// Height of the latitude bands the duplicate check's index is ordered by (about 55 m).
const LAT_BAND: f64 = 0.0005;

/// The latitude band of a position (`grid_cases.lat_band`).
fn lat_band(lat: f64) -> i64 {
    (lat / LAT_BAND).floor() as i64
}

/// For each event with a position, the nearest open main case (主件: not itself flagged as a
/// possible duplicate) of its category within the duplicate radius and window — filed before, or
/// earlier in this batch. Duplicates point at the case the dispatcher merges them into, not at
/// one another, and a spot where reports pile up holds a few main cases to compare with, not
/// every report made there. One query per `ROWS` events.
async fn possible_duplicates(g: &Grid, tx: &mut Tx, items: &[&Prepared], now: i64) -> Result<Vec<Option<String>>> {
    let o = g.options();
    let since = now - o.duplicate_window_minutes * 60_000;
    let radius = o.duplicate_radius_m;
    let boxed: Vec<(usize, &str, LonLat)> =
        items.iter().enumerate().filter_map(|(i, it)| it.point.map(|p| (i, it.category_id.as_str(), p))).collect();
    // Candidates per event: (distance, case id).
    let mut best: Vec<Option<(f64, String)>> = vec![None; items.len()];
    let offer = |best: &mut Vec<Option<(f64, String)>>, i: usize, d: f64, id: &str| {
        if d <= radius && best[i].as_ref().is_none_or(|(b, _)| d < *b) {
            best[i] = Some((d, id.to_string()));
        }
    };
    let dlat = radius / 110_574.0;
    // As many latitude bands for every event (the last repeated), so that the statement's shape
    // — and its prepared form — stays the same from batch to batch.
    let band_count = (2.0 * dlat / LAT_BAND) as i64 + 2;
    let band_marks = vec!["?"; band_count as usize].join(", ");
    let sqlite = g.db().backend() == store::Backend::Sqlite;
    for chunk in store::chunks_pow2(&boxed, ROWS) {
        // Per event, the nearest open case of its category in its box (planar distance, longitude
        // scaled to the latitude): a busy spot may hold hundreds, and only the nearest can be the
        // answer — when it is out of the radius, so is every other. On SQLite that is `MIN()` with
        // bare columns (they come from the row with the least distance; a row of NULLs when the
        // box is empty), which keeps no sorter per event the way `ORDER BY … LIMIT 1` does
        // (twice as fast); PostgreSQL has no bare columns. (`created_at + 0`: without statistics
        // SQLite would rather range over the category's cases by time.)
        let mut w = store::Where::in_order(g.db().backend());
        let parts: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(k, (_, cat, p))| {
                let dlon = radius / (111_320.0 * p.lat.to_radians().cos().max(0.01));
                let (low, high) = (lat_band(p.lat - dlat), lat_band(p.lat + dlat));
                let bands = (0..band_count).map(|b| Bound::Int((low + b).min(high)));
                let scale = p.lat.to_radians().cos().powi(2);
                let distance = "(lon - ?) * (lon - ?) * ? + (lat - ?) * (lat - ?)";
                let distance_values = [p.lon, p.lon, scale, p.lat, p.lat].map(Bound::Real);
                let cond = format!(
                    "category_id = ? AND lat_band IN ({band_marks}) AND status = 'open' AND possible_duplicate_of IS NULL
                        AND lon BETWEEN ? AND ? AND lat BETWEEN ? AND ? AND created_at + 0 >= ?"
                );
                let cond_values = std::iter::once(Bound::from(*cat))
                    .chain(bands)
                    .chain([p.lon - dlon, p.lon + dlon, p.lat - dlat, p.lat + dlat].map(Bound::Real))
                    .chain([Bound::Int(since)]);
                if sqlite {
                    let sql = w.fragment(
                        &format!("SELECT {k} AS k, id, lon, lat, MIN({distance}) FROM grid_cases WHERE {cond}"),
                        distance_values.into_iter().chain(cond_values),
                    );
                    format!("SELECT k, id, lon, lat FROM ({sql}) AS n{k}")
                } else {
                    let sql = w.fragment(
                        &format!(
                            "SELECT {k} AS k, id, lon, lat FROM grid_cases WHERE {cond} ORDER BY {distance} LIMIT 1"
                        ),
                        cond_values.chain(distance_values),
                    );
                    format!("SELECT * FROM ({sql}) AS n{k}")
                }
            })
            .collect();
        let q = w.bind(sqlx::query(sqlx::AssertSqlSafe(parts.join(" UNION ALL "))));
        for r in q.fetch_all(&mut **tx).await.db()? {
            let Some(id) = r.get::<Option<String>, _>(1) else { continue };
            let (i, _, p) = chunk[r.get::<i64, _>(0) as usize];
            offer(&mut best, i, p.distance_m(LonLat::new(r.get(2), r.get(3))), &id);
        }
    }
    // Events of this batch repeat the main cases before them (in order, so an earlier event's
    // answer is final when a later one looks at it).
    for (a, (i, cat, p)) in boxed.iter().enumerate() {
        for (j, other, q) in &boxed[..a] {
            if other == cat && best[*j].is_none() {
                offer(&mut best, *i, p.distance_m(*q), &items[*j].id);
            }
        }
    }
    Ok(best.into_iter().map(|b| b.map(|(_, id)| id)).collect())
}

async fn insert_cases(tx: &mut Tx, chunk: &[ToInsert<'_>], now: i64, seals: &crate::integrity::Seals) -> Result<()> {
    let sql = format!(
        "INSERT INTO grid_cases (id, case_no, source, external_id, title, description, category_id, urgency, lon, lat, address,
            grid_id, org_id, reporter, reporter_user, department_id, assigned_by_rule, possible_duplicate_of, instance_id, created_at,
            lat_band, stage, status, updated_at, report_mac) VALUES {}",
        store::Backend::of(tx).values(chunk.len(), 25, 1)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for ((it, (case_no, instance)), duplicate) in chunk {
        let mac = seals.report(&crate::integrity::Report {
            id: &it.id,
            case_no,
            source: &it.source,
            external_id: it.external_id.as_deref(),
            title: &it.title,
            description: &it.description,
            lon: it.point.map(|p| p.lon),
            lat: it.point.map(|p| p.lat),
            address: it.address.as_deref(),
            reporter: &it.reporter,
            reporter_user: Some(it.reporter_id.as_str()),
            created_at: now,
        });
        q = q
            .bind(&it.id)
            .bind(case_no)
            .bind(&it.source)
            .bind(&it.external_id)
            .bind(&it.title)
            .bind(&it.description)
            .bind(&it.category_id)
            .bind(&it.urgency)
            .bind(it.point.map(|p| p.lon))
            .bind(it.point.map(|p| p.lat))
            .bind(&it.address)
            .bind(&it.grid_id)
            .bind(&it.org_id)
            .bind(&it.reporter)
            .bind(&it.reporter_id)
            .bind(&it.department)
            .bind(&it.rule)
            .bind(duplicate)
            .bind(instance)
            .bind(now)
            .bind(it.point.map(|p| lat_band(p.lat)))
            .bind("report")
            .bind("open")
            .bind(now)
            .bind(mac);
    }
    q.execute(&mut **tx).await.db()?;
    Ok(())
}
