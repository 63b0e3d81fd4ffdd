-- A row inserted under an id that was indexed before (deleted, then inserted again) continues that
-- id's versions past every version any generation's ledger holds for it. With version 1 (0002) it
-- could look indexed already: the ledger still said "indexed at 3" when the delete had not been
-- applied yet (delete and insert in one transaction, or both still queued), so Emu skipped the row
-- (its version guard), the old vector kept the old price and version, and the status said synced.
CREATE OR REPLACE FUNCTION products_stamp_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- One primary-key lookup per live generation: cheap for a fresh id, which has no entry.
        NEW.version := 1 + coalesce((
            SELECT max(s.indexed_version) FROM sync_state s
            WHERE s.generation IN (SELECT id FROM index_generations) AND s.product_id = NEW.id
        ), 0);
        NEW.created_at := now();
        NEW.updated_at := now();
    ELSIF (NEW.sku, NEW.name, NEW.description, NEW.category, NEW.price)
          IS NOT DISTINCT FROM (OLD.sku, OLD.name, OLD.description, OLD.category, OLD.price) THEN
        -- Nothing that is embedded or stored as vector metadata changed: not a change.
        NEW.version := OLD.version;
        NEW.created_at := OLD.created_at;
        NEW.updated_at := OLD.updated_at;
    ELSE
        NEW.version := OLD.version + 1;
        NEW.created_at := OLD.created_at;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
-- It reads the ledger, which the web role (which inserts products) may only read, not rely on:
-- run with its owner's rights, as the outbox trigger does (0005).
ALTER FUNCTION products_stamp_version() SECURITY DEFINER SET search_path = public, pg_temp;

-- A row whose ledger entry says "deleted" is pending, whatever the versions say.
CREATE OR REPLACE VIEW product_sync_status AS
SELECT p.id AS product_id,
       p.version,
       s.indexed_version,
       CASE
           WHEN s.status = 'failed' THEN 'failed'
           WHEN s.product_id IS NULL OR s.status = 'deleted' OR s.indexed_version < p.version THEN 'pending'
           ELSE 'indexed'
       END AS status,
       CASE WHEN s.status = 'failed' THEN s.last_error END AS last_error,
       s.attempts,
       s.indexed_at
FROM products p
LEFT JOIN sync_state s ON s.product_id = p.id AND s.generation = active_generation();
