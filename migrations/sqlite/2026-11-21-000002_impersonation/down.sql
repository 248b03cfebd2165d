DROP TABLE impersonation_sessions;
DROP TABLE consents;
