-- Same tables as the PostgreSQL migration (uuid and timestamptz as TEXT).
CREATE TABLE request_log (
    id TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL UNIQUE,
    session_id TEXT NOT NULL,
    at TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT,
    status INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    ip TEXT,
    user_agent TEXT,
    body TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX request_log_session ON request_log (session_id, seq);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('consent_granted', 'consent_revoked', 'impersonation_started', 'impersonation_stopped', 'impersonation_ended')),
    at TEXT NOT NULL,
    actor_id TEXT,
    subject_id TEXT,
    session_id TEXT,
    ip TEXT,
    user_agent TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_actor ON audit_events (actor_id, seq);
CREATE INDEX audit_events_subject ON audit_events (subject_id, seq);
CREATE INDEX audit_events_session ON audit_events (session_id, seq);

CREATE TABLE audit_chain_heads (
    chain TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_chain_heads (chain, seq, hash) VALUES
    ('request_log', 0, '0000000000000000000000000000000000000000000000000000000000000000'),
    ('audit_events', 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER request_log_no_update BEFORE UPDATE ON request_log
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER request_log_no_delete BEFORE DELETE ON request_log
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
