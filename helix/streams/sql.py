"""The few queries of the streams package (the log itself is read through the EventStore)."""

from __future__ import annotations

# $1 uuid[]: the owners of the given projects (projects that do not exist are left out).
PROJECT_OWNERS = "SELECT project_id, owner FROM projects WHERE project_id = ANY ($1::uuid[])"

# $1 job id: the job's project and owner, for the job stream's visibility check.
JOB_OWNER = "SELECT project_id, owner FROM jobs WHERE job_id = $1"

# $1 stream id, $2 terminal types: where the job ended in the log, if it has.
TERMINAL_POSITION = """
SELECT position FROM events
WHERE stream_id = $1 AND type = ANY ($2::text[]) AND position IS NOT NULL
ORDER BY position
LIMIT 1
"""
