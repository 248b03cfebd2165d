-- Nothing to undo: σ matches what a search folds to either way.
SELECT 1;
