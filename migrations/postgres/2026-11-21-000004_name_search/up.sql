-- Name search must fold case the same way on every backend and in every
-- database locale (PostgreSQL's lower() depends on LC_CTYPE and folds only
-- ASCII under "C"), so the service stores the folded name itself.
ALTER TABLE users ADD COLUMN name_folded TEXT NOT NULL DEFAULT '';
UPDATE users SET name_folded = lower(name);
