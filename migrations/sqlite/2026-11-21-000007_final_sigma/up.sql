-- Search folds the Greek final sigma (ς) into σ, as Unicode case folding
-- does: a name stored as ΟΔΥΣΣΕΥΣ is found by ΟΔΥΣ (lower case: οδυσ, not οδυς).
UPDATE users SET name_folded = replace(name_folded, 'ς', 'σ');
