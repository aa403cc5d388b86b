-- Agent runs: a model deciding which tool to call, step by step. `steps` of an agent run is an
-- ordered array of model and tool steps (each durable: a resumed run skips the completed ones);
-- a tool that needs a person's approval parks the run in `waiting_for_approval`.
ALTER TABLE runs DROP CONSTRAINT runs_kind_check;
ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN ('chat', 'answer', 'chain', 'agent'));
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check
    CHECK (state IN ('queued', 'running', 'waiting_for_approval', 'succeeded', 'failed',
                     'cancelled'));

-- MCP servers a tenant registered: their tools can be given to the tenant's agents.
CREATE TABLE mcp_servers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL,
    name       text NOT NULL,
    url        text,                -- streamable HTTP endpoint
    command    jsonb,               -- or a stdio command [executable, arg, …] the operator allows
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    CHECK ((url IS NULL) <> (command IS NULL))
);
