//! The permission catalogue and the built-in roles. Capability crates add their permissions by
//! listing them here, so the catalogue stays one table.

/// A permission code, e.g. `user.manage`.
pub type Perm = &'static str;

pub const PORTAL_USE: Perm = "portal.use";
pub const ORG_READ: Perm = "org.read";
pub const ORG_MANAGE: Perm = "org.manage";
pub const USER_READ: Perm = "user.read";
pub const USER_MANAGE: Perm = "user.manage";
pub const ROLE_READ: Perm = "role.read";
pub const ROLE_MANAGE: Perm = "role.manage";
pub const GRANT_MANAGE: Perm = "grant.manage";
pub const POLICY_READ: Perm = "policy.read";
pub const POLICY_MANAGE: Perm = "policy.manage";
pub const APP_READ: Perm = "app.read";
pub const APP_MANAGE: Perm = "app.manage";
pub const AUDIT_READ: Perm = "audit.read";
pub const AUDIT_EXPORT: Perm = "audit.export";
pub const AUDIT_VERIFY: Perm = "audit.verify";
pub const AUDIT_RETENTION: Perm = "audit.retention";
pub const CONFIG_READ: Perm = "config.read";
pub const PI_UNMASK: Perm = "pi.unmask";
pub const FLOW_MODEL_READ: Perm = "flow.model.read";
pub const FLOW_MODEL_MANAGE: Perm = "flow.model.manage";
pub const FLOW_START: Perm = "flow.instance.start";
pub const FLOW_INSTANCE_READ: Perm = "flow.instance.read";
pub const FLOW_INSTANCE_MANAGE: Perm = "flow.instance.manage";
pub const FLOW_TASK: Perm = "flow.task.work";
pub const NOTIFY_MANAGE: Perm = "notify.manage";
pub const GRID_AREA_READ: Perm = "grid.area.read";
pub const GRID_MANAGE: Perm = "grid.manage";
pub const GRID_CASE_REPORT: Perm = "grid.case.report";
pub const GRID_CASE_READ: Perm = "grid.case.read";
pub const GRID_CASE_WORK: Perm = "grid.case.work";
pub const GRID_BASE_READ: Perm = "grid.base.read";
pub const GRID_BASE_MANAGE: Perm = "grid.base.manage";

/// One permission with its Chinese name for the UI.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct PermInfo {
    pub code: &'static str,
    pub name: &'static str,
    pub module: &'static str,
}

/// Every permission the platform knows.
pub const CATALOGUE: &[PermInfo] = &[
    PermInfo { code: PORTAL_USE, name: "使用门户", module: "门户" },
    PermInfo { code: ORG_READ, name: "查看组织机构", module: "组织机构" },
    PermInfo { code: ORG_MANAGE, name: "管理组织机构", module: "组织机构" },
    PermInfo { code: USER_READ, name: "查看用户", module: "用户" },
    PermInfo { code: USER_MANAGE, name: "管理用户", module: "用户" },
    PermInfo { code: ROLE_READ, name: "查看角色", module: "角色权限" },
    PermInfo { code: ROLE_MANAGE, name: "管理角色与权限", module: "角色权限" },
    PermInfo { code: GRANT_MANAGE, name: "分级授权", module: "角色权限" },
    PermInfo { code: POLICY_READ, name: "查看安全策略", module: "安全策略" },
    PermInfo { code: POLICY_MANAGE, name: "配置安全策略", module: "安全策略" },
    PermInfo { code: APP_READ, name: "查看接入应用", module: "接入应用" },
    PermInfo { code: APP_MANAGE, name: "管理接入应用", module: "接入应用" },
    PermInfo { code: AUDIT_READ, name: "查询审计日志", module: "安全审计" },
    PermInfo { code: AUDIT_EXPORT, name: "导出审计日志", module: "安全审计" },
    PermInfo { code: AUDIT_VERIFY, name: "校验审计日志完整性", module: "安全审计" },
    PermInfo { code: AUDIT_RETENTION, name: "审计日志归档与保留", module: "安全审计" },
    PermInfo { code: CONFIG_READ, name: "查看系统配置", module: "系统" },
    PermInfo { code: PI_UNMASK, name: "查看完整个人信息", module: "数据安全" },
    PermInfo { code: FLOW_MODEL_READ, name: "查看流程模型", module: "流程" },
    PermInfo { code: FLOW_MODEL_MANAGE, name: "设计与发布流程", module: "流程" },
    PermInfo { code: FLOW_START, name: "发起流程", module: "流程" },
    PermInfo { code: FLOW_INSTANCE_READ, name: "查看流程实例与监控", module: "流程" },
    PermInfo {
        code: FLOW_INSTANCE_MANAGE, name: "管理流程实例（撤销、迁移、处理异常）", module: "流程"
    },
    PermInfo { code: FLOW_TASK, name: "办理待办", module: "流程" },
    PermInfo { code: NOTIFY_MANAGE, name: "管理消息模板与发送记录", module: "消息服务" },
    PermInfo { code: GRID_AREA_READ, name: "查看网格与地图", module: "网格" },
    PermInfo { code: GRID_MANAGE, name: "管理网格、事件分类与派遣规则", module: "网格" },
    PermInfo { code: GRID_CASE_REPORT, name: "上报事件", module: "网格" },
    PermInfo { code: GRID_CASE_READ, name: "查看事件案卷", module: "网格" },
    PermInfo { code: GRID_CASE_WORK, name: "办理事件（立案、派遣、处置、核查）", module: "网格" },
    PermInfo { code: GRID_BASE_READ, name: "查看基础信息（人口等）", module: "网格" },
    PermInfo { code: GRID_BASE_MANAGE, name: "采集与维护基础信息、批量导入", module: "网格" },
];

pub fn is_known(code: &str) -> bool {
    CATALOGUE.iter().any(|p| p.code == code)
}

/// The three administrators and what each may do (三员分立).
pub const SYSADMIN_PERMS: &[Perm] = &[PORTAL_USE, ORG_READ, ORG_MANAGE, USER_READ, USER_MANAGE, ROLE_READ, CONFIG_READ];
pub const SECADMIN_PERMS: &[Perm] = &[
    PORTAL_USE,
    ORG_READ,
    USER_READ,
    ROLE_READ,
    ROLE_MANAGE,
    GRANT_MANAGE,
    POLICY_READ,
    POLICY_MANAGE,
    APP_READ,
    APP_MANAGE,
];
pub const AUDITOR_PERMS: &[Perm] = &[PORTAL_USE, AUDIT_READ, AUDIT_EXPORT, AUDIT_VERIFY, AUDIT_RETENTION];

/// A built-in role created by the first migration run.
pub struct BuiltinRole {
    pub code: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub admin_role: Option<&'static str>,
    pub perms: &'static [Perm],
    pub mfa_required: bool,
}

pub const BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        code: "sysadmin",
        name: "系统管理员",
        description: "管理用户、组织机构和系统配置；不能查看审计日志，不能修改安全策略",
        admin_role: Some("sysadmin"),
        perms: SYSADMIN_PERMS,
        mfa_required: true,
    },
    BuiltinRole {
        code: "secadmin",
        name: "安全管理员",
        description: "管理角色、权限、授权、安全策略和接入应用；不能管理业务数据，不能查看审计日志",
        admin_role: Some("secadmin"),
        perms: SECADMIN_PERMS,
        mfa_required: true,
    },
    BuiltinRole {
        code: "auditor",
        name: "审计管理员",
        description: "查询、导出、校验和归档审计日志；不能管理用户和策略，不能删改审计记录",
        admin_role: Some("auditor"),
        perms: AUDITOR_PERMS,
        mfa_required: true,
    },
    BuiltinRole {
        code: "org_admin",
        name: "组织管理员",
        description: "在授权范围内管理下级组织的用户并分级授权，可发起流程、办理待办",
        admin_role: None,
        perms: &[
            PORTAL_USE,
            ORG_READ,
            USER_READ,
            USER_MANAGE,
            ROLE_READ,
            GRANT_MANAGE,
            FLOW_MODEL_READ,
            FLOW_START,
            FLOW_TASK,
            GRID_AREA_READ,
            GRID_CASE_REPORT,
            GRID_CASE_READ,
            GRID_CASE_WORK,
            GRID_BASE_READ,
            GRID_BASE_MANAGE,
        ],
        mfa_required: false,
    },
    BuiltinRole {
        code: "staff",
        name: "工作人员",
        description: "使用门户，查看本范围的组织机构和同事，发起流程、办理待办，上报和办理网格事件",
        admin_role: None,
        perms: &[
            PORTAL_USE,
            ORG_READ,
            USER_READ,
            FLOW_MODEL_READ,
            FLOW_START,
            FLOW_TASK,
            GRID_AREA_READ,
            GRID_CASE_REPORT,
            GRID_CASE_READ,
            GRID_CASE_WORK,
            GRID_BASE_READ,
            GRID_BASE_MANAGE,
        ],
        mfa_required: false,
    },
    BuiltinRole {
        code: "flow_admin",
        name: "流程管理员",
        description: "设计、发布和版本管理流程，监控流程实例，处理流程异常",
        admin_role: None,
        perms: &[
            PORTAL_USE,
            ORG_READ,
            USER_READ,
            FLOW_MODEL_READ,
            FLOW_MODEL_MANAGE,
            FLOW_START,
            FLOW_INSTANCE_READ,
            FLOW_INSTANCE_MANAGE,
            FLOW_TASK,
            NOTIFY_MANAGE,
        ],
        mfa_required: false,
    },
    BuiltinRole {
        code: "grid_admin",
        name: "网格管理员",
        description: "管理网格边界、网格员、事件分类与时限、派遣规则，查看和办理全部事件",
        admin_role: None,
        perms: &[
            PORTAL_USE,
            ORG_READ,
            USER_READ,
            FLOW_MODEL_READ,
            FLOW_TASK,
            GRID_AREA_READ,
            GRID_MANAGE,
            GRID_CASE_REPORT,
            GRID_CASE_READ,
            GRID_CASE_WORK,
            GRID_BASE_READ,
            GRID_BASE_MANAGE,
        ],
        mfa_required: false,
    },
];
