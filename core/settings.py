"""The one settings object of the platform (pydantic-settings, env prefix ``ORCHESTRATOR_``).

Groups are nested classes in code but every variable keeps a flat name (``ORCHESTRATOR_PORT``,
``ORCHESTRATOR_JWT_SECRET`` …) because the seeds and API.md name them that way. README.md lists them all.
"""

from __future__ import annotations

import json
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.hashing import sha256_hex
from core.rate_limit_spec import Limit

ENV_PREFIX = "ORCHESTRATOR_"
API_KEY_ENV_PREFIX = "ORCHESTRATOR_API_KEY_"

# Values that tutorials and templates ship with; refusing them outside development stops a
# copy-pasted example from becoming a production signing key.
_KNOWN_UNSAFE_SECRETS = {"changethis", "secret", "your-secret", "your_secret", "jwt-secret", "YOUR_SECRET"}
_MIN_SECRET_BYTES = 32
# The top-level packages this distribution installs (pyproject.toml's `packages.find`): generic names, so an
# operator's module of the same name would shadow one of them, or be shadowed, in every process of the cluster.
PLATFORM_PACKAGES = (
    "actors",
    "cluster",
    "core",
    "frameworks",
    "persistence",
    "runtime",
    "schedulers",
    "serve_app",
    "services",
)


def _config() -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True)


class EnvApiKey(BaseModel):
    """A key from ``ORCHESTRATOR_API_KEY_<NAME>=<key>:<role>`` (seed 002); only its hash is kept."""

    model_config = {"frozen": True}

    name: str
    key_hash: str
    role: str


def parse_env_api_keys(environ: dict[str, str] | os._Environ[str]) -> tuple[EnvApiKey, ...]:
    keys = []
    for variable, value in environ.items():
        if not variable.startswith(API_KEY_ENV_PREFIX) or not value:
            continue
        key, sep, role = value.rpartition(":")
        if not sep or not key:
            raise ValueError(f"{variable} must be '<key>:<role>'")
        if role.strip().lower() not in {"admin", "agent", "user"}:
            raise ValueError(f"{variable}: unknown role '{role}' (admin, agent or user)")
        name = variable.removeprefix(API_KEY_ENV_PREFIX).lower()
        keys.append(EnvApiKey(name=name, key_hash=sha256_hex(key), role=role.strip().lower()))
    return tuple(keys)


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class ApiSettings(BaseSettings):
    """The HTTP front door: where it listens and how Serve scales it."""

    model_config = _config()

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Serve autoscaling: fixed `api_replicas` unless `api_max_replicas` > `api_min_replicas`.
    api_replicas: int = Field(1, ge=1)
    api_min_replicas: int = Field(1, ge=1)
    api_max_replicas: int = Field(1, ge=1)
    api_target_ongoing_requests: float = Field(32.0, gt=0)
    # Serve's default of 5 halves throughput of a cheap route (ARCHITECTURE.md, "The HTTP path").
    api_max_ongoing_requests: int = Field(256, ge=1)
    api_cpus_per_replica: float = Field(0.5, ge=0)
    # HAProxy ingress when the binary is on PATH; "auto" | "on" | "off".
    fast_proxy: str = "auto"
    cors_origins: list[str] = Field(default_factory=list)
    # Largest request body accepted (413 beyond); uploads get their own limit where they are accepted.
    max_request_bytes: int = Field(1024 * 1024, ge=1024)

    @property
    def autoscaling(self) -> bool:
        return self.api_max_replicas > self.api_min_replicas


class DatabaseSettings(BaseSettings):
    model_config = _config()

    # Empty means SQLite in the data directory (see Settings.database_url_resolved).
    database_url: str = ""
    # Connections per API replica, kept open. Overflow connections are closed as soon as they are returned
    # to a full pool: under steady concurrency above the pool size every request opened (and Postgres
    # forked) a new one. Ten kept open, none overflowing, is the same bound as the former 5 + 5.
    database_pool_size: int = Field(10, ge=1, le=50)
    database_max_overflow: int = Field(0, ge=0, le=50)
    database_echo: bool = False
    # Milliseconds SQLite waits on a locked database before failing a statement.
    sqlite_busy_timeout_ms: int = Field(30_000, ge=0)


class RedisSettings(BaseSettings):
    model_config = _config()

    # Empty: no Redis (rate limits per replica, no Redis event stream).
    redis_url: str = ""
    # Prefix of every key the platform writes, so that several platforms can share one Redis.
    redis_key_prefix: str = "orchestrator:"


class RateLimitSettings(BaseSettings):
    """Limits per route class as COUNT/WINDOW ('1000/h', '10/15m', '100/3600'), scaled by tier."""

    model_config = _config()

    rate_limit_enabled: bool = True
    # Any authenticated route, per caller; unauthenticated requests per client IP.
    rate_limit_general: str = "1000/h"
    # POST /auth/login (per client IP + account) and POST /oauth/token (per IP + client).
    rate_limit_auth: str = "10/15m"
    # POST /auth/register, per client IP.
    rate_limit_register: str = "20/h"
    # Starting executions, per caller (seed 001).
    rate_limit_executions: str = "100/h"
    # Health probes, per client IP: generous, so that load balancers never trip it.
    rate_limit_health: str = "600/m"
    # Multipliers by subscription tier (seeds 001/003).
    rate_limit_tiers: dict[str, float] = Field(default_factory=lambda: {"free": 1, "pro": 10, "enterprise": 100})
    # Per-route overrides, e.g. {"POST /api/v1/tasks": "10/m"} (seed 002's per-minute table is one profile).
    rate_limit_routes: dict[str, str] = Field(default_factory=dict)
    # Key unauthenticated clients by the first X-Forwarded-For address (only behind a trusted proxy).
    trust_forwarded_for: bool = False

    @model_validator(mode="after")
    def _parse_all(self) -> RateLimitSettings:
        classes = (self.rate_limit_general, self.rate_limit_auth, self.rate_limit_register,
                   self.rate_limit_executions, self.rate_limit_health)  # fmt: skip
        for value in (*classes, *self.rate_limit_routes.values()):
            Limit.parse(value)
        return self


class AuthSettings(BaseSettings):
    model_config = _config()

    # Empty: generated into <data_dir>/secrets/jwt_secret on first start (never a constant in code).
    jwt_secret: SecretStr | None = None
    # Key of secrets stored encrypted (webhook signing secrets); "new,old" decrypts with either while
    # rotating. Empty: generated into <data_dir>/secrets/encryption_key on first start.
    encryption_key: SecretStr | None = None
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "orchestrator"
    access_token_ttl_s: int = Field(3600, ge=60)
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, ge=300)
    allow_registration: bool = True
    # Role of self-registered accounts after the first one (API.md, POST /auth/register).
    default_role: str = "agent"
    password_min_length: int = Field(8, ge=8)
    # Longest lifetime an admin may give a service token (POST /auth/token).
    service_token_max_ttl_s: int = Field(30 * 24 * 3600, ge=60)
    # Filled from ORCHESTRATOR_API_KEY_<NAME>=<key>:<role> variables (seed 002); only hashes are kept.
    env_api_keys: tuple[EnvApiKey, ...] = Field(
        default_factory=lambda: parse_env_api_keys(os.environ), json_schema_extra={"env": "ORCHESTRATOR_API_KEY_<NAME>"}
    )

    @field_validator("jwt_algorithm")
    @classmethod
    def _hmac_only(cls, value: str) -> str:
        if value not in {"HS256", "HS384", "HS512"}:
            raise ValueError("jwt_algorithm must be one of HS256, HS384, HS512")
        return value

    @field_validator("default_role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value.lower() not in {"admin", "agent", "user"}:
            raise ValueError("default_role must be one of admin, agent, user")
        return value.lower()


class RaySettings(BaseSettings):
    model_config = _config()

    # Empty: start a local Ray instance (unless RAY_ADDRESS is set).
    ray_address: str = ""
    ray_namespace: str = "orchestrator"
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8265, ge=1, le=65535)
    ray_num_cpus: int | None = None
    # Node types the autoscaler can add, as a JSON list of {"cpu", "memory" (MB), "gpu"}, for admission when
    # the cluster does not publish them (Ray's own autoscaler does not; KubeRay does).
    ray_node_types: list[dict[str, float]] = Field(default_factory=list)
    # Seconds `orchestrator down`/Ctrl-C waits for in-flight requests before stopping Ray.
    shutdown_drain_timeout_s: float = Field(5.0, ge=0)


class AgentRuntimeSettings(BaseSettings):
    """The platform's actors: agents' placement, passivation and heartbeats, the reconciler, the router."""

    model_config = _config()

    @property
    def approval_priority_set(self) -> frozenset[str]:
        return frozenset(part.strip().upper() for part in self.approval_priorities.split(",") if part.strip())

    @property
    def code_modules(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.agent_code_modules.split(",") if part.strip())

    @field_validator("agent_code_modules")
    @classmethod
    def _outside_the_platform(cls, value: str) -> str:
        """Agents' code never lives in (or under the name of) one of the platform's own packages: listing
        `services.foo` would let agents' configurations name the platform's internals, and an operator's
        package called `core` would shadow the platform's (or be shadowed by it) on every node."""
        for entry in (part.strip() for part in value.split(",")):
            package = entry.split(".", 1)[0]
            if package in PLATFORM_PACKAGES:
                where = "is the platform's package" if entry == package else "is inside the platform's package"
                raise ValueError(
                    f"ORCHESTRATOR_AGENT_CODE_MODULES: '{entry}' {where} '{package}': operators' code must live in "
                    f"packages of their own names (not {', '.join(PLATFORM_PACKAGES)})"
                )
        return value

    # CPU reserved by an agent's actor when its resource_limits name none (Ray's own actor default is 0).
    agent_default_cpu: float = Field(0.0, ge=0)
    # A deploy request waits this long for the actor; a slower placement answers 202 `deploying`.
    agent_deploy_wait_s: float = Field(10.0, ge=0)
    # An actor with no work for this long releases its process (status stays active).
    agent_idle_timeout_s: float = Field(300.0, gt=0)
    # An external agent whose worker has not sent a heartbeat for this long is offline.
    agent_heartbeat_timeout_s: float = Field(90.0, gt=0)
    # How often the reconciler compares the database with the live actors.
    reconcile_interval_s: float = Field(10.0, gt=0)
    # Database connections of the store actor through which every agent actor reads and writes.
    actor_database_pool_size: int = Field(4, ge=1, le=50)
    # Modules (comma-separated prefixes) whose code agents' configurations may name as `handler`/`graph`.
    # Empty: none, so that no tenant can make the cluster import arbitrary code (os, subprocess, …).
    agent_code_modules: str = ""
    # Tasks of these priorities (comma-separated) wait for a human approval before they are routed.
    approval_priorities: str = "P0,P1"
    # How long an approval waits for a decision; then the task fails, or escalates once to P0.
    approval_ttl_s: float = Field(86_400.0, gt=0)
    approval_on_expiry: str = Field("fail", pattern="^(fail|escalate)$")
    # Whether the requester may approve their own request.
    allow_self_approval: bool = False
    # Routing: a pending task moves up one priority after waiting this long (P3 reaches P0 after 3 steps).
    routing_aging_step_s: float = Field(300.0, ge=0)
    # How often the task router re-reads agents' capacity, ages waiting tasks and routes.
    router_tick_s: float = Field(1.0, gt=0)


class WorkflowSettings(BaseSettings):
    """Workflow runs: the warm pool of run actors, leases, retries, and what nodes may reach."""

    model_config = _config()

    @property
    def http_allowed(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.http_allowed_hosts.split(",") if part.strip())

    # Pre-started run actors (one run at a time each) that short runs bind to instead of starting a process.
    run_pool_size: int = Field(2, ge=0, le=256)
    # CPU each pooled run actor reserves; a run asking for more (execution_options.resources, else its
    # agent's resource_limits) gets an actor of its own with exactly what it asked for.
    run_pool_cpu: float = Field(0.0, ge=0)
    # How long a run's claim lasts without renewal; after that another actor may resume the run.
    run_lease_s: float = Field(15.0, ge=1)
    # Retries of a failing node when neither the node, the workflow settings nor the execution options say.
    run_default_retry_count: int = Field(0, ge=0, le=20)
    # An OpenAI-compatible provider for `llm` nodes (an agent's configuration.llm overrides it).
    llm_base_url: str = ""
    llm_api_key: SecretStr | None = None
    llm_model: str = ""
    llm_cost_per_1k_tokens: float = Field(0.0, ge=0)
    # Hosts or networks (comma-separated, e.g. "127.0.0.1,10.0.0.0/8") that `http`/`llm` nodes may reach
    # although they are private; everything private is refused otherwise (SSRF).
    http_allowed_hosts: str = ""


class FileSettings(BaseSettings):
    """Files attached to tasks: where they are kept, how large they may be, which types are accepted."""

    model_config = _config()

    @property
    def content_types(self) -> frozenset[str]:
        return frozenset(part.strip().lower() for part in self.upload_content_types.split(",") if part.strip())

    # Local directory of the file store; empty: `<data_dir>/files`. Every API replica must see the same
    # directory (one node, or a shared mount).
    file_storage_dir: str = ""
    # Largest accepted upload; the request body limit is raised to this for upload routes only.
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=1024**3)
    # Accepted media types (comma-separated). Types with a known signature (images, PDF, archives) must
    # match it; text types must be UTF-8. HTML, SVG and scripts are not accepted by default.
    upload_content_types: str = (
        "text/plain,text/markdown,text/csv,text/x-python,text/typescript,application/json,application/yaml,"
        "application/x-yaml,application/pdf,application/zip,application/gzip,image/png,image/jpeg,image/gif,"
        "image/webp,application/octet-stream"
    )


class RealtimeSettings(BaseSettings):
    """Live events: the EventHub's outbox relay and the WebSocket connections of the API replicas."""

    model_config = _config()

    # How often the EventHub looks for new outbox events when the last look found none (the delay from a
    # change to its WebSocket message is at most about this, plus delivery).
    event_relay_interval_s: float = Field(0.05, gt=0, le=10)
    # Recent events the EventHub keeps for replicas to catch up from after a slow poll.
    event_hub_buffer: int = Field(10_000, ge=100, le=1_000_000)
    # Messages a WebSocket connection may have queued; a consumer further behind is disconnected (4008).
    ws_buffer_messages: int = Field(1000, ge=1, le=100_000)
    # An idle connection gets a {"type": "ping"} this often (keeps proxies from closing it).
    ws_ping_interval_s: float = Field(20.0, gt=0)
    # How long a connection may take to send {"type": "auth", "token": ...} when it had no bearer header.
    ws_auth_timeout_s: float = Field(10.0, gt=0)
    # How often the EventHub pushes a `system.health` snapshot to admins subscribed to `system`.
    system_health_interval_s: float = Field(30.0, gt=0)


class WebhookSettings(BaseSettings):
    """Outgoing webhooks: retries with backoff, timeouts, concurrency, and which private hosts they may reach."""

    model_config = _config()

    # Attempts of one delivery before it is dead (kept for inspection and manual redelivery).
    webhook_max_attempts: int = Field(8, ge=1, le=100)
    # Delay before retry n: min(max, base * 2**(n-1)), half of it random (jitter).
    webhook_backoff_base_s: float = Field(1.0, gt=0)
    webhook_backoff_max_s: float = Field(300.0, gt=0)
    webhook_timeout_s: float = Field(10.0, gt=0, le=300)
    # Requests in flight at once per delivering process.
    webhook_concurrency: int = Field(16, ge=1, le=1024)
    # Hosts or networks (comma-separated or a JSON list, e.g. "127.0.0.1,10.0.0.0/8") that webhook URLs
    # may reach although they are private; everything private is refused otherwise (SSRF).
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            parts = json.loads(text) if text.startswith("[") else text.split(",")
            return [str(part).strip() for part in parts if str(part).strip()]
        return value


class ObservabilitySettings(BaseSettings):
    """OpenTelemetry traces: HTTP request → actor → database, keyed by the correlation id (core/telemetry_setup.py)."""

    model_config = _config()

    # Where each process sends its spans: none (no tracing, no cost), otlp (OTLP/HTTP to `otel_endpoint`),
    # console (stdout), jsonl (one JSON line per span appended to `otel_jsonl_path`; one node only).
    otel_exporter: str = Field("none", pattern="^(none|otlp|console|jsonl)$")
    # OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces; empty: OTEL_EXPORTER_OTLP_* or localhost.
    otel_endpoint: str = ""
    # Service name of the spans; each process adds its component (`orchestrator-api`, `orchestrator-router`).
    otel_service_name: str = "orchestrator"
    # File of the jsonl exporter; empty: <data_dir>/traces.jsonl.
    otel_jsonl_path: str = ""
    # Fraction of new traces recorded (a request that arrives with a sampled traceparent is always recorded).
    otel_sample_ratio: float = Field(1.0, ge=0, le=1)


class Settings(BaseSettings):
    """Everything configurable, with a safe default for a laptop."""

    model_config = _config()

    environment: Environment = Environment.development
    data_dir: Path = Path("~/.orchestrator")
    log_level: str = "INFO"
    # Per-check timeout of the health endpoint, and how long a result is reused.
    health_check_timeout_s: float = Field(2.0, gt=0)
    health_cache_ttl_s: float = Field(1.0, ge=0)

    api: ApiSettings = Field(default_factory=ApiSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    agents: AgentRuntimeSettings = Field(default_factory=AgentRuntimeSettings)
    files: FileSettings = Field(default_factory=FileSettings)
    workflows: WorkflowSettings = Field(default_factory=WorkflowSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_secret(self) -> Settings:
        if self.environment is Environment.development:
            return self
        keys = self.auth.encryption_key.get_secret_value().split(",") if self.auth.encryption_key else []
        named = [("ORCHESTRATOR_JWT_SECRET", self.auth.jwt_secret.get_secret_value())] if self.auth.jwt_secret else []
        for name, value in [*named, *(("ORCHESTRATOR_ENCRYPTION_KEY", key.strip()) for key in keys)]:
            if value in _KNOWN_UNSAFE_SECRETS or len(value.encode()) < _MIN_SECRET_BYTES:
                raise ValueError(
                    f"{name} is unsafe for {self.environment.value}: "
                    f"use at least {_MIN_SECRET_BYTES} random bytes (or leave it unset to generate one)"
                )
        return self

    @property
    def database_url(self) -> str:
        return self.database.database_url or f"sqlite:///{self.data_dir / 'orchestrator.db'}"

    @property
    def file_storage_dir(self) -> Path:
        return (
            Path(self.files.file_storage_dir).expanduser().resolve()
            if self.files.file_storage_dir
            else (self.data_dir / "files")
        )

    @property
    def ray_address(self) -> str:
        return self.ray.ray_address or os.environ.get("RAY_ADDRESS", "")

    def with_overrides(self, **groups: dict[str, Any]) -> Settings:
        """A copy with some fields replaced, e.g. ``with_overrides(api={"port": 9000})``.

        Top-level fields are given as ``root={...}``. Validation runs again on the result.
        """
        data = self.model_dump()
        for group, values in groups.items():
            target = data if group == "root" else data[group]
            target.update(values)
        # model_dump() turns SecretStr into SecretStr objects already; validation accepts them.
        return Settings.model_validate(data)


def load_settings(**groups: dict[str, Any]) -> Settings:
    settings = Settings()
    return settings.with_overrides(**groups) if groups else settings


def resolve_secrets(settings: Settings) -> Settings:
    """Fill secrets that were not configured from ``<data_dir>/secrets``, generating them once.

    Called by the process that starts the platform; the resolved settings are then handed to every
    replica, so replicas on other nodes never need the head node's data directory.
    """
    missing = {
        name: SecretStr(_read_or_create_secret(settings.data_dir / "secrets" / name))
        for name in ("jwt_secret", "encryption_key")
        if getattr(settings.auth, name) is None
    }
    return settings.with_overrides(auth=missing) if missing else settings


def _read_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not each write (and use) a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
