-- Named blocks of the artifact store (helix/services/artifacts.py): `artifact_blobs` is one
-- upload, `artifact_chunks` its bytes in order, `artifact_contents` the blob holding each
-- checked content by its sha256.

-- name: new_blob
INSERT INTO artifact_blobs (blob_id, job_id) VALUES ($1, $2)

-- name: add_chunk
INSERT INTO artifact_chunks (blob_id, seq, data) VALUES ($1, $2, $3)

-- The checked upload becomes the content's blob, unless an earlier upload of the same bytes
-- already is (then nothing is returned and the new blob is dropped).
-- name: adopt_blob
INSERT INTO artifact_contents (sha256, blob_id, size, chunks) VALUES ($1, $2, $3, $4)
ON CONFLICT (sha256) DO NOTHING
RETURNING blob_id

-- name: drop_blob
DELETE FROM artifact_blobs WHERE blob_id = $1

-- name: content
SELECT blob_id, size, chunks FROM artifact_contents WHERE sha256 = $1

-- name: chunk
SELECT data FROM artifact_chunks WHERE blob_id = $1 AND seq = $2

-- Uploads that never became a content (the server stopped while one was on its way).
-- name: drop_abandoned
DELETE FROM artifact_blobs b
WHERE b.created_at < $1
  AND NOT EXISTS (SELECT 1 FROM artifact_contents c WHERE c.blob_id = b.blob_id)
