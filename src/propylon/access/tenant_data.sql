-- Every row of one tenant, table by table, in the order `tenant_deletion.delete_tenant`
-- runs them (one transaction). Tables whose rows belong to these (documents, chunks, uploads,
-- source items, conversation turns and items, run events, keys, key usage, WebSocket tickets) go with
-- them by ON DELETE CASCADE. `%(tenant_id)s` is the tenant's id as text: some tables keep it
-- as text (written before a tenant row is at hand), others as uuid.

-- name: jobs
-- First: a worker running one of them finds its row gone at its next heartbeat and stops.
DELETE FROM jobs WHERE tenant_id = %(tenant_id)s;

-- name: runs
DELETE FROM runs WHERE tenant_id = %(tenant_id)s::uuid;

-- name: conversations
DELETE FROM conversations WHERE tenant_id = %(tenant_id)s::uuid;

-- name: sources
DELETE FROM sources WHERE tenant_id = %(tenant_id)s::uuid;

-- name: collections
DELETE FROM collections WHERE tenant_id = %(tenant_id)s::uuid;

-- name: responses
DELETE FROM responses WHERE tenant_id = %(tenant_id)s::uuid;

-- name: response_conversations
DELETE FROM response_conversations WHERE tenant_id = %(tenant_id)s::uuid;

-- name: mcp_servers
DELETE FROM mcp_servers WHERE tenant_id = %(tenant_id)s::uuid;

-- name: cache_entries
DELETE FROM cache_entries WHERE tenant_id = %(tenant_id)s;

-- name: cache_lookups
DELETE FROM cache_lookups WHERE tenant_id = %(tenant_id)s;

-- name: feedback
DELETE FROM feedback WHERE tenant_id = %(tenant_id)s;

-- name: request_log
DELETE FROM request_log WHERE tenant_id = %(tenant_id)s;

-- name: spans
DELETE FROM spans WHERE tenant_id = %(tenant_id)s;

-- name: tenants
-- Last: its keys, their usage and tickets go with it.
DELETE FROM tenants WHERE id = %(tenant_id)s::uuid;
