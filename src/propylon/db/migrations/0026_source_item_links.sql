-- The in-scope links of a crawled page (a `url` source in `site` mode), kept with its version:
-- a page asked for again with a conditional GET that answers 304 comes without its body, and
-- the crawl follows the links it had then (rag/sources/web.py). NULL: not a crawled HTML page.
ALTER TABLE source_items ADD COLUMN IF NOT EXISTS links text[];
