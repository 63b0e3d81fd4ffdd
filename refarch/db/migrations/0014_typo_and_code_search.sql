-- Search that forgives how people type codes and names (refarch/search/lexical.py).
--
-- search_codes: the SKU and the name with separators squeezed out of codes ("AB-1234-C" -> "ab1234c",
-- "WH-1000XM5" -> "wh1000xm5"), lower case, as 'simple' tokens. A query that looks like a code is
-- squeezed the same way and matched as a token prefix ('ab1234:*'), so "AB1234C", "ab-1234" and
-- "AB-1234" all find "AB-1234-C", and "XT9" finds a name that says "XT-9". Generated, like 0007's
-- search_document: true to the row on every write, outside change capture.
ALTER TABLE products ADD COLUMN search_codes tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig,
        regexp_replace(lower(sku), '[^a-z0-9]+', '', 'g')
        || ' ' || regexp_replace(lower(name), '([a-z0-9])[-./]+(?=[a-z0-9])', '\1', 'g'))
) STORED;

CREATE INDEX products_search_codes_idx ON products USING gin (search_codes);

-- Typo tolerance: trigram similarity (pg_trgm, an extension RDS for PostgreSQL supports) on names
-- (brands are the names' first word) and SKUs, asked only when the full-text query finds nothing.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops);
CREATE INDEX products_sku_trgm_idx ON products USING gin (sku gin_trgm_ops);
