"""The API's JSON views as TypedDicts: what the client returns is the decoded JSON itself, so
a field here is a field of the answer, with the same name and type (ids are strings, times are
RFC 3339 strings in UTC).

Without postponed annotations, so that `__required_keys__` and `__optional_keys__` tell the
truth at run time too (a `NotRequired` in a string annotation is not seen there)."""

from typing import Any, Generic, NotRequired, TypedDict, TypeVar

T = TypeVar("T")


class Page(TypedDict, Generic[T]):
    """The one list envelope: `next` is the path of the following page (null on the last)."""

    items: list[T]
    next: str | None
    has_more: bool


class Cost(TypedDict):
    tokens: int
    usd: float


class Resources(TypedDict):
    """What a phase's processes used (a job's: summed over its phases, the largest peak)."""

    cpu_s: float
    max_rss_bytes: int
    read_bytes: int
    write_bytes: int


class PhasePlan(TypedDict):
    """One step of a project's phase plan (what a job snapshots when it is queued)."""

    name: str
    command: list[str] | None
    timeout_s: float | None
    capabilities: list[str]
    env: dict[str, Any]
    prompt: str | None


class Phase(TypedDict):
    """One phase of a job, as it ran."""

    name: str
    ordinal: int
    status: str
    command: list[str] | None
    timeout_s: float | None
    capabilities: list[str]
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    output_lines: int
    files: list[Any]
    cost: Cost
    # Its latest run's, as its worker last reported (None: nothing reported).
    resources: Resources | None
    exit_code: int | None
    error: str | None
    skip_reason: str | None


class OutputLine(TypedDict):
    n: int
    phase: str
    line_no: int
    attempt: int
    stream: str
    line: str
    at: str


class File(TypedDict):
    """One of a job's files in its current version: stored (with its `download_url`) or not
    (with the `reason`, e.g. over a size limit)."""

    path: str
    phase: str
    attempt: int
    size: int
    sha256: str | None
    change: str | None
    stored: bool
    reason: str | None
    download_url: str | None
    created_at: str
    updated_at: str


class Waiting(TypedDict):
    """Why a queued job can be claimed by no online worker: none offers `capabilities`."""

    reason: str
    capabilities: list[str]


class Job(TypedDict):
    id: str
    project_id: str
    owner: str
    status: str
    start_phase: str | None
    model: str | None
    requested_by: str | None
    worker_id: str | None
    attempt: int
    max_attempts: int
    max_duration_s: float | None
    # low, normal, high or critical: the claim order (see the README's Priorities).
    priority: str
    progress: int
    cost: Cost
    error: str | None
    cancel_requested: bool
    cancel_reason: str | None
    pause_requested: bool
    waiting: Waiting | None
    dead_lettered: bool
    lease_expires_at: str | None
    not_before: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    updated_at: str | None
    version: int
    stream_url: str
    # A single job (not a list's item) also has these; `waited_seconds` after `?wait=`.
    phases: NotRequired[list[Phase]]
    resources: NotRequired[Resources | None]
    current_phase: NotRequired[str | None]
    output_tail: NotRequired[list[OutputLine]]
    waited_seconds: NotRequired[float]


class Project(TypedDict):
    id: str
    name: str
    description: str
    project_type: str | None
    owner: str
    status: str
    archived: bool
    phases: list[PhasePlan]
    latest_job_id: str | None
    message_count: int
    max_job_duration: float | None
    created_at: str
    updated_at: str
    version: int
    # A single project (not a list's item) also has these.
    current_phase: NotRequired[str | None]
    latest_job: NotRequired[Job | None]


class JobSummary(TypedDict):
    id: str
    status: str
    progress: int
    cancel_requested: bool
    error: str | None
    waiting: Waiting | None
    stream_url: str


class ProjectStatus(TypedDict):
    project_id: str
    status: str
    archived: bool
    current_phase: str | None
    latest_job: JobSummary | None
    updated_at: str


class RunWarning(TypedDict):
    """What the caller of a run should know, e.g. `no_capable_worker`: no registered worker
    offers `capabilities`, so the job may never run."""

    code: str
    message: str
    capabilities: list[str]


class Run(TypedDict):
    """A run just started (execute, quick action: with `warnings`) or being cancelled (with
    `cancel_requested`)."""

    project_id: str
    job_id: str
    status: str
    priority: NotRequired[str]
    project_status: str | None
    stream_url: str
    warnings: NotRequired[list[RunWarning]]
    cancel_requested: NotRequired[bool]


class Message(TypedDict):
    id: str
    project_id: str
    seq: int
    role: str
    author: str | None
    content: str
    at: str


class PostedMessage(Message):
    """A message just posted; with `run`, also the run it started."""

    project_status: str | None
    job_id: NotRequired[str]
    stream_url: NotRequired[str]
    warnings: NotRequired[list[RunWarning]]


class Discussion(TypedDict):
    project_id: str
    project: Project
    messages: list[Message]
    total: int


class Event(TypedDict):
    """A recorded event, as the audit log, history and streams show it."""

    position: int
    event_id: str
    stream_id: str
    stream_type: str
    version: int
    project_id: str | None
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str


class Webhook(TypedDict):
    id: str
    owner: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    secret_rotated_until: str | None
    failing_since: str | None
    last_success_at: str | None
    created_at: str
    updated_at: str
    # Only in the answer to the create or rotate that made it.
    secret: NotRequired[str]


class DeliveryAttempt(TypedDict):
    attempt: int
    started_at: str
    duration_ms: float
    status_code: int | None
    error_class: str | None
    error: str | None
    response_body: str | None
    response_truncated: bool
    next_attempt_at: str | None


class Delivery(TypedDict):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    position: int | None  # None for a ping, which is no event of the log
    kind: str
    replay_of: str | None
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None
    dead_at: str | None
    # Only when one delivery is shown.
    attempt_log: NotRequired[list[DeliveryAttempt]]


class Replayed(TypedDict):
    deliveries: int
    first_position: int | None
    last_position: int | None
    next_position: int | None


class Recovered(TypedDict):
    deliveries: int


class User(TypedDict):
    id: str
    username: str
    role: str
    disabled: bool
    external: bool
    created_at: str
    updated_at: str
    last_login_at: str | None
    # `GET /users/me` says which credential the call used: "api_key" or "token".
    authenticated_with: NotRequired[str]


class ApiKey(TypedDict):
    id: str
    user_id: str
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    scopes: list[str]
    expires_at: str | None
    # Only in the answer to the create that made it.
    key: NotRequired[str]


class Worker(TypedDict):
    id: str
    user_id: str
    name: str
    hostname: str
    capabilities: list[str]
    resources: dict[str, Any]
    status: str
    online: bool
    current_job_id: str | None
    registered_at: str
    last_heartbeat_at: str | None
    offline_since: str | None


class StreamToken(TypedDict):
    token: str
    token_type: str
    expires_at: str
    expires_in: int
