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

-- Typo tolerance: the trigrams of every word of the name (brands are the names' first word) and of
-- the SKU, each word padded with '_' ("_ab", "abc", "bc_"), the way pg_trgm reads words. A misspelled
-- query shares most of its trigrams with the name it meant; refarch/search/query_text.py makes the
-- query's trigrams the same way. Not pg_trgm itself: the embedded Postgres of local runs and tests
-- (pgserver) ships without contrib extensions, and this is core Postgres everywhere (a GIN index on
-- a tsvector, like 0007's).
CREATE FUNCTION word_trigrams(text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN coalesce((
    SELECT array_to_tsvector(array_agg(DISTINCT substr('_' || w || '_', i, 3)))
    FROM regexp_split_to_table(lower($1), '[^a-z0-9]+') AS w, generate_series(1, length(w)) AS i
    WHERE w <> ''
), ''::tsvector);

ALTER TABLE products ADD COLUMN search_trigrams tsvector GENERATED ALWAYS AS (
    word_trigrams(name || ' ' || sku)
) STORED;

CREATE INDEX products_search_trigrams_idx ON products USING gin (search_trigrams);
