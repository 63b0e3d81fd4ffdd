-- The embedded text a generation's vectors were made from: the source definition's text fingerprint
-- (refarch.source). A new text is a new generation, like a new model: the re-index compares it with
-- the definition applied (docs/own-table.md). `refarch db migrate` fills it for the generations made
-- before; every generation made after records the text applied when it is created.
ALTER TABLE index_generations ADD COLUMN source_text text;

CREATE FUNCTION current_source_text() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT text_fingerprint FROM source_definition $$;

ALTER TABLE index_generations ALTER COLUMN source_text SET DEFAULT current_source_text();

-- Emu (which generations keep their vectors), reconcile and the re-index (which text is current) read it.
GRANT SELECT ON source_definition TO refarch_web, refarch_emu, refarch_pelican;
