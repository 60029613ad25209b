//! The shipped taxonomy: the component (部件) and event (事件) classes of digital city management
//! and the comprehensive-governance (综治) event types, with keywords for suggestions and
//! default time limits. Owner departments are set per city (the demo sets Jinan's).

/// (code, name, keywords)
pub(crate) type Leaf = (&'static str, &'static str, &'static str);

pub(crate) struct TopClass {
    pub code: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    /// accept, dispatch, handle, verify
    pub limits: [&'static str; 4],
    pub leaves: &'static [Leaf],
}

pub(crate) const TAXONOMY: &[TopClass] = &[
    TopClass {
        code: "BJ01",
        name: "公用设施",
        kind: "component",
        limits: ["PT1H", "PT1H", "P2D", "P1D"],
        leaves: &[
            ("BJ0101", "上水井盖", "井盖,上水,自来水井,井盖破损,井盖缺失"),
            ("BJ0102", "污水井盖", "污水井,井盖,污水,冒水,井盖松动"),
            ("BJ0103", "雨水箅子", "雨水箅子,箅子,雨水口,排水口"),
            ("BJ0104", "路灯", "路灯,灯杆,不亮,照明,灯不亮"),
            ("BJ0105", "消防栓", "消防栓,消火栓,漏水"),
            ("BJ0106", "通信交接箱", "交接箱,通信箱,电信箱,光交箱"),
        ],
    },
    TopClass {
        code: "BJ02",
        name: "道路交通",
        kind: "component",
        limits: ["PT1H", "PT1H", "P2D", "P1D"],
        leaves: &[
            ("BJ0201", "交通信号灯", "红绿灯,信号灯,交通灯"),
            ("BJ0202", "交通标志牌", "标志牌,指示牌,路牌"),
            ("BJ0203", "道路护栏", "护栏,隔离栏,栏杆"),
            ("BJ0204", "公交站亭", "公交站,站亭,站牌,候车亭"),
            ("BJ0205", "人行道与盲道", "人行道,盲道,地砖,道板"),
        ],
    },
    TopClass {
        code: "BJ03",
        name: "市容环境",
        kind: "component",
        limits: ["PT1H", "PT1H", "P1D", "P1D"],
        leaves: &[
            ("BJ0301", "公共厕所", "厕所,公厕,卫生间"),
            ("BJ0302", "垃圾箱", "垃圾箱,垃圾桶,果皮箱"),
            ("BJ0303", "广告牌匾", "牌匾,招牌,广告牌"),
            ("BJ0304", "垃圾中转站", "中转站,垃圾站"),
        ],
    },
    TopClass {
        code: "BJ04",
        name: "园林绿化",
        kind: "component",
        limits: ["PT1H", "PT2H", "P3D", "P1D"],
        leaves: &[
            ("BJ0401", "行道树", "行道树,树木,倒伏,树枝,枯树"),
            ("BJ0402", "绿地", "绿地,草坪,绿化带"),
            ("BJ0403", "花坛花箱", "花坛,花箱"),
        ],
    },
    TopClass {
        code: "BJ05",
        name: "房屋土地",
        kind: "component",
        limits: ["PT1H", "PT2H", "P5D", "P1D"],
        leaves: &[
            ("BJ0501", "宣传栏", "宣传栏,公示栏,阅报栏"),
            ("BJ0502", "地下通道", "地下通道,过街通道"),
            ("BJ0503", "空置房屋", "空房,空置,危房"),
        ],
    },
    TopClass {
        code: "SJ01",
        name: "市容环境",
        kind: "event",
        limits: ["PT1H", "PT1H", "PT8H", "P1D"],
        leaves: &[
            ("SJ0101", "暴露垃圾", "暴露垃圾,垃圾,乱扔,垃圾堆"),
            ("SJ0102", "积存垃圾渣土", "渣土,建筑垃圾,积存,堆放"),
            ("SJ0103", "道路不洁", "路面脏,油污,道路不洁,保洁"),
            ("SJ0104", "水域不洁", "水面,漂浮物,河道,水域"),
        ],
    },
    TopClass {
        code: "SJ02",
        name: "宣传广告",
        kind: "event",
        limits: ["PT1H", "PT1H", "P1D", "P1D"],
        leaves: &[
            ("SJ0201", "非法小广告", "小广告,牛皮癣,张贴,喷涂"),
            ("SJ0202", "违规户外广告", "户外广告,条幅,横幅,广告"),
        ],
    },
    TopClass {
        code: "SJ03",
        name: "施工管理",
        kind: "event",
        limits: ["PT1H", "PT1H", "P2D", "P1D"],
        leaves: &[
            ("SJ0301", "施工扰民", "施工,夜间施工,噪音,扰民"),
            ("SJ0302", "工地扬尘", "扬尘,工地,未覆盖,裸土"),
            ("SJ0303", "道路破损", "道路破损,坑洼,塌陷,路面破损"),
        ],
    },
    TopClass {
        code: "SJ04",
        name: "突发事件",
        kind: "event",
        limits: ["PT15M", "PT15M", "PT4H", "PT8H"],
        leaves: &[
            ("SJ0401", "路面塌陷", "塌陷,坍塌,地陷"),
            ("SJ0402", "自来水管爆裂", "爆管,水管,漏水,跑水"),
            ("SJ0403", "燃气泄漏", "燃气,煤气,泄漏,气味"),
            ("SJ0404", "道路积水", "积水,内涝,淹水"),
        ],
    },
    TopClass {
        code: "SJ05",
        name: "街面秩序",
        kind: "event",
        limits: ["PT1H", "PT1H", "PT8H", "P1D"],
        leaves: &[
            ("SJ0501", "无照经营游商", "游商,流动摊贩,小贩,摆摊"),
            ("SJ0502", "店外经营", "店外经营,出店,占道"),
            ("SJ0503", "机动车乱停放", "乱停,违停,停车,机动车"),
            ("SJ0504", "非机动车乱停放", "共享单车,电动车,自行车,非机动车"),
        ],
    },
    TopClass {
        code: "SJ06",
        name: "扩展事件",
        kind: "event",
        limits: ["PT1H", "PT2H", "P3D", "P1D"],
        leaves: &[
            ("SJ0601", "噪声扰民", "噪声,噪音,广场舞,喇叭"),
            ("SJ0602", "餐饮油烟", "油烟,烧烤,餐饮"),
            ("SJ0603", "违法建设", "违建,私搭乱建,违法建设,加盖"),
        ],
    },
    TopClass {
        code: "ZZ01",
        name: "矛盾纠纷",
        kind: "governance",
        limits: ["PT2H", "PT2H", "P3D", "P1D"],
        leaves: &[
            ("ZZ0101", "邻里纠纷", "邻里,邻居,纠纷,吵架"),
            ("ZZ0102", "劳资纠纷", "欠薪,工资,劳资,讨薪"),
            ("ZZ0103", "物业纠纷", "物业,物业费,业委会"),
        ],
    },
    TopClass {
        code: "ZZ02",
        name: "治安隐患",
        kind: "governance",
        limits: ["PT30M", "PT30M", "P1D", "P1D"],
        leaves: &[("ZZ0201", "治安隐患", "治安,偷盗,可疑,打架"), ("ZZ0202", "出租房屋隐患", "出租屋,群租")],
    },
    TopClass {
        code: "ZZ03",
        name: "安全隐患",
        kind: "governance",
        limits: ["PT30M", "PT30M", "P1D", "P1D"],
        leaves: &[
            ("ZZ0301", "消防安全隐患", "消防通道,堵塞,飞线,充电,楼道"),
            ("ZZ0302", "危房隐患", "危房,裂缝,墙体"),
            ("ZZ0303", "燃气安全隐患", "液化气,气瓶,燃气隐患"),
        ],
    },
    TopClass {
        code: "ZZ04",
        name: "特殊人群",
        kind: "governance",
        limits: ["PT1H", "PT1H", "P2D", "P1D"],
        leaves: &[("ZZ0401", "特殊人群异常", "精神障碍,社区矫正,异常,走失")],
    },
    TopClass {
        code: "ZZ05",
        name: "社情民意",
        kind: "governance",
        limits: ["PT2H", "PT2H", "P5D", "P2D"],
        leaves: &[("ZZ0501", "社情民意", "建议,诉求,反映,民意")],
    },
];
