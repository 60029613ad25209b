//! The grid part of the demo city: boundaries for every district, street, community and grid
//! (imported through the same GeoJSON import users have), owner departments of the categories,
//! assignment rules, a grid worker, and cases from every source in every stage.

use anyhow::anyhow;
use apikit::AppState;
use grid::Grid;
use grid::cases::{CaseAction, IntakeRequest};
use grid::categories::CategoryInput;
use grid::rules::RuleInput;
use identity::{Actor, Caller};
use serde_json::{Map, Value};
use spatial::{BBox, Shape, synth};

/// The demo city's extent (central Jinan), split west → east into its districts.
const CITY: BBox = BBox { min_lon: 116.93, min_lat: 36.62, max_lon: 117.09, max_lat: 36.70 };
/// Districts from west to east.
const DISTRICT_ORDER: &[&str] = &["370104", "370105", "370103", "370102"];
/// A community whose boundary file adds a fourth grid (for a new housing estate): the import
/// creates it in the org tree, as a grid administrator's redrawn division would.
const REDRAWN_COMMUNITY: (&str, &str) = ("370105002002", "官扎营");

async fn caller(state: &AppState, username: &str) -> anyhow::Result<(Caller, Actor)> {
    let id = state
        .identity
        .user_id_by_username(username)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("no user {username}"))?;
    let c = state.identity.load_caller(&id, None).await.map_err(|e| anyhow!("{e}"))?;
    Ok((c, Actor { username: Some(username.into()), ..Actor::system() }))
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Shape {
    Shape::polygon(vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
}

/// Boundaries for the whole demo tree: districts and streets are columns, communities split
/// their street into rows, grids split their community with wavy shared edges. Returns the
/// GeoJSON and each grid's code with a point inside it.
async fn boundaries(state: &AppState) -> anyhow::Result<(String, Vec<(String, [f64; 2])>)> {
    use sqlx::Row;
    let rows = sqlx::query("SELECT id, parent_id, code, kind FROM orgs ORDER BY sort, code")
        .fetch_all(state.db.reader())
        .await?;
    let orgs: Vec<(String, Option<String>, String, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    let children = |parent: &str, kind: &str| -> Vec<(String, String)> {
        orgs.iter()
            .filter(|o| o.1.as_deref() == Some(parent) && o.3 == kind)
            .map(|o| (o.0.clone(), o.2.clone()))
            .collect()
    };
    let id_of = |code: &str| orgs.iter().find(|o| o.2 == code).map(|o| o.0.clone());
    let streets_per_district: Vec<(String, Vec<(String, String)>)> = DISTRICT_ORDER
        .iter()
        .filter_map(|code| id_of(code).map(|id| (code.to_string(), children(&id, "street"))))
        .collect();
    let columns: usize = streets_per_district.iter().map(|(_, s)| s.len()).sum();
    let w = (CITY.max_lon - CITY.min_lon) / columns as f64;
    let mut features = Vec::new();
    let mut points = Vec::new();
    let feature = |code: &str, shape: &Shape| {
        spatial::geojson::feature(shape, Map::from_iter([("code".to_string(), Value::String(code.into()))]))
    };
    let mut col = 0usize;
    let mut seed = 1u64;
    for (dcode, streets) in &streets_per_district {
        let x0 = CITY.min_lon + col as f64 * w;
        features.push(feature(dcode, &rect(x0, CITY.min_lat, x0 + w * streets.len() as f64, CITY.max_lat)));
        for (sid, scode) in streets {
            let sx0 = CITY.min_lon + col as f64 * w;
            col += 1;
            features.push(feature(scode, &rect(sx0, CITY.min_lat, sx0 + w, CITY.max_lat)));
            let communities = children(sid, "community");
            let h = (CITY.max_lat - CITY.min_lat) / communities.len().max(1) as f64;
            for (ci, (cid, ccode)) in communities.iter().enumerate() {
                let cy0 = CITY.min_lat + ci as f64 * h;
                let area = BBox { min_lon: sx0, min_lat: cy0, max_lon: sx0 + w, max_lat: cy0 + h };
                features.push(feature(ccode, &rect(area.min_lon, area.min_lat, area.max_lon, area.max_lat)));
                let grids = children(cid, "grid");
                let added = (ccode == REDRAWN_COMMUNITY.0).then(|| format!("{ccode}{:02}", grids.len() + 1));
                seed += 1;
                let rows = grids.len().max(1) + usize::from(added.is_some());
                let shapes = synth::tessellate(area, 1, rows, 10, seed);
                for ((_, gcode), shape) in grids.iter().zip(shapes.iter()) {
                    features.push(feature(gcode, shape));
                    points.push((gcode.clone(), shape.label_point()));
                }
                if let (Some(code), Some(shape)) = (added, shapes.last()) {
                    let name = format!("{}第{}网格", REDRAWN_COMMUNITY.1, grids.len() + 1);
                    let props = Map::from_iter(
                        [("code", code.as_str()), ("name", &name), ("level", "grid"), ("parent_code", ccode)]
                            .map(|(k, v)| (k.to_string(), Value::String(v.to_string()))),
                    );
                    features.push(spatial::geojson::feature(shape, props));
                    points.push((code, shape.label_point()));
                }
            }
        }
    }
    Ok((spatial::geojson::collection(features).to_string(), points))
}

/// Everything but the cases: boundaries, category owners, rules, the grid worker. Tests use it too.
pub async fn seed_setup(state: &AppState) -> anyhow::Result<Vec<(String, [f64; 2])>> {
    let g = state.services.get::<Grid>().ok_or_else(|| anyhow!("the grid service is not registered"))?.clone();
    let (admin, actor) = caller(state, "gridadmin").await?;
    let (text, points) = boundaries(state).await?;
    let report = g
        .import_areas(&admin, &actor, &text, &grid::areas::ImportParams { create_orgs: true, ..Default::default() })
        .await
        .map_err(|e| anyhow!("importing the demo boundaries: {e}"))?;
    if report.imported == 0 {
        return Err(anyhow!(
            "the demo boundaries were refused: {:?} {:?}",
            report.feature_problems,
            report.geometry_problems
        ));
    }
    // Owners (属主) of the categories.
    let dept = |code: &str| {
        let g = g.clone();
        let code = code.to_string();
        async move {
            g.org_by_code(&code)
                .await
                .map_err(|e| anyhow!("{e}"))?
                .map(|o| o.id)
                .ok_or_else(|| anyhow!("no org {code}"))
        }
    };
    let cgj = dept("370100-cgj").await?;
    let zjj = dept("370100-zjj").await?;
    let yjj = dept("370100-yjj").await?;
    let sthj = dept("370100-sthj").await?;
    let cats = g.categories(&admin).await.map_err(|e| anyhow!("{e}"))?;
    for c in cats.iter().filter(|c| c.parent_id.is_some()) {
        let owner = match &c.code[..4] {
            "BJ01" | "BJ02" | "BJ03" | "BJ04" | "BJ05" | "SJ01" | "SJ02" | "SJ05" | "SJ06" => Some(&cgj),
            "SJ03" if c.code == "SJ0302" => Some(&sthj),
            "SJ03" => Some(&zjj),
            "SJ04" => Some(&yjj),
            _ => None,
        };
        if let Some(o) = owner {
            let input = CategoryInput {
                parent_id: c.parent_id.clone(),
                code: c.code.clone(),
                name: c.name.clone(),
                kind: None,
                owner_org_id: Some(o.clone()),
                urgencies: None,
                limits: None,
                keywords: None,
                sort: None,
                enabled: None,
            };
            g.save_category(&admin, &actor, Some(&c.id), input).await.map_err(|e| anyhow!("{e}"))?;
        }
    }
    // Territory rules (属地).
    let top = |code: &str| cats.iter().find(|c| c.code == code).map(|c| c.id.clone());
    let lixia = dept("370102").await?;
    let shizhong = dept("370103").await?;
    let rules = [
        (
            "历下区街面秩序由区综合行政执法局处置",
            top("SJ05"),
            Some(lixia.clone()),
            Some(dept("370102-d2").await?),
            None,
            10,
        ),
        (
            "历下区市容环境由区城市管理局处置",
            top("SJ01"),
            Some(lixia.clone()),
            Some(dept("370102-d1").await?),
            None,
            10,
        ),
        ("市中区噪声扰民由区生态环境分局处置", top("SJ0601"), Some(shizhong), Some(dept("370103-d2").await?), None, 10),
        ("矛盾纠纷属地街道调处", top("ZZ01"), None, None, Some("street"), 0),
        ("治安隐患属地街道处置", top("ZZ02"), None, None, Some("street"), 0),
        ("安全隐患属地街道处置", top("ZZ03"), None, None, Some("street"), 0),
        ("特殊人群属地社区管理", top("ZZ04"), None, None, Some("community"), 0),
        ("社情民意属地街道办理", top("ZZ05"), None, None, Some("street"), 0),
    ];
    for (name, category, area, department, level, priority) in rules {
        let input = RuleInput {
            name: name.into(),
            category_id: category,
            area_org_id: area,
            department_id: department,
            target_level: level.map(String::from),
            priority,
            enabled: None,
        };
        g.save_rule(&admin, &actor, None, input).await.map_err(|e| anyhow!("{name}: {e}"))?;
    }
    // The grid worker of the first grid.
    let (gw, _) = caller(state, "gridworker").await?;
    g.assign_worker(&admin, &actor, &gw.primary_org_id.0, "gridworker").await.map_err(|e| anyhow!("{e}"))?;
    Ok(points)
}

/// Buildings 1-3 of 山大路 in the grid worker's grid and 7-9 in the next one, each with six
/// houses, imported from CSV as a street office would — the demo residents live in them, and
/// addresses typed into events find them.
async fn seed_places(state: &AppState, g: &Grid) -> anyhow::Result<()> {
    let (admin, actor) = caller(state, "gridadmin").await?;
    let mut csv = String::from("编码,类型,所属楼栋,名称,地址,经度,纬度,用途,层数\n");
    for (grid, first) in [("37010200100101", 1u32), ("37010200100102", 7)] {
        let org = g.org_by_code(grid).await.map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("no grid {grid}"))?;
        let p = g.area_label_point(&org.id).await.map_err(|e| anyhow!("{e}"))?;
        for i in 0..3u32 {
            let b = first + i;
            let code = format!("370102-SDL-{b:03}");
            csv.push_str(&format!(
                "{code},楼栋,,{b}号楼,历下区山大路{b}号楼,{:.6},{:.6},{},{}\n",
                p.lon + (i as f64 - 1.0) * 0.0004,
                p.lat + 0.0002,
                if b % 3 == 0 { "商住" } else { "住宅" },
                6 + b % 3 * 5,
            ));
            for unit in 1..=2u32 {
                for room in [101u32, 201, 301] {
                    let usage = match (b + unit + room) % 7 {
                        0 => "出租",
                        3 => "空置",
                        _ => "自住",
                    };
                    csv.push_str(&format!("{code}-{unit}-{room},房屋,{code},{unit}单元{room}室,,,,{usage},\n"));
                }
            }
        }
    }
    let r = g.import_registry(&admin, &actor, "place", csv.as_bytes()).await.map_err(|e| anyhow!("{e}"))?;
    if !r.problems.is_empty() {
        return Err(anyhow!("demo places refused: {:?}", r.problems));
    }
    Ok(())
}

/// A valid ID-card number (GB 11643) for a demo resident.
fn id_card(region: &str, birth: &str, seq: u32, male: bool) -> String {
    let seq = seq * 2 + u32::from(male); // the 17th digit is odd for men
    let body = format!("{region}{birth}{:03}", seq % 1000);
    let check = grid::people::id_card_check_digit(&body);
    format!("{body}{check}")
}

/// Residents of the grid worker's grid and a neighbouring one, through the CSV import.
async fn seed_people(state: &AppState, g: &Grid) -> anyhow::Result<()> {
    let (admin, actor) = caller(state, "gridadmin").await?;
    const SURNAMES: &[&str] =
        &["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭"];
    const GIVEN: &[&str] = &[
        "秀英", "建国", "桂兰", "志强", "玉梅", "国华", "丽娟", "文博", "晓燕", "子涵", "浩然", "淑珍", "海涛", "雨桐",
        "春生", "美玲",
    ];
    const TAGS: &[&str] =
        &["", "", "", "独居老人", "", "低保户", "", "退役军人", "", "残疾人", "", "空巢老人", "", "留守儿童"];
    let mut csv = String::from("姓名,身份证号,手机号,户号,与户主关系,人口类型,住址,网格,标签\n");
    let mut n = 0u32;
    for (grid, building0) in [("37010200100101", 1), ("37010200100102", 7)] {
        for h in 0..8u32 {
            let household = format!("JF{}-{:03}", &grid[grid.len() - 4..], h + 1);
            let members = 1 + (h % 3);
            for m in 0..members {
                n += 1;
                let male = (n + m).is_multiple_of(2);
                let year = if m == 0 { 1948 + (n * 7) % 40 } else { 1985 + (n * 3) % 30 };
                let birth = format!("{year}{:02}{:02}", 1 + n % 12, 1 + (n * 5) % 28);
                let name = format!(
                    "{}{}",
                    SURNAMES[(n as usize * 3 + h as usize) % SURNAMES.len()],
                    GIVEN[(n as usize * 5) % GIVEN.len()]
                );
                let relation = ["户主", "配偶", "子女"][m as usize];
                let residence = if h % 5 == 4 { "流动" } else { "户籍" };
                let tag = if m == 0 { TAGS[(n as usize) % TAGS.len()] } else { "" };
                csv.push_str(&format!(
                    "{name},{},1396401{:04},{household},{relation},{residence},历下区山大路{}号楼{}单元{}室,{grid},{tag}\n",
                    id_card("370102", &birth, n, male),
                    2000 + n,
                    building0 + h / 3,
                    1 + h % 3,
                    101 + h * 100 + m,
                ));
            }
        }
    }
    let r =
        g.import_people(&admin, &actor, csv.as_bytes()).await.map_err(|e| anyhow!("importing demo residents: {e}"))?;
    if !r.problems.is_empty() {
        return Err(anyhow!("demo residents refused: {:?}", r.problems));
    }
    // Components around the grid worker's grid, and the businesses there.
    let p = g.areas_geojson(&admin, Some("grid"), None).await.map_err(|e| anyhow!("{e}"))?["features"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["properties"]["code"] == "37010200100101").cloned())
        .ok_or_else(|| anyhow!("no demo grid"))?;
    let ring = p["geometry"]["coordinates"][0].as_array().cloned().unwrap_or_default();
    let xs: Vec<f64> = ring.iter().filter_map(|c| c[0].as_f64()).collect();
    let ys: Vec<f64> = ring.iter().filter_map(|c| c[1].as_f64()).collect();
    let (cx, cy) = (xs.iter().sum::<f64>() / xs.len() as f64, ys.iter().sum::<f64>() / ys.len() as f64);
    let mut fcsv = String::from("部件编码,名称,经度,纬度,坐标系,权属部门,状态,地址\n");
    for (i, (class, name, state, place)) in [
        ("0102", "污水井盖", "正常", "山大路3号楼东侧"),
        ("0102", "污水井盖", "损坏", "文化东路与山大路路口"),
        ("0101", "上水井盖", "正常", "山大路5号楼北侧"),
        ("0104", "路灯", "正常", "文化东路北侧"),
        ("0104", "路灯", "损坏", "文化东路北侧"),
        ("0105", "消防栓", "正常", "山大路社区居委会门前"),
        ("0302", "垃圾箱", "正常", "山大路公交站"),
        ("0204", "公交站亭", "正常", "山大路公交站"),
    ]
    .iter()
    .enumerate()
    {
        let (dx, dy) = ((i as f64 - 3.5) * 0.0006, ((i % 3) as f64 - 1.0) * 0.0005);
        fcsv.push_str(&format!(
            "370102{class}{:06},{name},{:.6},{:.6},wgs84,,{state},{place}\n",
            i + 1,
            cx + dx,
            cy + dy
        ));
    }
    let r = g
        .import_registry(&admin, &actor, "facility", fcsv.as_bytes())
        .await
        .map_err(|e| anyhow!("importing demo components: {e}"))?;
    if !r.problems.is_empty() {
        return Err(anyhow!("demo components refused: {:?}", r.problems));
    }
    let mut ocsv = String::from("统一社会信用代码,名称,类型,地址,网格\n");
    for (body, name, kind, addr) in [
        ("91370102MA3C8Q9X2", "济南山大路便民超市有限公司", "企业", "山大路3号楼底商"),
        ("52370102MJD6710A5", "历下区山大路社区志愿者协会", "社会组织", "山大路社区居委会"),
        ("92370102MA3P4N7L1", "历下区老王家常菜馆", "个体工商户", "文化东路12号"),
        ("12370102495574221", "历下区解放路街道社区卫生服务中心", "事业单位", "山大路18号"),
    ] {
        ocsv.push_str(&format!("{},{name},{kind},{addr},37010200100101\n", uscc(body)));
    }
    let r = g
        .import_registry(&admin, &actor, "org_record", ocsv.as_bytes())
        .await
        .map_err(|e| anyhow!("importing demo organisations: {e}"))?;
    if !r.problems.is_empty() {
        return Err(anyhow!("demo organisations refused: {:?}", r.problems));
    }
    Ok(())
}

/// A unified social credit code with its check character (GB 32100) for a demo organisation.
fn uscc(body: &str) -> String {
    format!("{body}{}", grid::registry::uscc_check_char(body).unwrap_or('0'))
}

/// The whole grid demo: setup, then cases in every stage.
pub async fn seed(state: &AppState) -> anyhow::Result<()> {
    let points = seed_setup(state).await?;
    {
        let g = state.services.get::<Grid>().ok_or_else(|| anyhow!("the grid service is not registered"))?.clone();
        seed_places(state, &g).await?;
        seed_people(state, &g).await?;
    }
    let g = state.services.get::<Grid>().ok_or_else(|| anyhow!("the grid service is not registered"))?.clone();
    let at = |code: &str, dx: f64, dy: f64| -> (f64, f64) {
        let p = points.iter().find(|(c, _)| c == code).map(|(_, p)| *p).unwrap_or(points[0].1);
        (p[0] + dx, p[1] + dy)
    };
    // Most reports come from the grid worker's own grid (山大路社区第1网格), where she verifies.
    let (gw, gw_actor) = caller(state, "gridworker").await?;
    let first = g.org(&gw.primary_org_id.0).await.map_err(|e| anyhow!("{e}"))?.code;
    let (disp, disp_actor) = caller(state, "dispatcher").await?;
    let (cgj, cgj_actor) = caller(state, "cgj_handler").await?;
    struct Report {
        who: &'static str,
        source: &'static str,
        ext: Option<&'static str>,
        category: &'static str,
        title: &'static str,
        description: &'static str,
        address: &'static str,
        at: (f64, f64),
        /// How far the case goes: report, accept, dispatch, handle, verify, close, reject, spot, extension, rework
        to: &'static str,
        urgency: &'static str,
    }
    let p0 = at(&first, 0.0, 0.0);
    let near = |dx: f64, dy: f64| (p0.0 + dx, p0.1 + dy);
    let reports = vec![
        Report {
            who: "gridworker",
            source: "patrol",
            ext: None,
            category: "BJ0102",
            title: "山大路与文化东路路口污水井盖破损",
            description: "污水井盖边缘破损约20厘米，行人和非机动车经过有安全隐患，已设置临时警示。",
            address: "历下区山大路与文化东路交叉口东北角",
            at: near(0.001, 0.0005),
            to: "verify",
            urgency: "urgent",
        },
        Report {
            who: "gridworker",
            source: "patrol",
            ext: None,
            category: "SJ0201",
            title: "山大路社区楼道小广告",
            description: "3号楼一单元楼道内张贴小广告十余处，已当场清理完毕。",
            address: "山大路社区3号楼一单元",
            at: near(-0.001, 0.0008),
            to: "spot",
            urgency: "normal",
        },
        Report {
            who: "dispatcher",
            source: "hotline",
            ext: Some("12345-20261120-0381"),
            category: "SJ0601",
            title: "夜间广场舞噪声扰民",
            description: "市民来电反映每晚八点至十点小区广场舞音响声音过大，影响老人和孩子休息，希望协调降低音量。",
            address: "历下区羊头峪社区中心广场",
            at: at("37010200100201", 0.0, 0.0),
            to: "handle",
            urgency: "normal",
        },
        Report {
            who: "gridworker",
            source: "citizen",
            ext: Some("ssp-7f3a91"),
            category: "BJ0104",
            title: "文化东路路灯不亮",
            description: "随手拍：文化东路山大路至历山路段连续三盏路灯夜间不亮，路段较暗。",
            address: "历下区文化东路",
            at: near(0.0015, -0.0007),
            to: "close",
            urgency: "normal",
        },
        Report {
            who: "dispatcher",
            source: "video",
            ext: Some("cam-LX-0219-20261121-0932"),
            category: "SJ0503",
            title: "视频巡查：机动车占用消防通道",
            description: "视频智能分析发现一辆白色轿车在甸柳新村小区消防通道停放超过30分钟。",
            address: "甸柳新村社区消防通道",
            at: at("37010200100301", 0.0, 0.0),
            to: "accept",
            urgency: "urgent",
        },
        Report {
            who: "dispatcher",
            source: "iot",
            ext: Some("iot-ws-0457-20261121"),
            category: "SJ0404",
            title: "积水监测点水位超限",
            description: "物联感知：经十路下穿隧道积水监测点水位达到32厘米，超过预警阈值。",
            address: "经十路下穿隧道",
            at: at("37010200200101", 0.0, 0.0),
            to: "dispatch",
            urgency: "critical",
        },
        Report {
            who: "dispatcher",
            source: "opinion",
            ext: Some("wb-4985523011"),
            category: "SJ0302",
            title: "网民反映工地扬尘严重",
            description: "舆情：有网民在微博发帖称某工地裸土未覆盖，大风天气扬尘严重，获较多转发。",
            address: "历下区千佛山街道",
            at: at("37010200200201", 0.0, 0.0),
            to: "extension",
            urgency: "normal",
        },
        Report {
            who: "dispatcher",
            source: "third_party",
            ext: Some("szcg-2026-118822"),
            category: "BJ0302",
            title: "数字城管：垃圾箱破损",
            description: "数字城管平台转来：山大路公交站旁果皮箱箱体破损、投放口脱落。",
            address: "山大路公交站",
            at: near(0.0004, 0.0009),
            to: "rework",
            urgency: "normal",
        },
        Report {
            who: "dispatcher",
            source: "third_party",
            ext: Some("szcg-2026-118830"),
            category: "SJ0101",
            title: "数字城管：暴露垃圾",
            description: "数字城管平台转来：路边垃圾桶满溢，周边散落生活垃圾。",
            address: "趵突泉街道黑虎泉西路",
            at: at("37010200300201", 0.0, 0.0),
            to: "handle",
            urgency: "normal",
        },
        Report {
            who: "gridworker",
            source: "patrol",
            ext: None,
            category: "ZZ0101",
            title: "邻里因漏水产生纠纷",
            description: "5号楼402住户反映楼上卫生间漏水，双方协商未果，情绪较为激动，需社区和街道调解。",
            address: "山大路社区5号楼",
            at: near(-0.0005, -0.0006),
            to: "handle",
            urgency: "normal",
        },
        Report {
            who: "dispatcher",
            source: "hotline",
            ext: Some("12345-20261121-0112"),
            category: "SJ0504",
            title: "共享单车堆积占用人行道",
            description: "市民反映泉城路地铁口共享单车大量堆积，影响通行。",
            address: "泉城路地铁站C口",
            at: at("37010200400101", 0.0, 0.0),
            to: "reject",
            urgency: "normal",
        },
        Report {
            who: "gridworker",
            source: "patrol",
            ext: None,
            category: "BJ0401",
            title: "行道树枝杈遮挡交通标志",
            description: "山大路北段行道树枝杈过长，遮挡限速标志，需修剪。",
            address: "山大路北段",
            at: near(0.0008, 0.0012),
            to: "report",
            urgency: "normal",
        },
        // The same thing reported again by a citizen 24 m away: flagged as a possible duplicate of
        // the patrol's report, for the dispatcher to merge.
        Report {
            who: "dispatcher",
            source: "hotline",
            ext: Some("12345-20261121-0231"),
            category: "BJ0401",
            title: "树枝挡住了限速牌",
            description: "市民来电：山大路北段路边的树长得太密，把限速牌挡住了，开车看不见。",
            address: "山大路北段",
            at: near(0.0008, 0.00142),
            to: "report",
            urgency: "normal",
        },
        Report {
            who: "dispatcher",
            source: "hotline",
            ext: Some("12345-20261121-0208"),
            category: "ZZ0501",
            title: "建议增设老年人休息座椅",
            description: "市民建议在社区公园步道旁增设休息座椅，方便老年人锻炼途中休息。",
            address: "大明湖街道百花洲社区",
            at: at("37010200500201", 0.0, 0.0),
            to: "handle",
            urgency: "normal",
        },
    ];
    // Photos as the phones would take them: of what was reported, and of the spot after handling.
    let scene = |category: &str| crate::demo_photos::Scene::for_category(category);
    let snap = |c: &Caller, a: &Actor, category: &str, after: bool, at: (f64, f64), name: &str| {
        let g = g.clone();
        let (c, a) = (c.clone(), a.clone());
        let (category, name) = (category.to_string(), name.to_string());
        async move {
            let Some(scene) = scene(&category) else { return Ok::<_, anyhow::Error>(vec![]) };
            let now = g.now();
            let local = chrono::DateTime::from_timestamp_millis(now + 8 * 3_600_000).unwrap_or_default();
            let stamp = format!("{} E{:.4} N{:.4}", local.format("%Y-%m-%d %H:%M"), at.0, at.1);
            let seed = (at.0 * 1e6) as u64 ^ (at.1 * 1e6) as u64;
            // Drawn on this thread (a few milliseconds, before the server listens): on the blocking
            // pool each photo's buffers would take another thread's allocator arena, which keeps
            // them after the demo has started (about 10 MB of idle memory).
            let data = crate::demo_photos::photo(scene, after, seed, &stamp);
            let photo = g.upload(&c, &a, &name, &data).await.map_err(|e| anyhow!("{name}: {e}"))?;
            Ok(vec![photo.id])
        }
    };
    for r in reports {
        let (who, who_actor) = match r.who {
            "gridworker" => (&gw, &gw_actor),
            _ => (&disp, &disp_actor),
        };
        let photos = snap(who, who_actor, r.category, false, r.at, "现场照片.png").await?;
        let req = IntakeRequest {
            source: r.source.into(),
            external_id: r.ext.map(String::from),
            title: Some(r.title.into()),
            description: r.description.into(),
            category_code: Some(r.category.into()),
            urgency: Some(r.urgency.into()),
            lon: Some(r.at.0),
            lat: Some(r.at.1),
            address: Some(r.address.into()),
            reporter: (r.who != "gridworker").then(|| "市民".to_string()),
            resolved_on_spot: r.to == "spot",
            attachments: photos,
            ..Default::default()
        };
        let case = g.intake(who, who_actor, req).await.map_err(|e| anyhow!("{}: {e}", r.title))?.case;
        let id = case.id.clone();
        let act = |c: &Caller, a: &Actor, action: CaseAction| {
            let g = g.clone();
            let id = id.clone();
            let c = c.clone();
            let a = a.clone();
            async move { g.act(&c, &a, &id, action).await.map_err(|e| anyhow!("{e}")) }
        };
        if matches!(r.to, "report" | "spot") {
            continue;
        }
        if r.to == "reject" {
            act(&disp, &disp_actor, CaseAction::Reject { reason: "经核实已由运营企业当日清理，不予立案。".into() })
                .await?;
            continue;
        }
        if r.to == "accept" {
            continue;
        }
        act(
            &disp,
            &disp_actor,
            CaseAction::Accept {
                category_id: None,
                urgency: None,
                note: Some("信息完整，予以立案".into()),
                department_id: None,
                override_reason: None,
            },
        )
        .await?;
        if r.to == "dispatch" {
            continue;
        }
        act(&disp, &disp_actor, CaseAction::Dispatch { department_id: None, override_reason: None, note: None })
            .await?;
        let detail = g.case(&disp, &id).await.map_err(|e| anyhow!("{e}"))?;
        let dept = detail.case.department_id.clone().unwrap_or_default();
        // The department's handler: 周强 for the city's urban management bureau, else a system stand-in.
        let handler = if dept == cgj.primary_org_id.0 { Some((&cgj, &cgj_actor)) } else { None };
        if r.to == "handle" {
            continue;
        }
        let Some((h, ha)) = handler else { continue };
        if r.to == "extension" {
            act(h, ha, CaseAction::RequestExtension { days: 3, reason: "需协调施工单位采购防尘网".into() }).await?;
            continue;
        }
        let attachments = snap(h, ha, r.category, true, r.at, "处置后.png").await?;
        act(h, ha, CaseAction::Handle { feedback: "已安排作业班组到场处置完毕。".into(), attachments }).await?;
        if r.to == "verify" {
            continue;
        }
        if case.grid_id.as_deref() != Some(gw.primary_org_id.0.as_str()) {
            continue; // only the demo grid worker's own grid has someone to verify
        }
        let verifier = (&gw, &gw_actor);
        if r.to == "rework" {
            let attachments = snap(verifier.0, verifier.1, r.category, false, r.at, "复核照片.png").await?;
            act(
                verifier.0,
                verifier.1,
                CaseAction::Verify {
                    passed: false, note: Some("现场复核仍有散落垃圾未清理".into()), attachments
                },
            )
            .await?;
            continue;
        }
        let attachments = snap(verifier.0, verifier.1, r.category, true, r.at, "复核照片.png").await?;
        act(
            verifier.0,
            verifier.1,
            CaseAction::Verify { passed: true, note: Some("现场复核已处置到位".into()), attachments },
        )
        .await?;
    }
    Ok(())
}

/// One demo platform: its org, its connected application, its simulator and its registration.
struct DemoPlatform {
    code: &'static str,
    name: &'static str,
    kind: &'static str,
    org_code: &'static str,
    ticket_prefix: &'static str,
    fields: &'static [(&'static str, &'static str)],
    categories: &'static [(&'static str, &'static str)],
    crs: &'static str,
    /// code field, ok code, ticket field, message field
    ack: (&'static str, &'static str, &'static str, &'static str),
    mode: grid::simulator::Mode,
}

fn demo_platforms() -> Vec<DemoPlatform> {
    use grid::simulator::Mode;
    vec![
        DemoPlatform {
            code: "szcg",
            name: "济南市数字化城市管理平台",
            kind: "city_management",
            org_code: "370100-szcg",
            ticket_prefix: "SZCG",
            fields: &[
                ("dispatch_id", "bizId"),
                ("case_no", "srcCaseNo"),
                ("title", "eventTitle"),
                ("description", "eventDesc"),
                ("category_code", "eventTypeCode"),
                ("category_name", "eventTypeName"),
                ("urgency", "urgencyLevel"),
                ("lon", "x"),
                ("lat", "y"),
                ("grid_code", "gridCode"),
                ("grid_name", "gridName"),
                ("reported_at", "reportTime"),
                ("due_at", "deadline"),
                ("note", "remark"),
                ("external_id", "srcEventId"),
            ],
            categories: &[("SJ0504", "020504"), ("SJ0503", "020503"), ("BJ0102", "010102"), ("BJ0104", "010104")],
            crs: "gcj02",
            ack: ("code", "0", "data.taskNo", "msg"),
            mode: Mode { accept_after_ms: 5_000, handle_after_ms: 90_000, ..Mode::default() },
        },
        DemoPlatform {
            code: "zzpt",
            name: "济南市社会治理综合信息平台",
            kind: "governance",
            org_code: "370100-zzpt",
            ticket_prefix: "ZZGD",
            fields: &[
                ("dispatch_id", "ywid"),
                ("case_no", "sjbh"),
                ("title", "sjbt"),
                ("description", "sjms"),
                ("category_code", "sjlx"),
                ("lon", "jd"),
                ("lat", "wd"),
                ("address", "fsdd"),
                ("reporter", "sbr"),
                ("status", "zt"),
                ("note", "clyj"),
            ],
            categories: &[("ZZ0101", "0101"), ("ZZ0102", "0102"), ("ZZ0103", "0103")],
            crs: "wgs84",
            ack: ("resultCode", "200", "result.gdbh", "resultMsg"),
            mode: Mode { accept_after_ms: 10_000, handle_after_ms: 120_000, ..Mode::default() },
        },
        DemoPlatform {
            code: "rx12345",
            name: "济南市12345政务服务便民热线",
            kind: "hotline",
            org_code: "370100-12345",
            ticket_prefix: "RX",
            fields: &[
                ("external_id", "gdbh"),
                ("title", "bt"),
                ("description", "sqnr"),
                ("address", "sjdz"),
                ("lon", "jd"),
                ("lat", "wd"),
                ("reporter", "ldr"),
                ("category_code", "sqlx"),
                ("case_no", "cbdh"),
                ("status", "blzt"),
                ("note", "blyj"),
                ("dispatch_id", "xxid"),
            ],
            categories: &[("SJ0601", "ZS-0601"), ("SJ0602", "ZS-0602"), ("SJ0101", "HJ-0101")],
            crs: "gcj02",
            ack: ("code", "0", "data.lsh", "message"),
            mode: Mode { verify_after_ms: 30_000, ..Mode::default() },
        },
    ]
}

/// The demo's third-party platforms: 数字城管, 综治 and 12345, each an org with a connected
/// application, a simulator listening on 127.0.0.1 that calls back to `base_url`, and its
/// registration with its dialect. The simulators run as long as they are kept.
pub async fn seed_platforms(
    state: &AppState,
    base_url: &str,
    clock: std::sync::Arc<dyn kernel::Clock>,
) -> anyhow::Result<Vec<(String, grid::simulator::Simulator)>> {
    let g = state.services.get::<Grid>().ok_or_else(|| anyhow!("the grid service is not registered"))?.clone();
    let (admin, actor) = caller(state, "gridadmin").await?;
    let system = identity::users::system_caller();
    let city = g.org_by_code("370100").await.map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("no city"))?;
    let mut out = Vec::new();
    for p in demo_platforms() {
        let org_id = match g.org_by_code(p.org_code).await.map_err(|e| anyhow!("{e}"))? {
            Some(o) => o.id,
            None => {
                state
                    .identity
                    .create_org_as_system(
                        &Actor::system(),
                        identity::orgs::NewOrg {
                            parent_id: Some(city.id.clone()),
                            kind: identity::model::OrgKind::Department,
                            code: p.org_code.into(),
                            name: p.name.into(),
                            sort: 90,
                        },
                    )
                    .await
                    .map_err(|e| anyhow!("{e}"))?
                    .id
                    .0
            }
        };
        let app = state
            .identity
            .create_app(
                &system,
                &Actor::system(),
                identity::apps::NewApp {
                    name: p.name.into(),
                    scopes: vec![
                        identity::perms::GRID_CASE_REPORT.into(),
                        identity::perms::GRID_CASE_READ.into(),
                        identity::perms::GRID_CASE_WORK.into(),
                        identity::perms::FLOW_TASK.into(),
                    ],
                    org_id: org_id.clone(),
                    rate_limit_per_min: 6_000,
                    sign_alg: "hmac-sm3".into(),
                },
            )
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let mapping = grid::platforms::Mapping {
            fields: p.fields.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            categories: p.categories.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            crs: p.crs.into(),
            ack: grid::platforms::Ack {
                code_field: p.ack.0.into(),
                ok_codes: vec![p.ack.1.into()],
                ticket_field: p.ack.2.into(),
                message_field: p.ack.3.into(),
            },
            ..Default::default()
        };
        let out_key = format!("zhongshu-{}", p.code);
        let out_secret = crypto::random::token();
        let sim = grid::simulator::Simulator::start(
            "127.0.0.1:0",
            grid::simulator::Config {
                name: p.name.into(),
                ticket_prefix: p.ticket_prefix.into(),
                key: out_key.clone(),
                secret: out_secret.clone(),
                sign_alg: "hmac-sm3".into(),
                mapping: mapping.clone(),
                callback: Some(grid::simulator::CallbackTarget {
                    base_url: base_url.into(),
                    platform_code: p.code.into(),
                    app_id: app.app.app_id.clone(),
                    secret: app.secret.clone(),
                    sign_alg: "hmac-sm3".into(),
                }),
                mode: p.mode.clone(),
            },
            clock.clone(),
        )
        .await?;
        g.create_platform(
            &admin,
            &actor,
            grid::platforms::PlatformInput {
                code: p.code.into(),
                name: p.name.into(),
                kind: p.kind.into(),
                org_id,
                app_id: app.app.app_id.clone(),
                endpoint: sim.url(),
                out_key,
                out_secret: Some(out_secret),
                sign_alg: None,
                mapping,
                timeout_ms: Some(5_000),
                alert_after_minutes: Some(30),
                enabled: None,
            },
        )
        .await
        .map_err(|e| anyhow!("registering {}: {e}", p.name))?;
        out.push((p.code.to_string(), sim));
    }
    Ok(out)
}

/// Cases that show the platforms at work: a rule sending shared-bike parking to 数字城管, a case
/// on its way there (the simulator accepts it after seconds and reports it handled after a
/// minute and a half), a dispute sent to 综治, and two 12345 work orders — one waiting to be filed,
/// one handled here whose follow-up call (核实反馈) closes it half a minute after the server starts.
pub async fn seed_platform_cases(state: &AppState) -> anyhow::Result<()> {
    let g = state.services.get::<Grid>().ok_or_else(|| anyhow!("the grid service is not registered"))?.clone();
    let (admin, admin_actor) = caller(state, "gridadmin").await?;
    let (gw, gw_actor) = caller(state, "gridworker").await?;
    let (disp, disp_actor) = caller(state, "dispatcher").await?;
    let (cgj, cgj_actor) = caller(state, "cgj_handler").await?;
    let org = |code: &'static str| {
        let g = g.clone();
        async move { g.org_by_code(code).await.map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("no org {code}")) }
    };
    let szcg = org("370100-szcg").await?;
    let zzpt = org("370100-zzpt").await?;
    let bikes = g.category_by_code("SJ0504").await.map_err(|e| anyhow!("{e}"))?;
    let home = g.org(&gw.primary_org_id.0).await.map_err(|e| anyhow!("{e}"))?;
    let community = home.parent_id.clone();
    g.save_rule(
        &admin,
        &admin_actor,
        None,
        RuleInput {
            name: "山大路社区非机动车乱停放转数字城管平台".into(),
            category_id: Some(bikes.id.clone()),
            area_org_id: community,
            department_id: Some(szcg.id.clone()),
            target_level: None,
            priority: 5,
            enabled: None,
        },
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    let p = g.area_label_point(&home.id).await.map_err(|e| anyhow!("{e}"))?;
    let accept = |department: Option<String>, reason: Option<&str>| CaseAction::Accept {
        category_id: None,
        urgency: None,
        note: Some("予以立案".into()),
        department_id: department,
        override_reason: reason.map(String::from),
    };
    // Shared bikes, routed to 数字城管 by the rule.
    let bike = g
        .intake(
            &gw,
            &gw_actor,
            IntakeRequest {
                source: "patrol".into(),
                title: Some("山大路地铁口共享单车堆放".into()),
                description: "山大路地铁站B口约三十辆共享单车无序堆放，占用盲道和人行道。".into(),
                category_code: Some("SJ0504".into()),
                lon: Some(p.lon + 0.0004),
                lat: Some(p.lat - 0.0003),
                address: Some("历下区山大路地铁站B口".into()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow!("{e}"))?
        .case;
    g.act(&disp, &disp_actor, &bike.id, accept(None, None)).await.map_err(|e| anyhow!("{e}"))?;
    g.act(
        &disp,
        &disp_actor,
        &bike.id,
        CaseAction::Dispatch { department_id: None, override_reason: None, note: None },
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    // A property dispute, sent to 综治 by the dispatcher.
    let dispute = g
        .intake(
            &gw,
            &gw_actor,
            IntakeRequest {
                source: "patrol".into(),
                title: Some("小区物业费纠纷".into()),
                description: "山大路社区5号楼多户居民与物业公司因电梯维修费用分摊发生纠纷，情绪较激动，需协调调处。"
                    .into(),
                category_code: Some("ZZ0103".into()),
                lon: Some(p.lon - 0.0003),
                lat: Some(p.lat + 0.0002),
                address: Some("山大路社区5号楼".into()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow!("{e}"))?
        .case;
    g.act(&disp, &disp_actor, &dispute.id, accept(Some(zzpt.id.clone()), Some("涉及多方的物业纠纷转综治平台联合调处")))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    // Two 12345 work orders, in the hotline's own words.
    let hotline = state.identity.app_caller(&g.platform_app("rx12345").await.map_err(|e| anyhow!("{e}"))?).await;
    let hotline = hotline.map_err(|e| anyhow!("{e}"))?;
    let hotline_actor = Actor { username: Some(hotline.username.clone()), ..Actor::system() };
    let order = |no: &str, title: &str, text: &str, cat: &str, addr: &str, who: &str, dx: f64| {
        let gcj = spatial::coord::wgs84_to_gcj02(spatial::LonLat::new(p.lon + dx, p.lat + dx / 2.0));
        serde_json::json!({"gdbh": no, "bt": title, "sqnr": text, "sqlx": cat, "sjdz": addr, "ldr": who,
            "jd": gcj.lon, "wd": gcj.lat})
        .as_object()
        .cloned()
        .unwrap_or_default()
    };
    g.platform_event(
        &hotline,
        &hotline_actor,
        "rx12345",
        order(
            "RX-20261121-1042",
            "餐馆油烟直排",
            "市民来电反映楼下餐馆油烟未经净化直接排放，窗户无法打开。",
            "ZS-0602",
            "历下区山大路社区8号楼底商",
            "李先生",
            0.0006,
        ),
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    // A work order with only an address: the registered building places it.
    let mut lamp = order(
        "RX-20261121-1105",
        "楼道声控灯损坏",
        "市民来电反映2号楼2单元楼道声控灯坏了一周，晚上上下楼很不安全。",
        "",
        "历下区山大路2号楼2单元",
        "孙先生",
        0.0,
    );
    lamp.remove("jd");
    lamp.remove("wd");
    lamp.remove("sqlx");
    g.platform_event(&hotline, &hotline_actor, "rx12345", lamp).await.map_err(|e| anyhow!("{e}"))?;
    let noisy = g
        .platform_event(
            &hotline,
            &hotline_actor,
            "rx12345",
            order(
                "RX-20261121-0977",
                "垃圾桶满溢未清运",
                "市民来电反映小区门口垃圾桶满溢两天未清运，气味很大。",
                "HJ-0101",
                "历下区山大路社区北门",
                "赵女士",
                -0.0005,
            ),
        )
        .await
        .map_err(|e| anyhow!("{e}"))?
        .case;
    g.act(&disp, &disp_actor, &noisy.id, accept(None, None)).await.map_err(|e| anyhow!("{e}"))?;
    let city_cgj = org("370100-cgj").await?;
    g.act(
        &disp,
        &disp_actor,
        &noisy.id,
        CaseAction::Dispatch {
            department_id: Some(city_cgj.id),
            override_reason: Some("连续两天未清运，市城管局直接督办".into()),
            note: None,
        },
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    if g.case(&cgj, &noisy.id).await.map(|d| d.actions.contains(&"handle".to_string())).unwrap_or(false) {
        g.act(
            &cgj,
            &cgj_actor,
            &noisy.id,
            CaseAction::Handle {
                feedback: "已安排环卫车辆清运并对垃圾桶周边冲洗消杀。".into(), attachments: vec![]
            },
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}
