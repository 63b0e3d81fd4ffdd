-- An id's versions never repeat, across a delete and an insert under the same id. With version 1
-- on every insert (0002), a row inserted again could (a) look indexed already: the ledger still
-- said "indexed at 3" when the delete was not yet applied (delete and insert in one transaction,
-- or both still queued, or Emu embedding the old row at that moment), so Emu skipped the new row,
-- the old vector kept the old price and version, and the status said synced; and (b) repeat
-- versions already sent to the live lane, whose FIFO queue drops a message whose deduplication id
-- (product id + version) it saw in the last 5 minutes, so a later edit of the new row was lost.

-- The last version each deleted id was given: its tombstone's (the delete's outbox version).
CREATE TABLE deleted_product_versions (
    product_id   bigint PRIMARY KEY,
    last_version bigint NOT NULL
);
INSERT INTO deleted_product_versions (product_id, last_version)
SELECT product_id, max(version) FROM sync_outbox WHERE op = 'delete' GROUP BY product_id;

-- The outbox trigger (0002) also records a deleted row's tombstone version. Replacing the function
-- resets its properties: it keeps running with its owner's rights (0005).
CREATE OR REPLACE FUNCTION products_capture_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    outbox_id bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- A tombstone gets the next version so it orders after every state of the row.
        INSERT INTO sync_outbox (product_id, op, version)
        VALUES (OLD.id, 'delete', OLD.version + 1) RETURNING id INTO outbox_id;
        INSERT INTO deleted_product_versions (product_id, last_version) VALUES (OLD.id, OLD.version + 1)
        ON CONFLICT (product_id) DO UPDATE
            SET last_version = greatest(deleted_product_versions.last_version, EXCLUDED.last_version);
    ELSE
        INSERT INTO sync_outbox (product_id, op, version)
        VALUES (NEW.id, lower(TG_OP), NEW.version) RETURNING id INTO outbox_id;
    END IF;
    -- Only a wake-up: the payload is the outbox id, never row data (NOTIFY caps at 8000 bytes).
    PERFORM pg_notify('refarch_outbox', outbox_id::text);
    RETURN NULL;
END $$;

-- An insert starts past the id's last tombstone, and past anything a ledger holds for it (ids
-- deleted before this migration whose outbox rows were pruned). A fresh id: two primary-key
-- lookups that find nothing, version 1 as before.
CREATE OR REPLACE FUNCTION products_stamp_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- A transaction deleting this id that has not committed yet holds its row: wait for it, so
        -- its tombstone is seen below (each statement here reads what is committed by then). A
        -- fresh id has no row: nothing to wait for, and no lock is taken.
        PERFORM 1 FROM products WHERE id = NEW.id FOR UPDATE;
        NEW.version := 1 + greatest(
            coalesce((SELECT d.last_version FROM deleted_product_versions d WHERE d.product_id = NEW.id), 0),
            coalesce((
                SELECT max(s.indexed_version) FROM sync_state s
                WHERE s.generation IN (SELECT id FROM index_generations) AND s.product_id = NEW.id
            ), 0)
        );
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
