"""Settings, read once from `HELIX_*` environment variables, with defaults that work on a laptop."""

from __future__ import annotations

import enum
import ipaddress
import json
import math
import os
import shlex
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import attrs

from helix.system_users import PHASE_USER

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")


class PhaseCommands(enum.StrEnum):
    """Who may put a `command` of their own in a phase (HELIX_PHASE_COMMANDS)."""

    ANYONE = "anyone"
    ADMINS = "admins"  # everyone else only a configured template's phases
    TEMPLATES = "templates"  # nobody: only the configured templates' phases have commands


class LogFormat(enum.StrEnum):
    """How `helix serve` and `helix worker` write their log lines (HELIX_LOG_FORMAT)."""

    TEXT = "text"
    JSON = "json"


class SettingError(ValueError):
    """A `HELIX_*` variable whose value cannot be used; the message names the variable."""


def _parsed(name: str, raw: str, parse: Callable[[str], T], what: str) -> T:
    try:
        return parse(raw.strip())
    except ValueError:
        raise SettingError(f"{name}: {raw!r} is not {what}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return default if raw in (None, "") else _parsed(name, raw, float, "a number")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return default if raw in (None, "") else _parsed(name, raw, int, "a whole number")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name} must be true or false, not {env[name]!r}")


def _strings(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in (env.get(name) or "").split(",") if x.strip())


def _bytes(env: Mapping[str, str], name: str, default: int) -> int:
    """A number of bytes, 0 for no limit."""
    value = _int(env, name, default)
    if value < 0:
        raise SettingError(f"{name} must be a number of bytes, 0 for no limit")
    return value


def _duration(env: Mapping[str, str], name: str) -> float | None:
    """A positive number of seconds; unset, empty or 0: None (no limit)."""
    seconds = _float(env, name, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        raise SettingError(f"{name} must be a number of seconds, 0 for no limit")
    return seconds or None


def output_filter_patterns(
    env: Mapping[str, str], name: str = "HELIX_OUTPUT_FILTER_PATTERNS"
) -> tuple[str, ...]:
    """A JSON array of regular expressions, each one the worker can run safely."""
    from helix.worker.directives import OutputFilter, UnsafePattern

    raw = (env.get(name) or "").strip()
    if not raw:
        return ()
    try:
        patterns = json.loads(raw)
    except ValueError:
        patterns = None
    if not (isinstance(patterns, list) and all(isinstance(p, str) for p in patterns)):
        raise SettingError(f'{name} must be a JSON array of regular expressions, e.g. ["^$"]')
    try:
        OutputFilter.of(patterns)
    except UnsafePattern as exc:
        raise SettingError(f"{name}: {exc}") from None
    return tuple(patterns)


def agent_command(
    env: Mapping[str, str], name: str = "HELIX_AGENT_COMMAND"
) -> tuple[str, ...] | None:
    """A command line (split as a POSIX shell would, but run as argv, with no shell) that a
    worker runs for every phase without a command of its own; unset or blank: None."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        argv = tuple(shlex.split(raw))
    except ValueError as exc:
        raise SettingError(f"{name}: {exc} in {raw!r}") from None
    if not argv or "\x00" in raw:
        raise SettingError(f"{name} must name a program")
    return argv


def _choice(env: Mapping[str, str], name: str, default: E) -> E:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    allowed = ", ".join(str(member.value) for member in type(default))
    return _parsed(name, raw, type(default), f"one of {allowed}")


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """CIDRs, checked now: a bad one stops the process at start, not every request later."""
    found = _strings(env, name)
    for value in found:
        _parsed(name, value, lambda v: ipaddress.ip_network(v, strict=False), "a network")
    return found


DEFAULT_PORTS = {"http": 80, "https": 443}
# The claim of an external JWT that names its user (HELIX_EXTERNAL_JWT_SUBJECT_CLAIM).
DEFAULT_SUBJECT_CLAIM = "sub"


def _origin(raw: str) -> str:
    """An origin as a browser sends it in `Origin`: scheme://host[:port], lower case, without
    the scheme's default port; ValueError for anything else (a path, a query, credentials)."""
    if raw == "*":
        return raw
    parts = urllib.parse.urlsplit(raw)
    if (
        parts.scheme not in DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
        or raw.endswith(("?", "#"))
    ):
        raise ValueError(raw)
    port = parts.port  # ValueError if it is not a port
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(
        _parsed(name, value, _origin, "an origin (scheme://host[:port], no path), or *")
        for value in _strings(env, name)
    )


def _floats(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(_parsed(name, x, float, "a number") for x in _strings(env, name)) or default


@attrs.frozen(kw_only=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = Path(".helix")
    host: str = "127.0.0.1"
    port: int = 8100
    pool_size: int = 20
    # A Helix session never sits idle inside a transaction: an open transaction holds back the
    # xmin horizon, which stalls the sequencer for every writer.
    idle_in_transaction_timeout_ms: int = 10_000
    sequencer_batch_size: int = 1000
    sequencer_poll_interval: float = 1.0
    wakeup_interval: float = 0.002
    # --- API: auth, limits, shutdown ---
    # Helix's own JWT signing secret; when unset, one is generated once and kept in the database
    # so every node signs and verifies with the same one.
    jwt_secret: str | None = None
    jwt_issuer: str = "helix"
    jwt_audience: str = "helix"
    jwt_ttl_seconds: int = 3600
    # The fewest characters a new password may have (HELIX_PASSWORD_MIN_LENGTH).
    password_min_length: int = 12
    # The first admin's password, on a database with no users (HELIX_ADMIN_PASSWORD); when
    # unset, `helix serve` generates one and prints it once, beside the admin's API key.
    admin_password: str | None = None
    # An external issuer (e.g. a chat front end) whose tokens Helix trusts: a shared secret
    # (HS*) or a public key (PEM text or a file path; RS*/ES*/EdDSA); `iss` and `aud` checked
    # when configured (and then required), the user named by the subject claim (`sub`, or e.g.
    # `id` for Open WebUI's tokens).
    external_jwt_secret: str | None = None
    external_jwt_public_key: str | None = None
    external_jwt_issuer: str | None = None
    external_jwt_audience: str | None = None
    external_jwt_subject_claim: str = DEFAULT_SUBJECT_CLAIM
    # Authenticated callers have a bucket per principal; anonymous ones (logins, bad
    # credentials, the OpenAPI document) a smaller one per client address. 0 disables a limit.
    rate_limit_per_minute: int = 600
    rate_limit_burst: int | None = None  # bucket size; None: rate_limit_per_minute
    rate_limit_anonymous_per_minute: int = 120
    rate_limit_anonymous_burst: int | None = None  # None: rate_limit_anonymous_per_minute
    # Proxies (CIDRs) whose X-Forwarded-For is believed: the client address is the rightmost
    # address there that is not one of them. Empty: the TCP peer is the client.
    trusted_proxies: tuple[str, ...] = ()
    # Browser pages on these origins (scheme://host[:port], or * for any) may call the API;
    # empty: none. Credentials (cookies, TLS client certificates) only with exact origins.
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    cors_max_age: int = 600  # seconds a browser may cache a preflight's answer
    max_body_bytes: int = 1024 * 1024
    idempotency_ttl_seconds: int = 24 * 3600
    shutdown_timeout: float = 30.0
    # --- phase secrets: the keys (base64 of 32 bytes each) that seal secret phase env values;
    # the first seals, every one opens, so a key can be rotated. Unset: one key is generated
    # once and kept in the database, which protects the log, exports and streams but not a full
    # database dump; set it to keep the key apart from the data ---
    secrets_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    # --- projects and jobs: quotas (archived projects do not count; jobs beyond the running
    # limit stay queued until a claim is allowed), output tail size, the projection runner ---
    max_projects_per_user: int = 100
    max_concurrent_jobs: int = 3
    output_tail_lines: int = 20
    # --- workers: the lease a claim grants (every report and heartbeat renews it), how often
    # workers heartbeat and when a silent one is offline, retries of a job whose lease ran out
    # (backoff base and cap in seconds), the reaper's interval, the longest claim long-poll,
    # the phase templates file (JSON: {"templates": {name: [phase, ...]}}) and the template a
    # project created without phases gets ---
    worker_lease_s: float = 60.0
    worker_heartbeat_interval: float = 5.0
    worker_offline_after: float = 30.0
    worker_prune_after: float = 7 * 24 * 3600.0  # offline workers leave the registry; 0: never
    job_max_attempts: int = 3
    job_retry_base_s: float = 5.0
    job_retry_cap_s: float = 300.0
    reaper_interval: float = 1.0
    claim_max_wait: float = 60.0
    # The longest `GET /api/v1/jobs/{id}?wait=N` long-poll, in seconds.
    max_wait_seconds: float = 60.0
    # --- a job's run: the longest it may take from its start, in seconds (None: no limit; a
    # project's own `max_job_duration` wins), and the regular expressions of output lines the
    # in-process worker drops (`helix.worker.directives` says which are allowed) ---
    max_job_duration: float | None = None
    # --- artifacts: the largest file a phase's worker uploads, and the most the current
    # versions of one job's files may take together, in bytes (0: no limit) ---
    artifact_max_bytes: int = 10 * 1024 * 1024
    job_artifacts_max_bytes: int = 100 * 1024 * 1024
    output_filter_patterns: tuple[str, ...] = ()
    # The command line the in-process worker runs for each phase without a command of its own
    # (a coding agent's CLI, reading HELIX_PROMPT, HELIX_MODEL and HELIX_CONTEXT_FILE); with
    # one, that worker offers the capabilities of the templates' command-less phases and
    # `agent`. None: it runs only phases with a command.
    agent_command: tuple[str, ...] | None = None
    phase_templates_file: Path | None = None
    default_template: str = "ai-development"
    projection_batch_size: int = 500
    projection_poll_interval: float = 1.0
    # --- phase commands are untrusted code: the unprivileged OS user the in-process worker runs
    # them as when Helix runs as root (created when missing), never the server's own; one
    # worker's alone, since a worker kills every process of it after each phase ---
    phase_user: str = PHASE_USER
    # --- who may write phase commands: a command is code a worker runs, so a deployment may
    # keep them to admins or to the templates an admin configured (whose phases anyone may use);
    # `anyone` keeps a laptop working ---
    phase_commands: PhaseCommands = PhaseCommands.ANYONE
    # --- webhooks: retry delays in seconds (the first is the first attempt's; one attempt per
    # entry, then the delivery is dead-lettered), when a failing endpoint is disabled, how long
    # a rotated secret still signs, networks exempt from the SSRF guard, timeouts, the claim
    # lease (longer than the timeout), polling and concurrency of a delivery worker ---
    webhook_retry_schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_disable_after: float = 5 * 86400
    webhook_secret_overlap: float = 86400
    webhook_allowed_networks: tuple[str, ...] = ()
    webhook_connect_timeout: float = 5.0
    webhook_timeout: float = 15.0
    webhook_lease: float = 60.0
    webhook_poll_interval: float = 0.5
    webhook_concurrency: int = 16
    webhook_batch_size: int = 500
    # --- live streams (SSE, WebSocket): one tailer per process fans the log out in memory ---
    stream_heartbeat_interval: float = 15.0  # seconds between SSE comment heartbeats / WS pings
    stream_buffer_size: int = 1000  # events held per subscriber before it is switched to catch-up
    stream_recent_events: int = 4096  # events the tailer keeps so a lagging subscriber rejoins
    stream_batch_size: int = 1000  # events per read of the tailer and of a catch-up
    stream_poll_interval: float = 5.0  # the tailer reads even without a head change this often
    stream_retry_ms: int = 2000  # the SSE `retry:` hint
    stream_token_ttl_seconds: int = 300
    stream_max_subscriptions: int = 100  # per WebSocket
    stream_auth_timeout: float = 10.0  # a WebSocket without credentials must send `auth` by then
    # --- /metrics: its per-route counts and log head are not for everyone. With a token, only
    # callers presenting it may read it, from any address (a scraper on another machine);
    # without one, only loopback peers; metrics_public opts into anonymous access ---
    metrics_token: str | None = None
    metrics_public: bool = False
    # --- readiness: /readyz turns 503 when the oldest committed event has waited longer than
    # this for a position, or when a background role has been failing (restarting without a
    # run lasting `role_settle_seconds`) for longer than `ready_role_failing_after` ---
    ready_max_sequencer_lag: float = 30.0
    ready_role_failing_after: float = 30.0
    role_settle_seconds: float = 10.0
    # --- logs: `text` lines for a terminal, or one JSON object a line for a log pipeline;
    # one access log line per HTTP request unless access_log is off ---
    log_format: LogFormat = LogFormat.TEXT
    access_log: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        cors_origins = _origins(env, "HELIX_CORS_ORIGINS")
        cors_allow_credentials = _bool(env, "HELIX_CORS_ALLOW_CREDENTIALS", False)
        if cors_allow_credentials and "*" in cors_origins:
            # The Fetch standard refuses a credentialed response to `*`: name the origins.
            raise SettingError(
                "HELIX_CORS_ALLOW_CREDENTIALS needs exact origins in HELIX_CORS_ORIGINS, not *"
            )
        return cls(
            database_url=env.get("HELIX_DATABASE_URL") or None,
            data_dir=Path(env.get("HELIX_DATA_DIR") or ".helix"),
            host=env.get("HELIX_HOST") or "127.0.0.1",
            port=_int(env, "HELIX_PORT", 8100),
            pool_size=_int(env, "HELIX_POOL_SIZE", 20),
            idle_in_transaction_timeout_ms=_int(
                env, "HELIX_IDLE_IN_TRANSACTION_TIMEOUT_MS", 10_000
            ),
            sequencer_batch_size=_int(env, "HELIX_SEQUENCER_BATCH_SIZE", 1000),
            sequencer_poll_interval=_float(env, "HELIX_SEQUENCER_POLL_INTERVAL", 1.0),
            wakeup_interval=_float(env, "HELIX_WAKEUP_INTERVAL", 0.002),
            max_projects_per_user=_int(env, "HELIX_MAX_PROJECTS_PER_USER", 100),
            max_concurrent_jobs=_int(env, "HELIX_MAX_CONCURRENT_JOBS", 3),
            output_tail_lines=_int(env, "HELIX_OUTPUT_TAIL_LINES", 20),
            worker_lease_s=_float(env, "HELIX_WORKER_LEASE_S", 60.0),
            worker_heartbeat_interval=_float(env, "HELIX_WORKER_HEARTBEAT_INTERVAL", 5.0),
            worker_offline_after=_float(env, "HELIX_WORKER_OFFLINE_AFTER", 30.0),
            worker_prune_after=_float(env, "HELIX_WORKER_PRUNE_AFTER_SECONDS", 7 * 24 * 3600.0),
            job_max_attempts=_int(env, "HELIX_JOB_MAX_ATTEMPTS", 3),
            job_retry_base_s=_float(env, "HELIX_JOB_RETRY_BASE_S", 5.0),
            job_retry_cap_s=_float(env, "HELIX_JOB_RETRY_CAP_S", 300.0),
            reaper_interval=_float(env, "HELIX_REAPER_INTERVAL", 1.0),
            claim_max_wait=_float(env, "HELIX_CLAIM_MAX_WAIT", 60.0),
            max_wait_seconds=_float(env, "HELIX_MAX_WAIT_SECONDS", 60.0),
            max_job_duration=_duration(env, "HELIX_MAX_JOB_DURATION"),
            artifact_max_bytes=_bytes(env, "HELIX_ARTIFACT_MAX_BYTES", 10 * 1024 * 1024),
            job_artifacts_max_bytes=_bytes(env, "HELIX_JOB_ARTIFACTS_MAX_BYTES", 100 * 1024 * 1024),
            output_filter_patterns=output_filter_patterns(env),
            agent_command=agent_command(env),
            phase_templates_file=Path(env["HELIX_PHASE_TEMPLATES"])
            if env.get("HELIX_PHASE_TEMPLATES")
            else None,
            default_template=env.get("HELIX_DEFAULT_TEMPLATE") or "ai-development",
            phase_user=env.get("HELIX_PHASE_USER") or PHASE_USER,
            phase_commands=_choice(env, "HELIX_PHASE_COMMANDS", PhaseCommands.ANYONE),
            projection_batch_size=_int(env, "HELIX_PROJECTION_BATCH_SIZE", 500),
            projection_poll_interval=_float(env, "HELIX_PROJECTION_POLL_INTERVAL", 1.0),
            jwt_secret=env.get("HELIX_JWT_SECRET") or None,
            jwt_issuer=env.get("HELIX_JWT_ISSUER") or "helix",
            jwt_audience=env.get("HELIX_JWT_AUDIENCE") or "helix",
            jwt_ttl_seconds=_int(env, "HELIX_JWT_TTL_SECONDS", 3600),
            password_min_length=_int(env, "HELIX_PASSWORD_MIN_LENGTH", 12),
            admin_password=env.get("HELIX_ADMIN_PASSWORD") or None,
            external_jwt_secret=env.get("HELIX_EXTERNAL_JWT_SECRET") or None,
            external_jwt_public_key=env.get("HELIX_EXTERNAL_JWT_PUBLIC_KEY") or None,
            external_jwt_issuer=env.get("HELIX_EXTERNAL_JWT_ISSUER") or None,
            external_jwt_audience=env.get("HELIX_EXTERNAL_JWT_AUDIENCE") or None,
            external_jwt_subject_claim=(env.get("HELIX_EXTERNAL_JWT_SUBJECT_CLAIM") or "").strip()
            or DEFAULT_SUBJECT_CLAIM,
            rate_limit_per_minute=_int(env, "HELIX_RATE_LIMIT_PER_MINUTE", 600),
            rate_limit_burst=_int(env, "HELIX_RATE_LIMIT_BURST", 0) or None,
            rate_limit_anonymous_per_minute=_int(env, "HELIX_RATE_LIMIT_ANONYMOUS_PER_MINUTE", 120),
            rate_limit_anonymous_burst=_int(env, "HELIX_RATE_LIMIT_ANONYMOUS_BURST", 0) or None,
            trusted_proxies=_networks(env, "HELIX_TRUSTED_PROXIES"),
            cors_origins=cors_origins,
            cors_allow_credentials=cors_allow_credentials,
            cors_max_age=_int(env, "HELIX_CORS_MAX_AGE", 600),
            max_body_bytes=_int(env, "HELIX_MAX_BODY_BYTES", 1024 * 1024),
            idempotency_ttl_seconds=_int(env, "HELIX_IDEMPOTENCY_TTL_SECONDS", 24 * 3600),
            shutdown_timeout=_float(env, "HELIX_SHUTDOWN_TIMEOUT", 30.0),
            secrets_keys=_strings(env, "HELIX_SECRETS_KEY"),
            webhook_retry_schedule=_floats(
                env, "HELIX_WEBHOOK_RETRY_SCHEDULE", (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
            ),
            webhook_disable_after=_float(env, "HELIX_WEBHOOK_DISABLE_AFTER", 5 * 86400),
            webhook_secret_overlap=_float(env, "HELIX_WEBHOOK_SECRET_OVERLAP", 86400),
            webhook_allowed_networks=_networks(env, "HELIX_WEBHOOK_ALLOWED_NETWORKS"),
            webhook_connect_timeout=_float(env, "HELIX_WEBHOOK_CONNECT_TIMEOUT", 5.0),
            webhook_timeout=_float(env, "HELIX_WEBHOOK_TIMEOUT", 15.0),
            webhook_lease=_float(env, "HELIX_WEBHOOK_LEASE", 60.0),
            webhook_poll_interval=_float(env, "HELIX_WEBHOOK_POLL_INTERVAL", 0.5),
            webhook_concurrency=_int(env, "HELIX_WEBHOOK_CONCURRENCY", 16),
            webhook_batch_size=_int(env, "HELIX_WEBHOOK_BATCH_SIZE", 500),
            stream_heartbeat_interval=_float(env, "HELIX_STREAM_HEARTBEAT_INTERVAL", 15.0),
            stream_buffer_size=_int(env, "HELIX_STREAM_BUFFER_SIZE", 1000),
            stream_recent_events=_int(env, "HELIX_STREAM_RECENT_EVENTS", 4096),
            stream_batch_size=_int(env, "HELIX_STREAM_BATCH_SIZE", 1000),
            stream_poll_interval=_float(env, "HELIX_STREAM_POLL_INTERVAL", 5.0),
            stream_retry_ms=_int(env, "HELIX_STREAM_RETRY_MS", 2000),
            stream_token_ttl_seconds=_int(env, "HELIX_STREAM_TOKEN_TTL_SECONDS", 300),
            stream_max_subscriptions=_int(env, "HELIX_STREAM_MAX_SUBSCRIPTIONS", 100),
            stream_auth_timeout=_float(env, "HELIX_STREAM_AUTH_TIMEOUT", 10.0),
            metrics_token=env.get("HELIX_METRICS_TOKEN") or None,
            metrics_public=_bool(env, "HELIX_METRICS_PUBLIC", False),
            ready_max_sequencer_lag=_float(env, "HELIX_READY_MAX_SEQUENCER_LAG", 30.0),
            ready_role_failing_after=_float(env, "HELIX_READY_ROLE_FAILING_AFTER", 30.0),
            role_settle_seconds=_float(env, "HELIX_ROLE_SETTLE_SECONDS", 10.0),
            log_format=_choice(env, "HELIX_LOG_FORMAT", LogFormat.TEXT),
            access_log=_bool(env, "HELIX_ACCESS_LOG", True),
        )
