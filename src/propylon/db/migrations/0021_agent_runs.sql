-- Agent runs: a model deciding which tool to call, step by step. `steps` of an agent run is an
-- ordered array of model and tool steps (each durable: a resumed run skips the completed ones);
-- a tool that needs a person's approval parks the run in `waiting_for_approval`.
ALTER TABLE runs DROP CONSTRAINT runs_kind_check;
ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN ('chat', 'answer', 'chain', 'agent'));
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check
    CHECK (state IN ('queued', 'running', 'waiting_for_approval', 'succeeded', 'failed',
                     'cancelled'));
