-- name: insert_response
INSERT INTO responses (id, tenant_id, response, conversation)
VALUES (%(id)s, %(tenant_id)s, %(response)s, %(conversation)s);

-- name: get_response
SELECT response, conversation FROM responses
WHERE id = %(id)s AND tenant_id = %(tenant_id)s;

-- name: delete_response
DELETE FROM responses WHERE id = %(id)s AND tenant_id = %(tenant_id)s
RETURNING id;
