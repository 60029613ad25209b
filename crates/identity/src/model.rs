//! Identity's domain types.

use serde::{Deserialize, Serialize};

kernel::typed_id!(
    /// An organisation (administrative unit or department).
    OrgId
);
kernel::typed_id!(
    /// A user account.
    UserId
);
kernel::typed_id!(
    /// A role.
    RoleId
);
kernel::typed_id!(
    /// A grant of a role to a user.
    GrantId
);

/// Typed ids appear as plain strings in the OpenAPI document.
macro_rules! string_schema {
    ($($t:ty),*) => {$(
        impl utoipa::PartialSchema for $t {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <String as utoipa::PartialSchema>::schema()
            }
        }
        impl utoipa::ToSchema for $t {}
    )*};
}
string_schema!(OrgId, UserId, RoleId, GrantId);

/// The kinds of organisation, top to bottom; departments hang under any level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    Province,
    City,
    District,
    Street,
    Community,
    Grid,
    Department,
}

impl OrgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Province => "province",
            OrgKind::City => "city",
            OrgKind::District => "district",
            OrgKind::Street => "street",
            OrgKind::Community => "community",
            OrgKind::Grid => "grid",
            OrgKind::Department => "department",
        }
    }

    pub fn parse(s: &str) -> Option<OrgKind> {
        Some(match s {
            "province" => OrgKind::Province,
            "city" => OrgKind::City,
            "district" => OrgKind::District,
            "street" => OrgKind::Street,
            "community" => OrgKind::Community,
            "grid" => OrgKind::Grid,
            "department" => OrgKind::Department,
            _ => return None,
        })
    }

    /// Rank in the administrative hierarchy (departments have none).
    fn rank(self) -> Option<u8> {
        match self {
            OrgKind::Province => Some(0),
            OrgKind::City => Some(1),
            OrgKind::District => Some(2),
            OrgKind::Street => Some(3),
            OrgKind::Community => Some(4),
            OrgKind::Grid => Some(5),
            OrgKind::Department => None,
        }
    }

    /// Whether an org of this kind may sit directly under `parent`.
    pub fn may_sit_under(self, parent: OrgKind) -> bool {
        match (self.rank(), parent.rank()) {
            // A department sits under any level (or another department, as a section).
            (None, _) => true,
            // Nothing administrative sits under a department.
            (Some(_), None) => false,
            // Levels may be skipped (a directly governed community), never reversed.
            (Some(child), Some(p)) => child > p,
        }
    }
}

/// An organisation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Org {
    pub id: OrgId,
    pub parent_id: Option<OrgId>,
    pub kind: OrgKind,
    pub code: String,
    pub name: String,
    #[serde(skip)]
    pub path: String,
    pub depth: i64,
    pub sort: i64,
}

/// The data a grant reaches (数据权限).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataScope {
    /// Everything.
    All,
    /// The anchor org and every org below it.
    OrgAndBelow,
    /// The anchor org only.
    OwnOrg,
    /// Only objects the user owns.
    #[serde(rename = "self")]
    SelfOnly,
    /// A listed set of orgs.
    Custom,
}

impl DataScope {
    pub fn as_str(self) -> &'static str {
        match self {
            DataScope::All => "all",
            DataScope::OrgAndBelow => "org_and_below",
            DataScope::OwnOrg => "own_org",
            DataScope::SelfOnly => "self",
            DataScope::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<DataScope> {
        Some(match s {
            "all" => DataScope::All,
            "org_and_below" => DataScope::OrgAndBelow,
            "own_org" => DataScope::OwnOrg,
            "self" => DataScope::SelfOnly,
            "custom" => DataScope::Custom,
            _ => return None,
        })
    }
}

/// The three administrators (三员).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    Sysadmin,
    Secadmin,
    Auditor,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Sysadmin => "sysadmin",
            AdminRole::Secadmin => "secadmin",
            AdminRole::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<AdminRole> {
        Some(match s {
            "sysadmin" => AdminRole::Sysadmin,
            "secadmin" => AdminRole::Secadmin,
            "auditor" => AdminRole::Auditor,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Disabled,
}

/// A user as shown to others (personal fields masked unless the viewer may unmask).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub primary_org_id: OrgId,
    pub primary_org_name: String,
    pub org_ids: Vec<OrgId>,
    pub admin_role: Option<AdminRole>,
    pub status: UserStatus,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub must_change_password: bool,
    pub totp_enabled: bool,
    /// Locked until this time (unix ms), when locked.
    pub locked_until: Option<i64>,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
    /// The account's end date (unix ms), if it has one: from then on it cannot log in.
    pub expires_at: Option<i64>,
}

/// A role with its permissions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Role {
    pub id: RoleId,
    pub code: String,
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub admin_role: Option<AdminRole>,
    pub mfa_required: bool,
    pub permissions: Vec<String>,
}

/// A role granted to a user with a data scope.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Grant {
    pub id: GrantId,
    pub user_id: UserId,
    pub role_id: RoleId,
    pub role_code: String,
    pub role_name: String,
    pub scope: DataScope,
    pub anchor_org_id: OrgId,
    pub anchor_org_name: String,
    /// For `custom` scopes.
    pub org_ids: Vec<OrgId>,
    pub created_at: i64,
}
