-- Sources that keep a collection in step with where its documents live (a web site, a
-- folder, an S3 bucket), what each sync found, and what the sync running now has done.

CREATE TABLE sources (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL,
    collection_id uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    type          text NOT NULL CHECK (type IN ('url', 'folder', 's3')),
    config        jsonb NOT NULL,             -- where and how to list; never a secret
    secret        text,                       -- s3 secret key; never returned nor logged
    key_id        text,                       -- the API key that made it, charged for embeddings
    interval_s    integer CHECK (interval_s IS NULL OR interval_s > 0),
    next_sync_at  timestamptz,                -- the schedule: the next sync is enqueued then
    last_job_id   uuid,
    last_sync_at  timestamptz,
    last_result   jsonb,                      -- the counts of the last finished sync
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sources_collection ON sources (collection_id, created_at);
CREATE INDEX sources_due ON sources (next_sync_at) WHERE next_sync_at IS NOT NULL;

-- What the collection holds of each item of a source, and the version it was made from.
CREATE TABLE source_items (
    source_id   uuid NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    key         text NOT NULL,                -- URL, path under the folder, object key
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     text,                         -- ETag, Last-Modified, mtime and size
    sha256      text NOT NULL,
    PRIMARY KEY (source_id, key)
);
CREATE INDEX source_items_document ON source_items (document_id);

-- The items one sync job has dealt with, written in the transaction of each item's effect:
-- an attempt after a lost worker skips them and ends with the same counts.
CREATE TABLE source_sync_items (
    job_id  uuid NOT NULL,
    key     text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('added', 'replaced', 'deleted', 'skipped', 'rejected')),
    PRIMARY KEY (job_id, key)
);
