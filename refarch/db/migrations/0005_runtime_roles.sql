-- Least privilege in the database: one role per runtime, each granted only what its code does.
-- On AWS each runtime logs in as its own role with its own generated secret (the migrate custom
-- resource turns LOGIN on and sets the password, refarch.db.roles); only that resource holds the
-- admin credentials. Locally everything may run as the embedded server's superuser.
--
--   refarch_web      the page and its API: edits products, reads sync status and the vector table
--   refarch_emu      the indexer: reads products, owns the ledger, the vectors and the embed audit
--   refarch_pelican  listener, bootstrap and reconcile: reads products and the ledger, drains the
--                    outbox, owns the bootstrap bookkeeping
--
-- Roles are cluster-wide; a second database on the same server finds them already there.
DO $$
DECLARE
    runtime_role text;
BEGIN
    FOREACH runtime_role IN ARRAY ARRAY['refarch_web', 'refarch_emu', 'refarch_pelican'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', runtime_role);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created by an earlier database on this server, or concurrently
        END;
    END LOOP;
END $$;

GRANT USAGE ON SCHEMA public TO refarch_web, refarch_emu, refarch_pelican;

-- The outbox is written by the products trigger, never by a runtime: the trigger runs with its
-- owner's rights, so the web role can change products without being able to touch the outbox.
ALTER FUNCTION products_capture_change() SECURITY DEFINER SET search_path = public, pg_temp;

GRANT SELECT, INSERT, UPDATE, DELETE ON products TO refarch_web;
GRANT USAGE ON SEQUENCE products_id_seq TO refarch_web;
GRANT SELECT ON sync_state, product_sync_status, sync_outbox TO refarch_web;

GRANT SELECT ON products TO refarch_emu;
GRANT SELECT, INSERT, UPDATE ON sync_state TO refarch_emu;
GRANT INSERT ON embed_calls TO refarch_emu;
GRANT USAGE ON SEQUENCE embed_calls_id_seq TO refarch_emu;

GRANT SELECT ON products, sync_state, product_sync_status TO refarch_pelican;
GRANT SELECT, UPDATE, DELETE ON sync_outbox TO refarch_pelican;
GRANT SELECT, INSERT, UPDATE ON bootstrap_runs, bootstrap_ranges TO refarch_pelican;
GRANT USAGE ON SEQUENCE bootstrap_runs_id_seq TO refarch_pelican;

-- The pgvector table is created on first use with the embedder's dimension (refarch.vector_index),
-- which grants the same; a database that already has it gets the grants here.
DO $$
BEGIN
    IF to_regclass('product_vectors') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON product_vectors TO refarch_emu;
        GRANT SELECT ON product_vectors TO refarch_web, refarch_pelican;
    END IF;
END $$;
