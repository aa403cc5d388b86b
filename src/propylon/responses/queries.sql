-- name: insert_response
INSERT INTO responses (id, tenant_id, response, conversation)
VALUES (%(id)s, %(tenant_id)s, %(response)s, %(conversation)s);

-- name: get_response
SELECT response, conversation FROM responses
WHERE id = %(id)s AND tenant_id = %(tenant_id)s;

-- name: delete_response
DELETE FROM responses WHERE id = %(id)s AND tenant_id = %(tenant_id)s
RETURNING id;

-- name: insert_conversation
INSERT INTO response_conversations (id, tenant_id, metadata)
VALUES (%(id)s, %(tenant_id)s, %(metadata)s)
RETURNING id, metadata, created_at;

-- name: get_conversation
SELECT id, metadata, created_at FROM response_conversations
WHERE id = %(id)s AND tenant_id = %(tenant_id)s;

-- name: lock_conversation
-- Items are appended in turn: one writer at a time per conversation.
SELECT id, metadata, created_at FROM response_conversations
WHERE id = %(id)s AND tenant_id = %(tenant_id)s FOR UPDATE;

-- name: update_conversation
UPDATE response_conversations SET metadata = %(metadata)s
WHERE id = %(id)s AND tenant_id = %(tenant_id)s
RETURNING id, metadata, created_at;

-- name: delete_conversation
DELETE FROM response_conversations WHERE id = %(id)s AND tenant_id = %(tenant_id)s
RETURNING id;

-- name: insert_items
INSERT INTO response_conversation_items (conversation_id, id, item)
SELECT %(conversation_id)s, unnest(%(ids)s::text[]), unnest(%(items)s::jsonb[]);

-- name: all_items
SELECT item FROM response_conversation_items
WHERE conversation_id = %(conversation_id)s ORDER BY seq;

-- name: list_items
-- A page after the item at `after_seq` (its place), in either order; one more than asked
-- tells whether there are more.
SELECT item FROM response_conversation_items
WHERE conversation_id = %(conversation_id)s
  AND (%(after_seq)s::bigint IS NULL
       OR CASE WHEN %(descending)s THEN seq < %(after_seq)s ELSE seq > %(after_seq)s END)
ORDER BY CASE WHEN %(descending)s THEN -seq ELSE seq END
LIMIT %(limit)s;

-- name: get_item
SELECT seq, item FROM response_conversation_items
WHERE conversation_id = %(conversation_id)s AND id = %(item_id)s;

-- name: delete_item
DELETE FROM response_conversation_items
WHERE conversation_id = %(conversation_id)s AND id = %(item_id)s
RETURNING id;
