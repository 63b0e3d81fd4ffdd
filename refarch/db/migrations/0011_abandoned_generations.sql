-- An abandoned build (`refarch reindex --abort`, {"action": "abort"}) gets a status of its own.
-- It was recorded as `retired`, so Emu kept applying every change to it (embedding each edit with
-- a model nobody wanted any more, failing the edit's message when that model or index was the
-- reason for the abort) and a rollback could make it active. `abandoned` is not live: no writer
-- touches it, no rollback restores it, and the next gc drops it whatever the grace period.
ALTER TABLE index_generations DROP CONSTRAINT index_generations_status_check;
ALTER TABLE index_generations ADD CONSTRAINT index_generations_status_check
    CHECK (status IN ('building', 'active', 'retired', 'abandoned', 'dropped'));
-- Builds abandoned before: retired "long ago" (-infinity), never active.
UPDATE index_generations SET status = 'abandoned', retired_at = NULL
WHERE status = 'retired' AND retired_at = '-infinity' AND activated_at IS NULL;
-- Generations dropped before now had their index removed by the gc that dropped them; from now on
-- gc marks a generation dropped first and records the removal after it (refarch.reindex).
UPDATE index_generations SET target = coalesce(target, '{}'::jsonb) || '{"index_removed": true}'
WHERE status = 'dropped';
