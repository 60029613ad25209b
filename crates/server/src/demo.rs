//! The demo city: 济南市 with real district and street names, communities, grids,
//! departments, and a user for every role, so a newcomer sees the platform working.

use anyhow::anyhow;
use apikit::AppState;
use identity::orgs::NewOrg;
use identity::roles::RoleInput;
use identity::users::NewUser;
use identity::{Actor, DataScope, Org, OrgKind};

/// The org running the demo city's dispatch centre (`[grid] dispatch_center`).
pub const DISPATCH_CENTER: &str = "370100-zhzx";

/// The password of every demo user.
pub const DEMO_PASSWORD: &str = "Jinan@2026";

/// A demo account to print.
pub struct DemoAccount {
    pub username: &'static str,
    pub name: &'static str,
    pub role: &'static str,
    pub org: String,
    pub totp_secret: Option<crypto::otp::Secret>,
}

struct Street {
    code: &'static str,
    name: &'static str,
    communities: &'static [&'static str],
}

struct District {
    code: &'static str,
    name: &'static str,
    streets: &'static [Street],
    departments: &'static [&'static str],
}

const DISTRICTS: &[District] = &[
    District {
        code: "370102",
        name: "历下区",
        streets: &[
            Street {
                code: "370102001",
                name: "解放路街道",
                communities: &["山大路社区", "羊头峪社区", "甸柳新村社区"],
            },
            Street { code: "370102002", name: "千佛山街道", communities: &["千佛山社区", "历山社区"] },
            Street { code: "370102003", name: "趵突泉街道", communities: &["趵突泉社区", "黑虎泉社区"] },
            Street { code: "370102004", name: "泉城路街道", communities: &["芙蓉街社区", "县西巷社区"] },
            Street { code: "370102005", name: "大明湖街道", communities: &["大明湖社区", "百花洲社区"] },
        ],
        departments: &["历下区城市管理局", "历下区综合行政执法局", "历下区应急管理局"],
    },
    District {
        code: "370103",
        name: "市中区",
        streets: &[
            Street { code: "370103001", name: "大观园街道", communities: &["大观园社区", "经二路社区"] },
            Street { code: "370103002", name: "杆石桥街道", communities: &["杆石桥社区", "南郊社区"] },
            Street { code: "370103003", name: "四里村街道", communities: &["四里村社区", "郎茂山社区"] },
        ],
        departments: &["市中区城市管理局", "市中区生态环境分局"],
    },
    District {
        code: "370104",
        name: "槐荫区",
        streets: &[
            Street { code: "370104001", name: "振兴街街道", communities: &["振兴街社区", "南辛庄社区"] },
            Street {
                code: "370104002", name: "中大槐树街道", communities: &["中大槐树社区", "纬六路社区"]
            },
        ],
        departments: &["槐荫区城市管理局"],
    },
    District {
        code: "370105",
        name: "天桥区",
        streets: &[
            Street {
                code: "370105001", name: "天桥东街街道", communities: &["天桥东街社区", "堤口路社区"]
            },
            Street { code: "370105002", name: "北坦街道", communities: &["北坦社区", "官扎营社区"] },
        ],
        departments: &["天桥区城市管理局"],
    },
];

const CITY_DEPARTMENTS: &[(&str, &str)] = &[
    ("370100-dsj", "济南市大数据局"),
    ("370100-cgj", "济南市城市管理局"),
    ("370100-sthj", "济南市生态环境局"),
    ("370100-gaj", "济南市公安局"),
    ("370100-yjj", "济南市应急管理局"),
    ("370100-zjj", "济南市住房和城乡建设局"),
    ("370100-scjg", "济南市市场监督管理局"),
    ("370100-12345", "济南市12345市民服务热线"),
    ("370100-zhzx", "济南市城市运行管理指挥中心"),
];

async fn org(
    state: &AppState,
    actor: &Actor,
    parent: &Org,
    kind: OrgKind,
    code: String,
    name: &str,
    sort: i64,
) -> anyhow::Result<Org> {
    state
        .identity
        .create_org_as_system(
            actor,
            NewOrg { parent_id: Some(parent.id.0.clone()), kind, code, name: name.into(), sort },
        )
        .await
        .map_err(|e| anyhow!("cannot create {name}: {e}"))
}

/// Fills an empty database with the demo city. Returns the accounts to print.
pub async fn seed(state: &AppState) -> anyhow::Result<Vec<DemoAccount>> {
    let id = &state.identity;
    let actor = Actor::system();
    let root = id
        .create_org_as_system(
            &actor,
            NewOrg {
                parent_id: None, kind: OrgKind::Province, code: "370000".into(), name: "山东省".into(), sort: 0
            },
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let city = org(state, &actor, &root, OrgKind::City, "370100".into(), "济南市", 0).await?;
    let mut depts = std::collections::HashMap::new();
    for (i, (code, name)) in CITY_DEPARTMENTS.iter().enumerate() {
        let d = org(state, &actor, &city, OrgKind::Department, (*code).into(), name, i as i64).await?;
        depts.insert(*code, d);
    }
    let mut first_grid = None;
    let mut lixia = None;
    let mut lixia_street = None;
    for (di, d) in DISTRICTS.iter().enumerate() {
        let district = org(state, &actor, &city, OrgKind::District, d.code.into(), d.name, di as i64 + 100).await?;
        for (i, dept) in d.departments.iter().enumerate() {
            org(state, &actor, &district, OrgKind::Department, format!("{}-d{}", d.code, i + 1), dept, i as i64)
                .await?;
        }
        for (si, s) in d.streets.iter().enumerate() {
            let street = org(state, &actor, &district, OrgKind::Street, s.code.into(), s.name, si as i64 + 100).await?;
            for (ci, c) in s.communities.iter().enumerate() {
                let ccode = format!("{}{:03}", s.code, ci + 1);
                let community = org(state, &actor, &street, OrgKind::Community, ccode.clone(), c, ci as i64).await?;
                for g in 1..=3 {
                    let base = c.trim_end_matches("社区");
                    let grid = org(
                        state,
                        &actor,
                        &community,
                        OrgKind::Grid,
                        format!("{ccode}{g:02}"),
                        &format!("{base}第{g}网格"),
                        g,
                    )
                    .await?;
                    first_grid.get_or_insert(grid);
                }
            }
            if di == 0 && si == 0 {
                lixia_street = Some(street.clone());
            }
        }
        if di == 0 {
            lixia = Some(district);
        }
    }
    let lixia = lixia.ok_or_else(|| anyhow!("no district"))?;
    let lixia_street = lixia_street.ok_or_else(|| anyhow!("no street"))?;
    let grid = first_grid.ok_or_else(|| anyhow!("no grid"))?;
    let system = identity::users::system_caller();
    id.create_role(
        &system,
        &actor,
        RoleInput {
            code: "leader".into(),
            name: "领导".into(),
            description: "查看全市运行情况".into(),
            permissions: vec!["portal.use".into(), "org.read".into(), "user.read".into()],
            mfa_required: false,
        },
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;

    struct Plan {
        username: &'static str,
        name: &'static str,
        role: &'static str,
        org: Org,
        scope: DataScope,
        admin: bool,
    }
    let plans = [
        Plan {
            username: "sysadmin",
            name: "张立新",
            role: "sysadmin",
            org: depts["370100-dsj"].clone(),
            scope: DataScope::All,
            admin: true,
        },
        Plan {
            username: "secadmin",
            name: "刘建华",
            role: "secadmin",
            org: depts["370100-dsj"].clone(),
            scope: DataScope::All,
            admin: true,
        },
        Plan {
            username: "auditor",
            name: "陈雅琴",
            role: "auditor",
            org: depts["370100-dsj"].clone(),
            scope: DataScope::All,
            admin: true,
        },
        Plan {
            username: "leader",
            name: "王建国",
            role: "leader",
            org: city.clone(),
            scope: DataScope::All,
            admin: false,
        },
        Plan {
            username: "lixia_admin",
            name: "赵明",
            role: "org_admin",
            org: lixia.clone(),
            scope: DataScope::OrgAndBelow,
            admin: false,
        },
        Plan {
            username: "jiefang_admin",
            name: "孙丽",
            role: "org_admin",
            org: lixia_street.clone(),
            scope: DataScope::OrgAndBelow,
            admin: false,
        },
        Plan {
            username: "flowadmin",
            name: "何静",
            role: "flow_admin",
            org: depts["370100-dsj"].clone(),
            scope: DataScope::All,
            admin: false,
        },
        Plan {
            username: "gridadmin",
            name: "高峰",
            role: "grid_admin",
            org: depts["370100-zhzx"].clone(),
            scope: DataScope::All,
            admin: false,
        },
        Plan {
            username: "dispatcher",
            name: "李娜",
            role: "staff",
            org: depts["370100-zhzx"].clone(),
            scope: DataScope::All,
            admin: false,
        },
        Plan {
            username: "cgj_handler",
            name: "周强",
            role: "staff",
            org: depts["370100-cgj"].clone(),
            scope: DataScope::OwnOrg,
            admin: false,
        },
        Plan {
            username: "gridworker",
            name: "吴海燕",
            role: "staff",
            org: grid.clone(),
            scope: DataScope::OwnOrg,
            admin: false,
        },
    ];
    let mut out = Vec::new();
    for p in plans {
        let new = NewUser {
            mobile: Some(format!("1386401{:04}", out.len() * 37 + 1000)),
            email: Some(format!("{}@jinan.gov.cn", p.username)),
            // Grid workers are contract staff: 吴海燕's account ends with her two-year contract.
            expires_at: (p.username == "gridworker").then(|| id.now() + 730 * 86_400_000),
            ..NewUser::new(p.username, p.name, p.org.id.as_str())
        };
        let created = id.provision_user(&actor, new, Some((p.role, p.scope))).await.map_err(|e| anyhow!("{e}"))?;
        let uid = created.user.id.0.clone();
        id.seed_password(&actor, &uid, DEMO_PASSWORD, false).await.map_err(|e| anyhow!("{e}"))?;
        let totp_secret =
            if p.admin { Some(id.seed_totp(&actor, &uid).await.map_err(|e| anyhow!("{e}"))?) } else { None };
        out.push(DemoAccount {
            username: p.username,
            name: p.name,
            role: p.role,
            org: p.org.name.clone(),
            totp_secret,
        });
    }
    Ok(out)
}

/// The audit log's 归档与保留 screen: the records of setting up the city, archived into a verified
/// file as the daily job would (they stay in the database for the retention period).
pub async fn seed_archive(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let entry = identity::Actor::system().entry(now, "audit.archive");
    let o = &state.audit_opts;
    audit::archive(&state.db, &state.audit, o, state.clock.as_ref(), &o.archive_dir, now, entry)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    state.sealer.seal_all().await.map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Security alerts for the demo's 安全告警 screen: a legacy system of the city management bureau
/// still signing with a retired key, and a scraper probing the hotline's case numbers.
pub async fn seed_alerts(state: &AppState) -> anyhow::Result<()> {
    use identity::alerts::{AlertRule, AlertSignal};
    let alerts = [
        AlertSignal {
            rule: AlertRule::SignatureFailures,
            subject: "ip:10.37.12.45".into(),
            subject_name: Some("应用 szcg-legacy".into()),
            source_ip: Some("10.37.12.45".into()),
            count: 14,
            detail: "1 分钟内 14 次签名请求验证失败（签名错误、时间戳超出范围或随机数重复）".into(),
            blocked_until: None,
        },
        AlertSignal {
            rule: AlertRule::DeniedBurst,
            subject: "ip:172.16.80.23".into(),
            subject_name: None,
            source_ip: Some("172.16.80.23".into()),
            count: 30,
            detail: "1 分钟内 30 次请求被拒绝（未登录或无权限），最近一次：GET /api/v1/grid/cases/JN-2026-004518"
                .into(),
            blocked_until: None,
        },
    ];
    for a in alerts {
        state.identity.raise_alert(a).await.map_err(|e| anyhow!("{e}"))?;
    }
    // A department handler paging through the population register at night.
    let handler: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = 'cgj_handler'")
        .fetch_optional(state.db.reader())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(id) = handler {
        let bulk = AlertSignal {
            rule: AlertRule::BulkExport,
            subject: format!("user:{id}"),
            subject_name: Some("cgj_handler".into()),
            source_ip: Some("10.37.20.118".into()),
            count: 21_400,
            detail: "1 小时内通过列表和导出取得 21400 条数据（告警阈值 20000 条），最近一次：/api/v1/grid/people"
                .into(),
            blocked_until: None,
        };
        state.identity.raise_alert(bulk).await.map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}
