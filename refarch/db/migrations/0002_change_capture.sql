-- Durable change capture: a transactional outbox written by triggers in the same transaction
-- as the change, plus a tiny NOTIFY (just the outbox id) to wake the listener up early.

CREATE TABLE sync_outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id  bigint      NOT NULL,
    op          text        NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    version     bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    enqueued_at timestamptz
);
-- The listener only ever scans rows not yet enqueued; keep that scan tiny.
CREATE INDEX sync_outbox_pending_idx ON sync_outbox (id) WHERE enqueued_at IS NULL;
CREATE INDEX sync_outbox_enqueued_idx ON sync_outbox (enqueued_at) WHERE enqueued_at IS NOT NULL;

-- Version and timestamps are the database's job, whatever the client sent.
CREATE FUNCTION products_stamp_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
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

CREATE FUNCTION products_capture_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    outbox_id bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- A tombstone gets the next version so it orders after every state of the row.
        INSERT INTO sync_outbox (product_id, op, version)
        VALUES (OLD.id, 'delete', OLD.version + 1) RETURNING id INTO outbox_id;
    ELSE
        INSERT INTO sync_outbox (product_id, op, version)
        VALUES (NEW.id, lower(TG_OP), NEW.version) RETURNING id INTO outbox_id;
    END IF;
    -- Only a wake-up: the payload is the outbox id, never row data (NOTIFY caps at 8000 bytes).
    PERFORM pg_notify('refarch_outbox', outbox_id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER products_stamp_version
    BEFORE INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_stamp_version();

CREATE TRIGGER products_capture_insert_delete
    AFTER INSERT OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_capture_change();

CREATE TRIGGER products_capture_update
    AFTER UPDATE ON products
    FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION products_capture_change();
