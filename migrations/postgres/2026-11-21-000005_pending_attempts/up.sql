-- An attempt is recorded as pending before its credential is checked, and
-- only counts as a failure once it failed (or was never settled): correct
-- passwords checked at the same moment no longer look like failures.
ALTER TABLE auth_attempts ADD COLUMN pending boolean NOT NULL DEFAULT false;
