-- One row per request made with an impersonation token (SPEC §5).
CREATE TABLE request_log (
    id uuid PRIMARY KEY,
    seq bigint NOT NULL UNIQUE,
    -- No foreign key: the log records whatever session a validly signed token names.
    session_id uuid NOT NULL,
    at timestamptz NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    query text,
    status integer NOT NULL,
    duration_ms integer NOT NULL,
    ip text,
    user_agent text,
    body text,
    prev_hash text NOT NULL,
    hash text NOT NULL
);
CREATE INDEX request_log_session ON request_log (session_id, seq);

-- Consent and impersonation lifecycle events.
CREATE TABLE audit_events (
    id uuid PRIMARY KEY,
    seq bigint NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind IN ('consent_granted', 'consent_revoked', 'impersonation_started', 'impersonation_stopped', 'impersonation_ended')),
    at timestamptz NOT NULL,
    actor_id uuid,
    subject_id uuid,
    session_id uuid,
    ip text,
    user_agent text,
    detail text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL
);
CREATE INDEX audit_events_actor ON audit_events (actor_id, seq);
CREATE INDEX audit_events_subject ON audit_events (subject_id, seq);
CREATE INDEX audit_events_session ON audit_events (session_id, seq);

-- The last link of each chain. Appending locks its row, so concurrent
-- writers queue up instead of forking the chain.
CREATE TABLE audit_chain_heads (
    chain text PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_chain_heads (chain, seq, hash) VALUES
    ('request_log', 0, '0000000000000000000000000000000000000000000000000000000000000000'),
    ('audit_events', 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only: no UPDATE, DELETE or TRUNCATE of audit rows, from any client.
CREATE FUNCTION actas_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit rows are append-only (% on %)', TG_OP, TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER request_log_append_only BEFORE UPDATE OR DELETE ON request_log
    FOR EACH ROW EXECUTE FUNCTION actas_audit_append_only();
CREATE TRIGGER request_log_no_truncate BEFORE TRUNCATE ON request_log
    FOR EACH STATEMENT EXECUTE FUNCTION actas_audit_append_only();
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION actas_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION actas_audit_append_only();
