//! Who may see and change which organizations and users.
//!
//! - `super_admin`: everything, everywhere.
//! - `admin`: organizations and users in their own organization's subtree, and
//!   never a user whose role is above their own.
//! - `member`: only themself.
//! - A role can be granted only by someone holding at least that role, and
//!   `super_admin` only by an owner-organization user (SPEC §2 rule 6), to a
//!   user of the owner organization (a platform role, never a customer one).
//! - Nobody changes their own role or status or deletes themself: that is how
//!   the last administrator locks everyone out.
//!
//! Resources outside the caller's scope are reported as not found, so that a
//! customer admin cannot probe for other customers' ids.

use uuid::Uuid;

use super::impersonation::StandingChange;
use super::types::{Invalid, Role, UserStatus};

/// A position in the organization tree: the materialized path `/root/…/self/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPath(String);

impl OrgPath {
    pub fn root(id: Uuid) -> Self {
        Self(format!("/{id}/"))
    }

    pub fn child(&self, id: Uuid) -> Self {
        Self(format!("{}{id}/", self.0))
    }

    pub fn from_stored(path: String) -> Self {
        Self(path)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Depth below the owner organization (which is 0).
    pub fn depth(&self) -> i32 {
        (self.0.matches('/').count() as i32 - 2).max(0)
    }

    /// How deep organizations may nest below the owner organization: enough
    /// for any real hierarchy, and paths stay small enough to index.
    pub const MAX_DEPTH: i32 = 16;

    /// Whether an organization may be created below this one.
    pub fn has_room_below(&self) -> Result<(), Invalid> {
        if self.depth() < Self::MAX_DEPTH {
            Ok(())
        } else {
            Err(Invalid::new(
                "parent_id",
                format!("organizations nest at most {} levels below the owner organization", Self::MAX_DEPTH),
            ))
        }
    }

    pub fn is_owner(&self) -> bool {
        self.depth() == 0
    }

    /// Whether `other` is this organization or one below it.
    pub fn contains(&self, other: &OrgPath) -> bool {
        other.0.starts_with(&self.0)
    }

    /// Whether `other` lies strictly below this organization.
    pub fn is_ancestor_of(&self, other: &OrgPath) -> bool {
        other.0.len() > self.0.len() && self.contains(other)
    }
}

/// The authenticated caller, as far as the rules care.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Uuid,
    pub role: Role,
    pub org: OrgPath,
}

/// A user someone wants to see or change.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub id: Uuid,
    pub role: Role,
    pub org: &'a OrgPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Outside the caller's scope: answered as 404.
    NotFound,
    /// Visible, but the caller may not do this: 403 with a reason.
    Forbidden(&'static str),
    /// The request asks for something no one may do: 422.
    Invalid(Invalid),
}

pub type Decision = Result<(), Denied>;

/// Which users a list holds for a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserScope<'a> {
    All,
    /// Users of this organization and the ones below it.
    Subtree(&'a OrgPath),
    /// This one user.
    Only(Uuid),
}

/// Requested changes to a user, already parsed.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub name: bool,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

impl UserChanges {
    /// Whether the changes touch who may impersonate whom (and so must wait
    /// for the requests that rely on the user's row).
    pub fn change_standing(&self) -> bool {
        self.role.is_some() || self.status.is_some()
    }

    /// What these changes do to the sessions of a user who now has `role`
    /// and `status`: a suspension ends them; so does a new role, which their
    /// tokens no longer name. Reactivating, or setting what already is, ends nothing.
    pub fn session_endings(&self, role: Role, status: UserStatus) -> Vec<StandingChange> {
        let mut endings = Vec::new();
        if self.status == Some(UserStatus::Suspended) && status != UserStatus::Suspended {
            endings.push(StandingChange::Suspended);
        }
        if self.role.is_some_and(|new| new != role) {
            endings.push(StandingChange::RoleChanged);
        }
        endings
    }
}

impl Actor {
    /// Organization-level administration (create/list organizations and users).
    pub fn may_administer(&self) -> Decision {
        if self.role >= Role::Admin {
            Ok(())
        } else {
            Err(Denied::Forbidden("only administrators may manage organizations and users"))
        }
    }

    pub fn sees_org(&self, org: &OrgPath) -> bool {
        match self.role {
            Role::SuperAdmin => true,
            Role::Admin => self.org.contains(org),
            Role::Member => false,
        }
    }

    pub fn sees_user(&self, subject: &Subject<'_>) -> bool {
        subject.id == self.id || self.sees_org(subject.org)
    }

    /// The users a list shows this caller: the same ones `sees_user` admits.
    pub fn listed_users(&self) -> UserScope<'_> {
        match self.role {
            Role::SuperAdmin => UserScope::All,
            Role::Admin => UserScope::Subtree(&self.org),
            Role::Member => UserScope::Only(self.id),
        }
    }

    /// The organizations a list shows this caller (`None`: all of them).
    pub fn listed_orgs(&self) -> Option<&OrgPath> {
        (self.role != Role::SuperAdmin).then_some(&self.org)
    }

    /// Whether a user list may be narrowed to `org`: one the caller sees,
    /// or their own (a member then finds themself).
    pub fn may_filter_users_by(&self, org: &OrgPath) -> bool {
        self.sees_org(org) || *org == self.org
    }

    pub fn may_create_org(&self, parent: &OrgPath) -> Decision {
        self.may_administer()?;
        if self.sees_org(parent) {
            Ok(())
        } else {
            Err(Denied::NotFound)
        }
    }

    pub fn may_create_user(&self, org: &OrgPath, role: Role) -> Decision {
        self.may_administer()?;
        if !self.sees_org(org) {
            return Err(Denied::NotFound);
        }
        self.may_assign_role(role, org)
    }

    pub fn may_change_user(&self, subject: &Subject<'_>, changes: &UserChanges) -> Decision {
        if !self.sees_user(subject) {
            return Err(Denied::NotFound);
        }
        if subject.id == self.id {
            return if changes.role.is_some_and(|r| r != self.role)
                || changes.status.is_some_and(|s| s != UserStatus::Active)
            {
                Err(Denied::Forbidden("you cannot change your own role or status"))
            } else {
                Ok(())
            };
        }
        self.may_administer()?;
        self.outranks_or_equals(subject)?;
        if let Some(role) = changes.role {
            self.may_assign_role(role, subject.org)?;
        }
        if changes.status == Some(UserStatus::Deleted) {
            return Err(Denied::Invalid(Invalid {
                field: "status",
                message: "a user is deleted by deleting them, not by a status change".into(),
            }));
        }
        Ok(())
    }

    pub fn may_delete_user(&self, subject: &Subject<'_>) -> Decision {
        if !self.sees_user(subject) {
            return Err(Denied::NotFound);
        }
        if subject.id == self.id {
            return Err(Denied::Forbidden("you cannot delete yourself"));
        }
        self.may_administer()?;
        self.outranks_or_equals(subject)
    }

    fn outranks_or_equals(&self, subject: &Subject<'_>) -> Decision {
        if subject.role > self.role {
            Err(Denied::Forbidden("you cannot manage a user whose role is above your own"))
        } else {
            Ok(())
        }
    }

    fn may_assign_role(&self, role: Role, target_org: &OrgPath) -> Decision {
        if role == Role::SuperAdmin {
            if !self.org.is_owner() {
                return Err(Denied::Forbidden("super_admin can be assigned only by owner-organization users"));
            }
            if !target_org.is_owner() {
                return Err(Denied::Invalid(Invalid {
                    field: "role",
                    message: "super_admin is a platform role: only users of the owner organization can hold it".into(),
                }));
            }
        }
        if role > self.role {
            return Err(Denied::Forbidden("you cannot grant a role above your own"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree {
        owner: OrgPath,
        acme: OrgPath,
        acme_eu: OrgPath,
        globex: OrgPath,
    }

    fn tree() -> Tree {
        let owner = OrgPath::root(Uuid::from_u128(1));
        let acme = owner.child(Uuid::from_u128(2));
        let acme_eu = acme.child(Uuid::from_u128(3));
        let globex = owner.child(Uuid::from_u128(4));
        Tree { owner, acme, acme_eu, globex }
    }

    fn actor(role: Role, org: &OrgPath) -> Actor {
        Actor { id: Uuid::new_v4(), role, org: org.clone() }
    }

    fn subject<'a>(role: Role, org: &'a OrgPath) -> Subject<'a> {
        Subject { id: Uuid::new_v4(), role, org }
    }

    #[test]
    fn suspensions_and_new_roles_end_sessions_nothing_else_does() {
        let changes = |role, status| UserChanges { name: true, role, status };
        let (member, active, suspended) = (Role::Member, UserStatus::Active, UserStatus::Suspended);
        assert_eq!(changes(None, Some(suspended)).session_endings(member, active), [StandingChange::Suspended]);
        assert_eq!(changes(None, Some(suspended)).session_endings(member, suspended), []);
        assert_eq!(changes(None, Some(active)).session_endings(member, suspended), []);
        assert_eq!(changes(Some(Role::Admin), None).session_endings(member, active), [StandingChange::RoleChanged]);
        assert_eq!(changes(Some(member), None).session_endings(member, active), []);
        assert_eq!(
            changes(Some(Role::Admin), Some(suspended)).session_endings(member, active),
            [StandingChange::Suspended, StandingChange::RoleChanged]
        );
        assert_eq!(changes(None, None).session_endings(member, active), []);
        assert!(!changes(None, None).change_standing() && changes(Some(member), None).change_standing());
    }

    #[test]
    fn lists_hold_what_the_caller_sees() {
        let t = tree();
        assert_eq!(actor(Role::SuperAdmin, &t.owner).listed_users(), UserScope::All);
        assert_eq!(actor(Role::Admin, &t.acme).listed_users(), UserScope::Subtree(&t.acme));
        let member = actor(Role::Member, &t.acme);
        assert_eq!(member.listed_users(), UserScope::Only(member.id));
        assert_eq!(actor(Role::SuperAdmin, &t.acme).listed_orgs(), None);
        assert_eq!(actor(Role::Admin, &t.acme).listed_orgs(), Some(&t.acme));
        // A member narrows to their own organization only; an admin to any they see.
        assert!(member.may_filter_users_by(&t.acme));
        assert!(!member.may_filter_users_by(&t.acme_eu) && !member.may_filter_users_by(&t.owner));
        let admin = actor(Role::Admin, &t.acme);
        assert!(admin.may_filter_users_by(&t.acme_eu) && !admin.may_filter_users_by(&t.globex));
    }

    #[test]
    fn paths_know_the_tree() {
        let t = tree();
        assert!(t.owner.is_owner() && !t.acme.is_owner());
        assert_eq!((t.owner.depth(), t.acme.depth(), t.acme_eu.depth()), (0, 1, 2));
        let mut deepest = t.acme_eu.clone();
        while deepest.depth() < OrgPath::MAX_DEPTH {
            assert!(deepest.has_room_below().is_ok(), "depth {}", deepest.depth());
            deepest = deepest.child(Uuid::now_v7());
        }
        assert_eq!(deepest.has_room_below().unwrap_err().field, "parent_id");
        assert!(t.acme.contains(&t.acme_eu) && t.acme.contains(&t.acme));
        assert!(!t.acme.contains(&t.globex) && !t.acme_eu.contains(&t.acme));
        assert!(t.owner.is_ancestor_of(&t.acme) && !t.acme.is_ancestor_of(&t.acme));
    }

    #[test]
    fn super_admin_sees_everything() {
        let t = tree();
        let sa = actor(Role::SuperAdmin, &t.owner);
        assert!(sa.sees_org(&t.globex) && sa.sees_org(&t.acme_eu));
    }

    #[test]
    fn admin_sees_only_their_subtree() {
        let t = tree();
        let admin = actor(Role::Admin, &t.acme);
        assert!(admin.sees_org(&t.acme) && admin.sees_org(&t.acme_eu));
        assert!(!admin.sees_org(&t.globex) && !admin.sees_org(&t.owner));
        assert_eq!(admin.may_create_user(&t.globex, Role::Member), Err(Denied::NotFound));
        assert_eq!(admin.may_create_org(&t.globex), Err(Denied::NotFound));
        assert_eq!(admin.may_create_org(&t.acme_eu), Ok(()));
    }

    #[test]
    fn member_sees_only_themself() {
        let t = tree();
        let member = actor(Role::Member, &t.acme);
        assert!(!member.sees_org(&t.acme));
        let me = Subject { id: member.id, role: Role::Member, org: &t.acme };
        assert!(member.sees_user(&me));
        assert!(!member.sees_user(&subject(Role::Member, &t.acme)));
        assert!(matches!(member.may_create_user(&t.acme, Role::Member), Err(Denied::Forbidden(_))));
        assert!(matches!(member.may_create_org(&t.acme), Err(Denied::Forbidden(_))));
    }

    #[test]
    fn member_may_rename_themself_but_not_promote() {
        let t = tree();
        let member = actor(Role::Member, &t.acme);
        let me = Subject { id: member.id, role: Role::Member, org: &t.acme };
        assert_eq!(member.may_change_user(&me, &UserChanges { name: true, ..Default::default() }), Ok(()));
        let promote = UserChanges { role: Some(Role::Admin), ..Default::default() };
        assert!(matches!(member.may_change_user(&me, &promote), Err(Denied::Forbidden(_))));
    }

    #[test]
    fn super_admin_only_by_owner_org_and_only_in_owner_org() {
        let t = tree();
        let promote = UserChanges { role: Some(Role::SuperAdmin), ..Default::default() };
        let customer_admin = actor(Role::Admin, &t.acme);
        assert_eq!(
            customer_admin.may_change_user(&subject(Role::Member, &t.acme_eu), &promote),
            Err(Denied::Forbidden("super_admin can be assigned only by owner-organization users"))
        );
        let sa = actor(Role::SuperAdmin, &t.owner);
        assert_eq!(sa.may_change_user(&subject(Role::Admin, &t.owner), &promote), Ok(()));
        assert!(matches!(sa.may_change_user(&subject(Role::Admin, &t.acme), &promote), Err(Denied::Invalid(_))));
        // An owner-org admin is an owner-org user but still cannot grant above their own role.
        let owner_admin = actor(Role::Admin, &t.owner);
        assert_eq!(
            owner_admin.may_create_user(&t.owner, Role::SuperAdmin),
            Err(Denied::Forbidden("you cannot grant a role above your own"))
        );
    }

    #[test]
    fn admins_cannot_touch_super_admins() {
        let t = tree();
        let owner_admin = actor(Role::Admin, &t.owner);
        let sa = subject(Role::SuperAdmin, &t.owner);
        assert!(owner_admin.sees_user(&sa));
        assert!(matches!(owner_admin.may_delete_user(&sa), Err(Denied::Forbidden(_))));
        let suspend = UserChanges { status: Some(UserStatus::Suspended), ..Default::default() };
        assert!(matches!(owner_admin.may_change_user(&sa, &suspend), Err(Denied::Forbidden(_))));
        assert_eq!(owner_admin.may_change_user(&subject(Role::Admin, &t.acme), &suspend), Ok(()));
    }

    #[test]
    fn nobody_suspends_or_deletes_themself() {
        let t = tree();
        let sa = actor(Role::SuperAdmin, &t.owner);
        let me = Subject { id: sa.id, role: Role::SuperAdmin, org: &t.owner };
        let suspend = UserChanges { status: Some(UserStatus::Suspended), ..Default::default() };
        assert!(matches!(sa.may_change_user(&me, &suspend), Err(Denied::Forbidden(_))));
        assert!(matches!(sa.may_delete_user(&me), Err(Denied::Forbidden(_))));
        let demote = UserChanges { role: Some(Role::Member), ..Default::default() };
        assert!(matches!(sa.may_change_user(&me, &demote), Err(Denied::Forbidden(_))));
    }

    #[test]
    fn status_deleted_goes_through_delete() {
        let t = tree();
        let sa = actor(Role::SuperAdmin, &t.owner);
        let delete = UserChanges { status: Some(UserStatus::Deleted), ..Default::default() };
        assert!(matches!(sa.may_change_user(&subject(Role::Member, &t.acme), &delete), Err(Denied::Invalid(_))));
    }
}
