-- Where new pages begin inside a chunk (document character offsets), so a citation names the
-- page of the quoted sentence, not the page its chunk starts on. Empty for one-page chunks and
-- formats without pages; chunks ingested before this migration keep it empty.
ALTER TABLE chunks ADD COLUMN page_breaks integer[] NOT NULL DEFAULT '{}';
