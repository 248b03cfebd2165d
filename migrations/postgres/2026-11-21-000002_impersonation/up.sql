CREATE TABLE consents (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    duration_hours integer NOT NULL CHECK (duration_hours BETWEEN 1 AND 168),
    granted_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL CHECK (expires_at > granted_at),
    -- Revoked by the user, or replaced by a newer grant; history is kept.
    revoked_at timestamptz,
    superseded_at timestamptz
);
-- At most one open consent per user.
CREATE UNIQUE INDEX consents_one_open ON consents (user_id) WHERE revoked_at IS NULL AND superseded_at IS NULL;
CREATE INDEX consents_user ON consents (user_id, granted_at);

CREATE TABLE impersonation_sessions (
    id uuid PRIMARY KEY,
    impersonator_id uuid NOT NULL REFERENCES users (id),
    target_id uuid NOT NULL REFERENCES users (id),
    consent_id uuid NOT NULL REFERENCES consents (id),
    -- The impersonator's login session: logging out of it ends this one.
    login_session_id uuid NOT NULL REFERENCES login_sessions (id),
    reason text CHECK (length(reason) <= 500),
    started_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at timestamptz,
    end_reason text CHECK (end_reason IN ('stopped', 'expired', 'consent_revoked', 'logout', 'target_suspended', 'target_deleted', 'impersonator_suspended')),
    ip text,
    user_agent text,
    CHECK (impersonator_id <> target_id),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX impersonation_sessions_impersonator ON impersonation_sessions (impersonator_id, id);
CREATE INDEX impersonation_sessions_target ON impersonation_sessions (target_id, id);
CREATE INDEX impersonation_sessions_login ON impersonation_sessions (login_session_id);
CREATE INDEX impersonation_sessions_consent ON impersonation_sessions (consent_id);
