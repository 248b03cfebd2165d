-- Housekeeping (every node, every 30 s) looks for open sessions past their
-- expiry, and /metrics counts the open ones still running: both read only
-- open rows by expiry, however many ended sessions pile up.
CREATE INDEX impersonation_sessions_open ON impersonation_sessions (expires_at) WHERE ended_at IS NULL;
CREATE INDEX login_sessions_open ON login_sessions (expires_at) WHERE ended_at IS NULL;
