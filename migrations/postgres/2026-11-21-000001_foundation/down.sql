DROP TABLE auth_attempts;
DROP TABLE login_sessions;
DROP TABLE users;
DROP TABLE organizations;
