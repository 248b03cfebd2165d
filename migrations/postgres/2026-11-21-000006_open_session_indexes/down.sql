DROP INDEX login_sessions_open;
DROP INDEX impersonation_sessions_open;
