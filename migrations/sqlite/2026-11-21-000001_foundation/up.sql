-- Same tables as the PostgreSQL migration; uuid and timestamptz are TEXT here
-- (hyphenated lowercase / fixed-width RFC 3339 UTC, so text order = value order).
CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_id TEXT REFERENCES organizations (id),
    path TEXT NOT NULL UNIQUE,
    depth INTEGER NOT NULL CHECK (depth >= 0),
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX organizations_single_owner ON organizations ((parent_id IS NULL)) WHERE parent_id IS NULL;
CREATE INDEX organizations_parent ON organizations (parent_id);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL CHECK (email = lower(email)),
    name TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    role TEXT NOT NULL CHECK (role IN ('super_admin', 'admin', 'member')),
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE UNIQUE INDEX users_live_email ON users (email) WHERE status <> 'deleted';
CREATE INDEX users_organization ON users (organization_id);

CREATE TABLE login_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    ended_at TEXT,
    end_reason TEXT,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX login_sessions_user ON login_sessions (user_id);

CREATE TABLE auth_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    attempted_at TEXT NOT NULL
);
CREATE INDEX auth_attempts_window ON auth_attempts (scope, subject, attempted_at);
