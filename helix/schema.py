"""The database schema as SQLAlchemy Core metadata.

Only alembic uses this (migrations are written against it, and a test checks that the migrated
database matches it). At run time Helix talks to PostgreSQL through asyncpg and named SQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.types import UserDefinedType


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id type (PostgreSQL 13+)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    # Insertion order (not indexed): breaks ties between rows of one transaction.
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
    sa.Column("stream_id", sa.Text, nullable=False),
    sa.Column("stream_type", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("project_id", pg.UUID(as_uuid=True)),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("data", pg.JSONB, nullable=False),
    sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column(
        "recorded_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.text("clock_timestamp()"),
    ),
    sa.Column(
        "transaction_id", Xid8(), nullable=False, server_default=sa.text("pg_current_xact_id()")
    ),
    sa.Column("position", sa.BigInteger),
    sa.Column("hash", sa.LargeBinary),
    sa.UniqueConstraint("stream_id", "version", name="events_stream_version_key"),
    sa.CheckConstraint("version > 0", name="events_version_positive"),
    sa.CheckConstraint("(position IS NULL) = (hash IS NULL)", name="events_position_has_hash"),
)
# Every index on `events` costs twice per event: at the append and again when the sequencer
# writes the position (an update of an indexed column is never HOT). Position indexes are
# partial, so appends do not touch them; the unsequenced index is partial the other way round.
sa.Index(
    "events_position_key",
    events.c.position,
    unique=True,
    postgresql_where=events.c.position.isnot(None),
)
sa.Index(
    "events_unsequenced_idx",
    events.c.transaction_id,
    events.c.id,
    postgresql_where=events.c.position.is_(None),
)
sa.Index(
    "events_project_position_idx",
    events.c.project_id,
    events.c.position,
    postgresql_where=events.c.position.isnot(None),
)

streams = sa.Table(
    "streams",
    metadata,
    sa.Column("stream_id", sa.Text, primary_key=True),
    sa.Column("stream_type", sa.Text, nullable=False),
    sa.Column("project_id", pg.UUID(as_uuid=True)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
)

sequencer_state = sa.Table(
    "sequencer_state",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("head_position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("head_hash", sa.LargeBinary, nullable=False),
    sa.Column("leader", sa.Text),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
    sa.CheckConstraint("id = 1", name="sequencer_state_single_row"),
)

# --- auth ---

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("username", sa.Text, nullable=False, unique=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("external_subject", sa.Text, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True)),
    sa.Column("version", sa.Integer, nullable=False),
    # JWTs issued before this are refused (a password change, or all tokens revoked).
    sa.Column("tokens_valid_after", sa.DateTime(timezone=True)),
    sa.CheckConstraint("role IN ('admin', 'user', 'worker', 'auditor')", name="users_role_known"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False, unique=True),
    sa.Column("key_sha256", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("scopes", pg.ARRAY(sa.Text)),  # NULL: all the user's role allows
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("expired_at", sa.DateTime(timezone=True)),  # when `api_key.expired` was recorded
)

# Logged-out JWTs, by `jti`, kept until their `exp` (part of the users projection).
revoked_tokens = sa.Table(
    "revoked_tokens",
    metadata,
    sa.Column("token_id", sa.Text, primary_key=True),
    sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
)

user_passwords = sa.Table(
    "user_passwords",
    metadata,
    sa.Column("user_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
)

api_key_usage = sa.Table(
    "api_key_usage",
    metadata,
    sa.Column("key_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
)

helix_secrets = sa.Table(
    "helix_secrets",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("headers", pg.JSONB),
    sa.Column("body", sa.LargeBinary),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
)
sa.Index("idempotency_keys_created_idx", idempotency_keys.c.created_at)

# --- read models (projections/) ----------------------------------------------------------------
# Each projection owns its tables, and their rows carry the version of the stream they reflect
# (`version`); that is what makes applying an event twice (inline, then by the runner) a no-op
# (projections/seen.py). Read-model tables have no sequences, so `projections rebuild` can
# clone them with LIKE.

projection_checkpoints = sa.Table(
    "projection_checkpoints",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("project_type", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("archived", sa.Boolean, nullable=False),
    sa.Column("phases", pg.JSONB, nullable=False),
    sa.Column("latest_job_id", pg.UUID(as_uuid=True)),
    sa.Column("message_count", sa.Integer, nullable=False),
    sa.Column("max_job_duration_s", sa.Float),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)
sa.Index("projects_owner_created_idx", projects.c.owner, projects.c.created_at)
sa.Index("projects_status_idx", projects.c.status)
sa.Index("projects_type_idx", projects.c.project_type)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("project_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("start_phase", sa.Text),
    sa.Column("model", sa.Text),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("worker_id", sa.Text),
    sa.Column("fencing_token", sa.Integer, nullable=False),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("not_before", sa.DateTime(timezone=True)),
    sa.Column("progress", sa.Integer, nullable=False),
    sa.Column("cost_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("dead_lettered", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # Added later (migrations 0011, 0013, 0014 and 0016), so last, as the migrated table has them.
    sa.Column("pause_requested", sa.Boolean, nullable=False),
    sa.Column("max_duration_s", sa.Float),
    sa.Column("waiting_since", sa.DateTime(timezone=True)),
    sa.Column("priority", sa.SmallInteger, nullable=False),  # JobPriority.rank
)
sa.Index("jobs_owner_created_idx", jobs.c.owner, jobs.c.created_at)
sa.Index("jobs_project_created_idx", jobs.c.project_id, jobs.c.created_at)
sa.Index("jobs_status_idx", jobs.c.status, jobs.c.owner)
# Only the claimable jobs, so a claim reads a few entries however many jobs ever ran.
_CLAIMABLE = sa.and_(jobs.c.status == "queued", sa.not_(jobs.c.cancel_requested))
sa.Index(
    "jobs_claim_order_idx",
    jobs.c.priority.desc(),
    jobs.c.created_at,
    jobs.c.job_id,
    postgresql_where=_CLAIMABLE,
)
sa.Index("jobs_claim_age_idx", jobs.c.created_at, jobs.c.job_id, postgresql_where=_CLAIMABLE)
# Each owner's running jobs, kept by the jobs projection for the claim's per-owner limit.
job_owners = sa.Table(
    "job_owners",
    metadata,
    sa.Column("owner", sa.Text, primary_key=True),
    sa.Column("running", sa.Integer, nullable=False),
)

job_phases = sa.Table(
    "job_phases",
    metadata,
    sa.Column("job_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("ordinal", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("command", pg.JSONB),
    sa.Column("timeout_s", sa.Float),
    sa.Column("capabilities", pg.JSONB, nullable=False),
    sa.Column("env", pg.JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("output_lines", sa.Integer, nullable=False),
    sa.Column("files", pg.JSONB, nullable=False),
    sa.Column("cost_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("skip_reason", sa.Text),
    # Added later (migration 0014), so last, as the migrated table has it.
    sa.Column("version", sa.Integer, nullable=False),
    # Added by migration 0018: the latest run's resource usage (NULL: none reported).
    sa.Column("cpu_s", sa.Float),
    sa.Column("max_rss_bytes", sa.BigInteger),
    sa.Column("read_bytes", sa.BigInteger),
    sa.Column("write_bytes", sa.BigInteger),
    sa.UniqueConstraint("job_id", "name", name="job_phases_job_name_key"),
)

job_output_lines = sa.Table(
    "job_output_lines",
    metadata,
    sa.Column("job_id", pg.UUID(as_uuid=True), primary_key=True),
    # Dense per job (1, 2, 3 …) in the order the lines were written, across phases.
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("phase", sa.Text, nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    # The attempt (the job's claim, 1, 2 …) that wrote the line.
    sa.Column("attempt", sa.Integer, nullable=False),
    # The version of the job's stream that wrote it (migration 0014).
    sa.Column("version", sa.Integer, nullable=False),
)
sa.Index(
    "job_output_lines_phase_idx",
    job_output_lines.c.job_id,
    job_output_lines.c.phase,
    job_output_lines.c.line_no,
    unique=True,
)

project_messages = sa.Table(
    "project_messages",
    metadata,
    sa.Column("message_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("project_id", pg.UUID(as_uuid=True), nullable=False),
    # Dense per project (1, 2, 3 …) in posting order.
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    # The version of the project's stream that posted it (migration 0014).
    sa.Column("version", sa.Integer, nullable=False),
)
sa.Index(
    "project_messages_project_seq_idx",
    project_messages.c.project_id,
    project_messages.c.seq,
    unique=True,
)

# --- webhooks ---
# Endpoints are a projection of the `webhook-<uuid>` streams; their signing secrets (never in an
# event) and their delivery health (not events either) sit beside them in tables the projection
# never writes. Deliveries are written by the dispatcher in the transaction that advances its
# checkpoint; every HTTP attempt is kept.

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("endpoint_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("owner", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event_types", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("type_patterns", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("previous_secret_until", sa.DateTime(timezone=True)),
    sa.Column("after_position", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    sa.Column("version", sa.Integer, nullable=False),
)
sa.Index("webhook_endpoints_owner_idx", webhook_endpoints.c.owner, webhook_endpoints.c.created_at)

# Credentials: written by the endpoint service in the transaction of the event that creates or
# rotates them, removed with the endpoint; a rebuild of the projection never touches them.
webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("endpoint_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("previous_secret", sa.Text),
)

# Runtime state the delivery workers write on every attempt (not events, so not a projection).
webhook_health = sa.Table(
    "webhook_health",
    metadata,
    sa.Column("endpoint_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("failing_since", sa.DateTime(timezone=True)),
    sa.Column("last_failure_at", sa.DateTime(timezone=True)),
    sa.Column("last_success_at", sa.DateTime(timezone=True)),
)

webhook_dispatcher = sa.Table(
    "webhook_dispatcher",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
    sa.CheckConstraint("id = 1", name="webhook_dispatcher_single_row"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("delivery_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("endpoint_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("position", sa.BigInteger),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("replay_of", pg.UUID(as_uuid=True)),
    sa.Column("payload", pg.JSONB),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
    sa.Column("locked_by", pg.UUID(as_uuid=True)),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("dead_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint(
        "kind IN ('log', 'replay', 'retry', 'recover', 'ping')", name="webhook_deliveries_kind"
    ),
    sa.CheckConstraint(
        "status IN ('pending', 'succeeded', 'dead')", name="webhook_deliveries_status"
    ),
)
# The dispatcher's exactly-once: one delivery from the log per (endpoint, event).
sa.Index(
    "webhook_deliveries_log_key",
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.event_id,
    unique=True,
    postgresql_where=webhook_deliveries.c.kind == "log",
)
sa.Index(
    "webhook_deliveries_due_idx",
    webhook_deliveries.c.next_attempt_at,
    postgresql_where=webhook_deliveries.c.status == "pending",
)
sa.Index(
    "webhook_deliveries_endpoint_idx",
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.created_at,
)
# Recovery asks whether any delivery of an (endpoint, event) succeeded.
sa.Index(
    "webhook_deliveries_event_idx",
    webhook_deliveries.c.event_id,
    webhook_deliveries.c.endpoint_id,
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("delivery_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("endpoint_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error_class", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("response_body", sa.Text),
    sa.Column("response_truncated", sa.Boolean, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column(
        "recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
)

# The worker registry (projections/workers): registration and online/offline, from the log.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("capabilities", pg.JSONB, nullable=False),
    sa.Column("resources", pg.JSONB, nullable=False),
    sa.Column("online", sa.Boolean, nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("offline_since", sa.DateTime(timezone=True)),
    sa.Column("version", sa.Integer, nullable=False),
)
sa.Index("workers_user_idx", workers.c.user_id, workers.c.registered_at)
sa.Index("workers_online_idx", workers.c.online, workers.c.registered_at)
# The version a pruned worker's stream reached (its `workers` row has left).
workers_pruned = sa.Table(
    "workers_pruned",
    metadata,
    sa.Column("worker_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

# Not a projection: liveness that is not an event (a worker heartbeats every few seconds),
# written in place by heartbeats and claims. No foreign key, since `workers` is swapped whole
# on a rebuild.
worker_heartbeats = sa.Table(
    "worker_heartbeats",
    metadata,
    sa.Column("worker_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("current_job_id", pg.UUID(as_uuid=True)),
    sa.Column("resources", pg.JSONB),
    sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("worker_heartbeats_last_idx", worker_heartbeats.c.last_heartbeat_at)

# --- artifacts (helix/artifacts.py): the bytes of the files phases produced ------------------
# Not a projection: the log says what each stored file is (`job.artifact_stored`: path, size,
# sha256); these tables hold the bytes, once per content (by sha256), in chunks. An upload is
# written to a blob of its own and becomes that content's only once checked and recorded.
artifact_blobs = sa.Table(
    "artifact_blobs",
    metadata,
    sa.Column("blob_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("job_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
)
artifact_chunks = sa.Table(
    "artifact_chunks",
    metadata,
    sa.Column(
        "blob_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("artifact_blobs.blob_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
artifact_contents = sa.Table(
    "artifact_contents",
    metadata,
    sa.Column("sha256", sa.Text, primary_key=True),
    sa.Column(
        "blob_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("artifact_blobs.blob_id"),
        nullable=False,
        unique=True,
    ),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
)
