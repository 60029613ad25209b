//! The workflow part of the demo city: three processes deployed and instances in every state —
//! waiting in inboxes (one overdue), completed with a full timeline, and one stopped by an
//! incident (a provincial endpoint that refuses connections).

use anyhow::anyhow;
use apikit::AppState;
use flow::Flow;
use flow::runtime::{StartRequest, TaskAction, TaskFilter};
use identity::{Actor, Caller};
use serde_json::{Value, json};

const MODELS: &[&str] = &[
    include_str!("../demo/data_sharing.bpmn"),
    include_str!("../demo/citizen_request.bpmn"),
    include_str!("../demo/interface_sync.bpmn"),
    include_str!("../demo/material_supplement.bpmn"),
    // Started by a cron cycle every working morning.
    include_str!("../demo/daily_handover.bpmn"),
];
const FORMS: &str = include_str!("../demo/forms.json");

async fn caller(state: &AppState, username: &str) -> anyhow::Result<Caller> {
    let id = state
        .identity
        .user_id_by_username(username)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("no user {username}"))?;
    state.identity.load_caller(&id, None).await.map_err(|e| anyhow!("{e}"))
}

fn vars(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Completes the first open task at `element` of instance `instance` as `username`.
async fn work(
    flow: &Flow,
    state: &AppState,
    username: &str,
    instance: &str,
    element: &str,
    variables: Value,
) -> anyhow::Result<()> {
    let c = caller(state, username).await?;
    let actor = Actor { username: Some(username.into()), ..Actor::system() };
    let tasks =
        flow.tasks(&c, &TaskFilter { page_size: Some(200), ..Default::default() }).await.map_err(|e| anyhow!("{e}"))?;
    let t = tasks
        .items
        .iter()
        .find(|t| t.instance_id == instance && t.element_id == element)
        .ok_or_else(|| anyhow!("no task {element} for {username}"))?;
    if t.assignee.is_none() {
        flow.task_action(&c, &actor, &t.id, TaskAction::Claim).await.map_err(|e| anyhow!("{e}"))?;
    }
    flow.task_action(&c, &actor, &t.id, TaskAction::Complete { variables: vars(variables) })
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

pub async fn seed(state: &AppState) -> anyhow::Result<()> {
    let flow = state.services.get::<Flow>().ok_or_else(|| anyhow!("the workflow service is not registered"))?.clone();
    let admin = caller(state, "flowadmin").await?;
    let admin_actor = Actor { username: Some("flowadmin".into()), ..Actor::system() };
    let forms: serde_json::Map<String, Value> = serde_json::from_str(FORMS)?;
    for xml in MODELS {
        flow.deploy(&admin, &admin_actor, xml, forms.clone())
            .await
            .map_err(|e| anyhow!("deploying a demo model: {e}"))?;
    }
    let start = |who: &'static str, key: &'static str, bk: &'static str, v: Value| {
        let flow = flow.clone();
        async move {
            let c = caller(state, who).await?;
            let actor = Actor { username: Some(who.into()), ..Actor::system() };
            let req = StartRequest {
                process_key: key.into(),
                version: None,
                business_key: Some(bk.into()),
                variables: vars(v),
            };
            flow.start(&c, &actor, req).await.map(|i| i.id).map_err(|e| anyhow!("{e}"))
        }
    };
    let yesterday = chrono::Utc::now() - chrono::Duration::hours(20);
    let tomorrow = chrono::Utc::now() + chrono::Duration::hours(30);

    // 数据共享: one completed, one waiting at both reviews (the provider's review overdue), one at the form.
    let done = start("dispatcher", "data_sharing", "GX-2026-0101", json!({"deadline": tomorrow.to_rfc3339()})).await?;
    work(
        &flow,
        state,
        "dispatcher",
        &done,
        "fill",
        json!({"dataset": "城市部件普查数据", "mode": "api", "purpose": "网格事件定位与派单"}),
    )
    .await?;
    work(
        &flow,
        state,
        "cgj_handler",
        &done,
        "provider_review",
        json!({"decision": "agree", "opinion": "同意按接口方式共享"}),
    )
    .await?;
    work(&flow, state, "flowadmin", &done, "compliance", json!({"decision": "agree", "opinion": "符合共享目录要求"}))
        .await?;
    let late = start("dispatcher", "data_sharing", "GX-2026-0102", json!({"deadline": yesterday.to_rfc3339()})).await?;
    work(
        &flow,
        state,
        "dispatcher",
        &late,
        "fill",
        json!({"dataset": "人口基础信息（脱敏）", "mode": "exchange", "purpose": "重点人群网格化服务"}),
    )
    .await?;
    start("gridworker", "data_sharing", "GX-2026-0103", json!({"deadline": tomorrow.to_rfc3339()})).await?;

    // 12345: one at dispatch, one with the department, one closed.
    start(
        "dispatcher",
        "citizen_request",
        "12345-20261121-0042",
        json!({"handler": "cgj_handler", "title": "泉城路占道经营"}),
    )
    .await?;
    let handling = start(
        "dispatcher",
        "citizen_request",
        "12345-20261121-0017",
        json!({"handler": "cgj_handler", "title": "经十路井盖破损"}),
    )
    .await?;
    work(&flow, state, "dispatcher", &handling, "dispatch", json!({})).await?;
    let closed = start(
        "dispatcher",
        "citizen_request",
        "12345-20261120-0093",
        json!({"handler": "cgj_handler", "title": "大明湖路段噪音扰民"}),
    )
    .await?;
    work(&flow, state, "dispatcher", &closed, "dispatch", json!({})).await?;
    work(&flow, state, "cgj_handler", &closed, "handle", json!({"result": "已责令整改"})).await?;
    work(&flow, state, "dispatcher", &closed, "callback", json!({"satisfied": true})).await?;

    // 材料补正: one application waits for the applicant's supplement; for another the 一网通办
    // portal reported the supplement before the clerk had finished — the message is buffered
    // and taken the moment the instance reaches its wait.
    let waiting =
        start("dispatcher", "material_supplement", "SQ-2026-0311", json!({"applyNo": "SQ-2026-0311"})).await?;
    work(&flow, state, "dispatcher", &waiting, "accept", json!({})).await?;
    start("dispatcher", "material_supplement", "SQ-2026-0315", json!({"applyNo": "SQ-2026-0315"})).await?;
    let portal = Actor { username: Some("flowadmin".into()), ..Actor::system() };
    flow.correlate(
        &admin,
        &portal,
        flow::runtime::MessageRequest {
            name: "材料已补正".into(),
            correlation_key: Some("SQ-2026-0315".into()),
            variables: vars(json!({"supplied": ["营业执照副本", "法定代表人身份证明"]})),
            ttl_seconds: Some(7 * 86_400),
            message_id: Some("YWTB-20261122-000815".into()),
        },
    )
    .await
    .map_err(|e| anyhow!("buffering the demo message: {e}"))?;

    // 接口对接: the provincial endpoint is down; the job fails once and raises an incident.
    start(
        "flowadmin",
        "interface_sync",
        "DJ-2026-007",
        json!({"endpoint": "http://127.0.0.1:9/province/receive", "dataset": "市场主体登记"}),
    )
    .await?;
    flow.run_due_jobs().await.map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
