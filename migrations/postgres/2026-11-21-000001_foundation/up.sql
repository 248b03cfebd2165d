CREATE TABLE organizations (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_id uuid REFERENCES organizations (id),
    path text NOT NULL UNIQUE,
    depth integer NOT NULL CHECK (depth >= 0),
    created_at timestamptz NOT NULL
);
-- Exactly one owner organization: the only row without a parent.
CREATE UNIQUE INDEX organizations_single_owner ON organizations ((parent_id IS NULL)) WHERE parent_id IS NULL;
CREATE INDEX organizations_parent ON organizations (parent_id);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL CHECK (email = lower(email)),
    name text NOT NULL,
    organization_id uuid NOT NULL REFERENCES organizations (id),
    role text NOT NULL CHECK (role IN ('super_admin', 'admin', 'member')),
    status text NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz
);
-- A deleted user's email may be used again; live emails are unique.
CREATE UNIQUE INDEX users_live_email ON users (email) WHERE status <> 'deleted';
CREATE INDEX users_organization ON users (organization_id);

CREATE TABLE login_sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at timestamptz,
    end_reason text,
    ip text,
    user_agent text
);
CREATE INDEX login_sessions_user ON login_sessions (user_id);

CREATE TABLE auth_attempts (
    id uuid PRIMARY KEY,
    scope text NOT NULL,
    subject text NOT NULL,
    attempted_at timestamptz NOT NULL
);
CREATE INDEX auth_attempts_window ON auth_attempts (scope, subject, attempted_at);
