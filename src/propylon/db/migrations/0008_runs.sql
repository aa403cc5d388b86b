-- Background runs: a chat request, a RAG answer, or a small chain of named steps, executed as a
-- durable job. Every event a run produces is kept in order, so a client that reconnects with the
-- last event id it saw gets the rest without loss, across gateway restarts.
CREATE TABLE runs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    job_id      uuid,
    kind        text NOT NULL CHECK (kind IN ('chat', 'answer', 'chain')),
    spec        jsonb NOT NULL,                -- the normalised steps
    principal   jsonb NOT NULL,                -- who asked: scopes apply on the worker too
    state       text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    steps       jsonb NOT NULL DEFAULT '{}',   -- step name -> {state, attempts, output, error}
    output      text NOT NULL DEFAULT '',      -- partial output of the generating step
    result      jsonb,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at DESC);

CREATE TABLE run_events (
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    type       text NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
