//! Who may impersonate whom (SPEC §2), how long the token lives (SPEC §3), and
//! how a session's state is shown to clients.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::policy::OrgPath;
use super::types::{Role, UserStatus};

/// Why a start was refused. Each maps to one stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token already carries `act`: impersonation never chains.
    Chained,
    /// The caller may not impersonate this user (rules 1–3).
    NotPermitted,
    SelfImpersonation,
    /// The target is a super admin.
    TargetPrivileged,
    /// The target is suspended or deleted.
    TargetInactive,
    /// No active consent: none, expired, or revoked.
    ConsentRequired,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Chained => "chained_impersonation",
            Refusal::NotPermitted => "not_permitted",
            Refusal::SelfImpersonation => "self_impersonation",
            Refusal::TargetPrivileged => "target_privileged",
            Refusal::TargetInactive => "target_inactive",
            Refusal::ConsentRequired => "consent_required",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Chained => "an impersonation token cannot start another impersonation",
            Refusal::NotPermitted => "you may not impersonate this user",
            Refusal::SelfImpersonation => "you cannot impersonate yourself",
            Refusal::TargetPrivileged => "super admins cannot be impersonated",
            Refusal::TargetInactive => "the user is suspended or deleted",
            Refusal::ConsentRequired => {
                "the user has not granted impersonation consent, or it has expired or been revoked; ask them to grant it again"
            }
        }
    }
}

/// Someone on either side of an impersonation.
#[derive(Debug, Clone)]
pub struct Party<'a> {
    pub id: Uuid,
    pub role: Role,
    pub status: UserStatus,
    pub org: &'a OrgPath,
}

/// The target's consent as far as the rules care.
#[derive(Debug, Clone, Copy)]
pub struct ConsentState {
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
}

impl ConsentState {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        !self.revoked && self.expires_at > now
    }
}

/// Rules 1–3, the part that does not depend on the target: super admins and
/// owner-organization users may impersonate someone; nobody else anyone.
pub fn holds_impersonation_right(actor: &Party<'_>) -> bool {
    actor.role == Role::SuperAdmin || actor.org.is_owner()
}

/// A right a caller holds, named for clients (`GET /me`: which tools to show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub enum Permission {
    /// Rule 1 (super admins): impersonate any user but another super admin.
    #[serde(rename = "impersonate:users")]
    ImpersonateUsers,
    /// Rule 2 (other owner-organization users): impersonate users of the
    /// organizations below the owner organization, the customers.
    #[serde(rename = "impersonate:customers")]
    ImpersonateCustomers,
}

/// The permissions of the caller. While impersonating: those of the target,
/// less starting another impersonation (rule 4, no chaining), so none here.
pub fn permissions(caller: &Party<'_>, impersonating: bool) -> Vec<Permission> {
    match caller.role {
        _ if impersonating => vec![],
        Role::SuperAdmin => vec![Permission::ImpersonateUsers],
        _ if caller.org.is_owner() => vec![Permission::ImpersonateCustomers],
        _ => vec![],
    }
}

/// Rules 1–3: whether `actor` holds the right to impersonate `target` at all,
/// regardless of consent and status. Nobody else ever sees the feature.
pub fn may_ever_impersonate(actor: &Party<'_>, target: &Party<'_>) -> Result<(), Refusal> {
    if actor.id == target.id {
        return Err(Refusal::SelfImpersonation);
    }
    if !holds_impersonation_right(actor) {
        return Err(Refusal::NotPermitted);
    }
    if target.role == Role::SuperAdmin {
        return Err(Refusal::TargetPrivileged);
    }
    // Rule 1: super admins, anyone but another super admin.
    // Rule 2: other owner-organization users, only users of organizations below it.
    if actor.role != Role::SuperAdmin && !actor.org.is_ancestor_of(target.org) {
        return Err(Refusal::NotPermitted);
    }
    Ok(())
}

/// The refusals decided before the target is even looked up, so that a
/// caller who may impersonate nobody learns nothing, not even whether the id
/// exists (their own id still gets `self_impersonation`).
pub fn may_look_up_target(actor: &Party<'_>, actor_token_has_act: bool, target_id: Uuid) -> Result<(), Refusal> {
    if actor_token_has_act {
        return Err(Refusal::Chained);
    }
    if !holds_impersonation_right(actor) && target_id != actor.id {
        return Err(Refusal::NotPermitted);
    }
    Ok(())
}

/// Every rule of SPEC §2 except the password confirmation.
pub fn may_impersonate(
    actor: &Party<'_>,
    actor_token_has_act: bool,
    target: &Party<'_>,
    consent: Option<ConsentState>,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    if actor_token_has_act {
        return Err(Refusal::Chained);
    }
    if actor.status != UserStatus::Active {
        return Err(Refusal::NotPermitted);
    }
    may_ever_impersonate(actor, target)?;
    if target.status != UserStatus::Active {
        return Err(Refusal::TargetInactive);
    }
    match consent {
        Some(c) if c.is_active(now) && token_expiry(c.expires_at, now, None).is_some() => Ok(()),
        _ => Err(Refusal::ConsentRequired),
    }
}

/// What a user list shows about impersonating `target`, as `actor` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    /// Whether `actor` could start a session right now.
    pub available: bool,
    /// Until when the target's consent runs; told only to someone who may
    /// impersonate them (never to users for whom the feature does not exist).
    pub consent_expires_at: Option<OffsetDateTime>,
}

pub fn availability(
    actor: &Party<'_>,
    actor_token_has_act: bool,
    target: &Party<'_>,
    consent: Option<ConsentState>,
    now: OffsetDateTime,
) -> Availability {
    let eligible =
        !actor_token_has_act && actor.status == UserStatus::Active && may_ever_impersonate(actor, target).is_ok();
    Availability {
        available: may_impersonate(actor, actor_token_has_act, target, consent, now).is_ok(),
        consent_expires_at: consent.filter(|c| eligible && c.is_active(now)).map(|c| c.expires_at),
    }
}

/// `exp = min(consent expiry, start + cap)` (without a cap, the consent
/// expiry), on whole seconds (JWT `exp` is in seconds; rounding down never
/// outlives the consent). `None` when less than a second is left: too short
/// to be of use.
pub fn token_expiry(
    consent_expires_at: OffsetDateTime,
    started_at: OffsetDateTime,
    cap: Option<Duration>,
) -> Option<OffsetDateTime> {
    let capped = cap.map_or(consent_expires_at, |cap| consent_expires_at.min(started_at + cap));
    let whole = whole_seconds(capped);
    (whole > started_at).then_some(whole)
}

/// An expiry as handed out, in whole seconds, rounded down (never later than
/// what bounds it).
pub fn whole_seconds(at: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(at.unix_timestamp()).unwrap_or(at)
}

/// How a session ended; stored as `end_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Stopped,
    Expired,
    ConsentRevoked,
    Logout,
    TargetSuspended,
    TargetDeleted,
    ImpersonatorSuspended,
}

impl EndReason {
    pub const ALL: [EndReason; 7] = [
        EndReason::Stopped,
        EndReason::Expired,
        EndReason::ConsentRevoked,
        EndReason::Logout,
        EndReason::TargetSuspended,
        EndReason::TargetDeleted,
        EndReason::ImpersonatorSuspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stopped => "stopped",
            EndReason::Expired => "expired",
            EndReason::ConsentRevoked => "consent_revoked",
            EndReason::Logout => "logout",
            EndReason::TargetSuspended => "target_suspended",
            EndReason::TargetDeleted => "target_deleted",
            EndReason::ImpersonatorSuspended => "impersonator_suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The status clients see for a session that ended this way.
    pub fn status(self) -> SessionStatus {
        match self {
            EndReason::Stopped | EndReason::Logout => SessionStatus::Ended,
            EndReason::Expired => SessionStatus::Expired,
            _ => SessionStatus::Revoked,
        }
    }
}

/// A change to a user that ends every session they take part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandingChange {
    Suspended,
    Deleted,
    /// Their tokens name the old role: they start again under the new one.
    RoleChanged,
}

impl StandingChange {
    /// How the user's running impersonations end: `[as the target, as the impersonator]`.
    pub fn end_reasons(self) -> [EndReason; 2] {
        match self {
            StandingChange::Suspended => [EndReason::TargetSuspended, EndReason::ImpersonatorSuspended],
            StandingChange::Deleted => [EndReason::TargetDeleted, EndReason::ImpersonatorSuspended],
            // Nobody is to blame and nothing was revoked: shown as ended.
            StandingChange::RoleChanged => [EndReason::Stopped, EndReason::Stopped],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Running: the token works.
    Ongoing,
    /// Stopped by the impersonator (stop, logout, token revocation), or by a
    /// role change of either user (`end_reason` `stopped` or `logout`).
    Ended,
    /// Reached its expiry.
    Expired,
    /// Ended by the user's side: consent revoked, or a user suspended or deleted.
    Revoked,
}

/// Status and end reason as shown: a session past its expiry that nobody
/// ended is `expired`, ended at its expiry time.
pub fn session_state(
    ended: Option<(OffsetDateTime, EndReason)>,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> (SessionStatus, Option<(OffsetDateTime, EndReason)>) {
    match ended {
        Some((at, reason)) => (reason.status(), Some((at, reason))),
        None if expires_at <= now => (SessionStatus::Expired, Some((expires_at, EndReason::Expired))),
        None => (SessionStatus::Ongoing, None),
    }
}

/// The caller, as the rules for reading impersonation sessions, their logs
/// and the audit events see them.
#[derive(Debug, Clone, Copy)]
pub struct SessionReader {
    /// The user the token acts as (with an impersonation token, the target).
    pub user_id: Uuid,
    pub role: Role,
    /// With an impersonation token: its impersonator and its session.
    pub acting_for: Option<(Uuid, Uuid)>,
}

impl SessionReader {
    /// Super admins with their own token read every session, log and event.
    /// (Impersonating, they have the target's permissions and no more.)
    pub fn reads_everything(&self) -> bool {
        self.acting_for.is_none() && self.role == Role::SuperAdmin
    }

    /// A session's request log: its impersonator and super admins.
    pub fn may_read_log_as_impersonator(&self, impersonator_id: Uuid) -> bool {
        self.reads_everything() || impersonator_id == self.user_id
    }

    /// A session: as its log, and also, with an impersonation token, that
    /// very session, so an exit button can show what it ends.
    pub fn may_read_session(&self, session_id: Uuid, impersonator_id: Uuid) -> bool {
        self.may_read_log_as_impersonator(impersonator_id) || self.acting_for == Some((impersonator_id, session_id))
    }

    /// A session and its log as the one impersonated in it.
    pub fn may_read_as_target(&self, target_id: Uuid) -> bool {
        target_id == self.user_id
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_users_change_ends_their_sessions_with_matching_reasons() {
        use super::{EndReason::*, SessionStatus, StandingChange};
        assert_eq!(StandingChange::Suspended.end_reasons(), [TargetSuspended, ImpersonatorSuspended]);
        assert_eq!(StandingChange::Deleted.end_reasons(), [TargetDeleted, ImpersonatorSuspended]);
        assert_eq!(StandingChange::RoleChanged.end_reasons(), [Stopped, Stopped]);
        for change in [StandingChange::Suspended, StandingChange::Deleted] {
            assert!(change.end_reasons().iter().all(|r| r.status() == SessionStatus::Revoked));
        }
    }

    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00.250 UTC);

    struct Orgs {
        owner: OrgPath,
        acme: OrgPath,
        acme_eu: OrgPath,
    }

    fn orgs() -> Orgs {
        let owner = OrgPath::root(Uuid::from_u128(1));
        let acme = owner.child(Uuid::from_u128(2));
        let acme_eu = acme.child(Uuid::from_u128(3));
        Orgs { owner, acme, acme_eu }
    }

    fn party(role: Role, org: &OrgPath) -> Party<'_> {
        Party { id: Uuid::new_v4(), role, status: UserStatus::Active, org }
    }

    fn consent(hours_left: i64) -> Option<ConsentState> {
        Some(ConsentState { expires_at: NOW + Duration::hours(hours_left), revoked: false })
    }

    #[test]
    fn permissions_name_rules_one_and_two_and_vanish_while_impersonating() {
        let o = orgs();
        let held = |role, org| permissions(&party(role, org), false);
        assert_eq!(held(Role::SuperAdmin, &o.owner), [Permission::ImpersonateUsers]);
        assert_eq!(held(Role::Admin, &o.owner), [Permission::ImpersonateCustomers]);
        assert_eq!(held(Role::Member, &o.owner), [Permission::ImpersonateCustomers]);
        assert_eq!(held(Role::Admin, &o.acme), []);
        assert_eq!(held(Role::Member, &o.acme_eu), []);
        assert_eq!(permissions(&party(Role::Member, &o.owner), true), []);
        assert_eq!(serde_json::to_value(Permission::ImpersonateUsers).unwrap(), "impersonate:users");
    }

    #[test]
    fn super_admin_may_impersonate_anyone_but_super_admins() {
        let o = orgs();
        let sa = party(Role::SuperAdmin, &o.owner);
        for target in [
            party(Role::Member, &o.acme),
            party(Role::Admin, &o.acme_eu),
            party(Role::Admin, &o.owner),
            party(Role::Member, &o.owner),
        ] {
            assert_eq!(may_impersonate(&sa, false, &target, consent(1), NOW), Ok(()));
        }
        assert_eq!(
            may_impersonate(&sa, false, &party(Role::SuperAdmin, &o.owner), consent(1), NOW),
            Err(Refusal::TargetPrivileged)
        );
    }

    #[test]
    fn owner_org_users_may_impersonate_only_below_the_owner() {
        let o = orgs();
        for role in [Role::Member, Role::Admin] {
            let staff = party(role, &o.owner);
            assert_eq!(may_impersonate(&staff, false, &party(Role::Admin, &o.acme), consent(1), NOW), Ok(()));
            assert_eq!(may_impersonate(&staff, false, &party(Role::Member, &o.acme_eu), consent(1), NOW), Ok(()));
            assert_eq!(
                may_impersonate(&staff, false, &party(Role::Member, &o.owner), consent(1), NOW),
                Err(Refusal::NotPermitted)
            );
        }
    }

    #[test]
    fn customer_users_may_not_impersonate_at_all() {
        let o = orgs();
        let customer_admin = party(Role::Admin, &o.acme);
        assert_eq!(
            may_impersonate(&customer_admin, false, &party(Role::Member, &o.acme_eu), consent(1), NOW),
            Err(Refusal::NotPermitted)
        );
        let member = party(Role::Member, &o.acme);
        assert_eq!(may_ever_impersonate(&member, &party(Role::Member, &o.acme)), Err(Refusal::NotPermitted));
        // The right itself, decided before any target is looked at.
        for (role, org, holds) in [
            (Role::SuperAdmin, &o.owner, true),
            (Role::Admin, &o.owner, true),
            (Role::Member, &o.owner, true),
            (Role::Admin, &o.acme, false),
            (Role::Member, &o.acme_eu, false),
        ] {
            assert_eq!(holds_impersonation_right(&party(role, org)), holds, "{role:?} in {org:?}");
        }
    }

    #[test]
    fn availability_tells_consent_only_to_who_may_use_it() {
        let o = orgs();
        let staff = party(Role::Member, &o.owner);
        let customer = party(Role::Member, &o.acme);
        let consent_until = NOW + Duration::hours(2);
        let shown = availability(&staff, false, &customer, consent(2), NOW);
        assert_eq!(shown, Availability { available: true, consent_expires_at: Some(consent_until) });
        // No consent: not available, nothing to tell.
        assert_eq!(availability(&staff, false, &customer, None, NOW), Availability::default_unavailable());
        // A customer admin never learns anything about a colleague's consent.
        let customer_admin = party(Role::Admin, &o.acme);
        assert_eq!(
            availability(&customer_admin, false, &customer, consent(2), NOW),
            Availability::default_unavailable()
        );
        // While impersonating, the feature is gone.
        assert_eq!(availability(&staff, true, &customer, consent(2), NOW), Availability::default_unavailable());
        // A suspended target: not available now, but staff still see the consent.
        let suspended = Party { status: UserStatus::Suspended, ..customer.clone() };
        let shown = availability(&staff, false, &suspended, consent(2), NOW);
        assert_eq!(shown, Availability { available: false, consent_expires_at: Some(consent_until) });
    }

    impl Availability {
        fn default_unavailable() -> Self {
            Availability { available: false, consent_expires_at: None }
        }
    }

    #[test]
    fn never_yourself_never_chained() {
        let o = orgs();
        let sa = party(Role::SuperAdmin, &o.owner);
        assert_eq!(may_impersonate(&sa, false, &sa.clone(), consent(1), NOW), Err(Refusal::SelfImpersonation));
        assert_eq!(may_impersonate(&sa, true, &party(Role::Member, &o.acme), consent(1), NOW), Err(Refusal::Chained));
    }

    #[test]
    fn inactive_targets_and_actors_are_refused() {
        let o = orgs();
        let sa = party(Role::SuperAdmin, &o.owner);
        for status in [UserStatus::Suspended, UserStatus::Deleted] {
            let target = Party { status, ..party(Role::Member, &o.acme) };
            assert_eq!(may_impersonate(&sa, false, &target, consent(1), NOW), Err(Refusal::TargetInactive));
            let actor = Party { status, ..sa.clone() };
            assert_eq!(
                may_impersonate(&actor, false, &party(Role::Member, &o.acme), consent(1), NOW),
                Err(Refusal::NotPermitted)
            );
        }
    }

    #[test]
    fn consent_must_be_there_unrevoked_and_unexpired() {
        let o = orgs();
        let sa = party(Role::SuperAdmin, &o.owner);
        let target = party(Role::Member, &o.acme);
        assert_eq!(may_impersonate(&sa, false, &target, None, NOW), Err(Refusal::ConsentRequired));
        let revoked = Some(ConsentState { expires_at: NOW + Duration::hours(1), revoked: true });
        assert_eq!(may_impersonate(&sa, false, &target, revoked, NOW), Err(Refusal::ConsentRequired));
        let expired = Some(ConsentState { expires_at: NOW, revoked: false });
        assert_eq!(may_impersonate(&sa, false, &target, expired, NOW), Err(Refusal::ConsentRequired));
        // Expiring within the current second: no usable token can be issued.
        let fading = Some(ConsentState { expires_at: NOW + Duration::milliseconds(500), revoked: false });
        assert_eq!(may_impersonate(&sa, false, &target, fading, NOW), Err(Refusal::ConsentRequired));
        let one_second = Some(ConsentState { expires_at: NOW + Duration::milliseconds(1750), revoked: false });
        assert_eq!(may_impersonate(&sa, false, &target, one_second, NOW), Ok(()));
    }

    #[test]
    fn token_lives_until_the_earlier_of_consent_expiry_and_the_cap() {
        let cap = Duration::minutes(30);
        let start = datetime!(2026-11-21 12:00:00 UTC);
        // Consent ends first.
        assert_eq!(token_expiry(start + Duration::minutes(10), start, Some(cap)), Some(start + Duration::minutes(10)));
        // The cap ends first.
        assert_eq!(token_expiry(start + Duration::hours(168), start, Some(cap)), Some(start + cap));
        // Exactly equal.
        assert_eq!(token_expiry(start + cap, start, Some(cap)), Some(start + cap));
        // Consent expiring in one second.
        assert_eq!(token_expiry(start + Duration::seconds(1), start, Some(cap)), Some(start + Duration::seconds(1)));
        // Sub-second remainders round down, never past the consent.
        let start_frac = datetime!(2026-11-21 12:00:00.400 UTC);
        assert_eq!(
            token_expiry(start_frac + Duration::milliseconds(1900), start_frac, Some(cap)),
            Some(datetime!(2026-11-21 12:00:02 UTC))
        );
        assert_eq!(token_expiry(start_frac + Duration::milliseconds(500), start_frac, Some(cap)), None);
        assert_eq!(token_expiry(start, start, Some(cap)), None);
    }

    #[test]
    fn status_follows_the_end_reason() {
        let exp = NOW + Duration::minutes(5);
        assert_eq!(session_state(None, exp, NOW).0, SessionStatus::Ongoing);
        assert_eq!(session_state(None, exp, exp), (SessionStatus::Expired, Some((exp, EndReason::Expired))));
        for (reason, status) in [
            (EndReason::Stopped, SessionStatus::Ended),
            (EndReason::Logout, SessionStatus::Ended),
            (EndReason::Expired, SessionStatus::Expired),
            (EndReason::ConsentRevoked, SessionStatus::Revoked),
            (EndReason::TargetSuspended, SessionStatus::Revoked),
            (EndReason::TargetDeleted, SessionStatus::Revoked),
            (EndReason::ImpersonatorSuspended, SessionStatus::Revoked),
        ] {
            assert_eq!(session_state(Some((NOW, reason)), exp, NOW).0, status);
            assert_eq!(EndReason::parse(reason.as_str()), Some(reason));
        }
    }

    #[test]
    fn who_reads_which_session() {
        let (sam, ada, root, session, other) =
            (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3), Uuid::from_u128(10), Uuid::from_u128(11));
        let reader = |user_id, role, acting_for| SessionReader { user_id, role, acting_for };
        // The impersonator, with their own token: their sessions and logs only.
        let sam_self = reader(sam, Role::Admin, None);
        assert!(sam_self.may_read_session(session, sam) && sam_self.may_read_log_as_impersonator(sam));
        assert!(!sam_self.may_read_session(session, root) && !sam_self.reads_everything());
        // Super admins: everything, but not while impersonating.
        let root_self = reader(root, Role::SuperAdmin, None);
        assert!(root_self.reads_everything() && root_self.may_read_session(session, sam));
        let root_as_ada = reader(ada, Role::SuperAdmin, Some((root, session)));
        assert!(!root_as_ada.reads_everything() && !root_as_ada.may_read_log_as_impersonator(root));
        // With Sam's impersonation token (acting as Ada): that one session, not its log as impersonator.
        let sam_as_ada = reader(ada, Role::Member, Some((sam, session)));
        assert!(sam_as_ada.may_read_session(session, sam));
        assert!(!sam_as_ada.may_read_session(other, sam) && !sam_as_ada.may_read_log_as_impersonator(sam));
        // As the target: Ada reads what was done as her, whoever holds the token.
        assert!(sam_as_ada.may_read_as_target(ada) && reader(ada, Role::Member, None).may_read_as_target(ada));
        assert!(!sam_self.may_read_as_target(ada));
    }

    #[test]
    fn who_may_impersonate_nobody_learns_nothing_about_the_target() {
        let (owner, customer) =
            (OrgPath::root(Uuid::from_u128(100)), OrgPath::root(Uuid::from_u128(100)).child(Uuid::from_u128(101)));
        let party = |id: u128, role, org| Party { id: Uuid::from_u128(id), role, status: UserStatus::Active, org };
        let member = party(1, Role::Member, &customer);
        let staff = party(2, Role::Member, &owner);
        let anyone = Uuid::from_u128(99);
        assert_eq!(may_look_up_target(&member, false, anyone), Err(Refusal::NotPermitted));
        assert_eq!(
            may_look_up_target(&member, false, member.id),
            Ok(()),
            "their own id: self_impersonation comes later"
        );
        assert_eq!(may_look_up_target(&staff, false, anyone), Ok(()));
        assert_eq!(may_look_up_target(&staff, true, anyone), Err(Refusal::Chained));
    }
}
