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
use store::{DbResultExt, Row, Tx};
use tokio::sync::{mpsc, oneshot};

use crate::Grid;

/// Most events one transaction files.
pub const BATCH: usize = 256;
/// Rows per multi-row INSERT (SQLite binds parameters by a linear name lookup).
const ROWS: usize = 8;

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
    pub duplicate: Option<String>,
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

type Job = (Prepared, oneshot::Sender<Result<Filed>>);

/// The single writer's queue.
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Grid {
    /// Files one checked event through the batch writer and waits until it is committed.
    pub(crate) async fn file(&self, item: Prepared) -> Result<Filed> {
        let sender = {
            let mut w = self.inner.writer.lock().expect("writer lock");
            if w.as_ref().is_none_or(|w| w.tx.is_closed()) {
                *w = Some(spawn_writer(self.clone()));
            }
            w.as_ref().map(|w| w.tx.clone()).expect("writer")
        };
        let (done, wait) = oneshot::channel();
        sender
            .send((item, done))
            .await
            .map_err(|_| Error::new(kernel::ErrorCode::Unavailable, "the intake writer stopped; try again"))?;
        wait.await.map_err(|_| Error::new(kernel::ErrorCode::Unavailable, "the intake writer stopped; try again"))?
    }
}

fn spawn_writer(g: Grid) -> Writer {
    let (tx, mut rx) = mpsc::channel::<Job>(BATCH * 4);
    // The task holds a weak reference only, so it ends with the service.
    let weak = Arc::downgrade(&g.inner);
    drop(g);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let Some(inner) = weak.upgrade() else { break };
            let g = Grid { inner };
            let (items, replies): (Vec<Prepared>, Vec<_>) = jobs.into_iter().unzip();
            match write_batch(&g, &items).await {
                Ok(filed) => {
                    for (r, f) in replies.into_iter().zip(filed) {
                        let _ = r.send(Ok(f));
                    }
                }
                Err(e) if items.len() == 1 => {
                    if let Some(r) = replies.into_iter().next() {
                        let _ = r.send(Err(e));
                    }
                }
                Err(_) => {
                    // One of them spoiled the batch: file each alone.
                    for (item, reply) in items.into_iter().zip(replies) {
                        let r = write_batch(&g, std::slice::from_ref(&item)).await;
                        let _ = reply.send(r.map(|mut f| f.remove(0)));
                    }
                }
            }
        }
    });
    Writer { tx }
}

/// China Standard Time day of `now`, as YYYYMMDD.
fn day(now: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now + 8 * 3_600_000)
        .map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_default()
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
    for chunk in keyed.chunks(ROWS * 2) {
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
    for chunk in items.iter().copied().zip(rows.iter()).collect::<Vec<_>>().chunks(ROWS) {
        insert_cases(ft.tx(), chunk, now).await?;
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
    for chunk in items.chunks(ROWS * 2) {
        let mut sql = String::from("INSERT INTO grid_case_log (case_id, seq, at, action, stage, actor, note) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 4;
            sql.push_str(&format!(
                "{}(${}, 1, ${}, 'report', 'report', ${}, ${})",
                if i == 0 { "" } else { ", " },
                b + 1,
                b + 2,
                b + 3,
                b + 4
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for it in chunk {
            q = q.bind(&it.id).bind(now).bind(&it.username).bind(&it.note);
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
    for chunk in items.chunks(ROWS * 4) {
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

async fn insert_cases(tx: &mut Tx, chunk: &[(&Prepared, &(String, String))], now: i64) -> Result<()> {
    const COLS: usize = 20;
    let mut sql = String::from(
        "INSERT INTO grid_cases (id, case_no, source, external_id, title, description, category_id, urgency, lon, lat, address,
            grid_id, org_id, reporter, reporter_user, department_id, assigned_by_rule, possible_duplicate_of, instance_id, created_at,
            stage, status, updated_at) VALUES ",
    );
    for i in 0..chunk.len() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for c in 0..COLS {
            sql.push_str(&format!("${}, ", i * COLS + c + 1));
        }
        sql.push_str(&format!("'report', 'open', ${})", i * COLS + COLS));
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (it, (case_no, instance)) in chunk {
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
            .bind(&it.duplicate)
            .bind(instance)
            .bind(now);
    }
    q.execute(&mut **tx).await.db()?;
    Ok(())
}
