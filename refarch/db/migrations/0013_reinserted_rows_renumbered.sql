-- Rows inserted again under a deleted id before 0012 started at version 1 (0002), so their versions
-- repeat ones their id already had. 0012 numbers new inserts past the id's history but leaves those
-- rows as they are, with what 0012 was written against: when the ledger still held the old row
-- (delete and insert in one transaction, both queued, or Emu embedding the old row at that moment)
-- Emu skips the new row for good (the old vector keeps the old price and version) and the status
-- says synced; and their next edits reuse versions the live lane's FIFO queue may have seen.
--
-- Each such row (its version at or below its id's last tombstone, or below a version a ledger holds
-- for the id) moves past every version its id was given. The stamp trigger (0012) owns versions and
-- would keep an unchanged row's, so it is off for this one statement; the capture trigger stays on
-- and records the move like an edit (an outbox row and a NOTIFY), so Emu indexes the row that is there.
-- DISABLE TRIGGER locks products against every other write until this migration commits, so no
-- client's change runs while the trigger is off.
ALTER TABLE products DISABLE TRIGGER products_stamp_version;

WITH used AS (
    SELECT p.id, greatest(p.version, coalesce(d.last_version, 0), coalesce(l.indexed_version, 0)) AS last_version
    FROM products p
    LEFT JOIN deleted_product_versions d ON d.product_id = p.id
    LEFT JOIN (
        SELECT product_id, max(indexed_version) AS indexed_version FROM sync_state GROUP BY product_id
    ) l ON l.product_id = p.id
    WHERE p.version <= coalesce(d.last_version, 0) OR p.version < coalesce(l.indexed_version, 0)
)
UPDATE products p SET version = used.last_version + 1, updated_at = now()
FROM used
WHERE p.id = used.id;

ALTER TABLE products ENABLE TRIGGER products_stamp_version;
