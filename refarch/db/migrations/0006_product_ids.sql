-- A product id is the key of its vector, its ledger row and every message about it, so it is
-- positive (the message contract requires it) and it never changes: an UPDATE of the id would
-- look like a no-op to change capture, orphan the old id's vector and never index the new one.

ALTER TABLE products ADD CONSTRAINT products_id_positive CHECK (id > 0);

CREATE FUNCTION products_refuse_id_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'product % cannot change its id to %', OLD.id, NEW.id
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'Delete the product and insert it again under the new id.';
END $$;

CREATE TRIGGER products_refuse_id_change
    BEFORE UPDATE OF id ON products
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION products_refuse_id_change();
