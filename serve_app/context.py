"""What a replica holds for its whole life: settings, the database, token service, Redis, health."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import ray
import redis
import redis.asyncio as aioredis

from actors.agent_handles import AgentActorsOnRay
from actors.probes import ray_probe, serve_probe
from actors.router_client import RouterOnRay, RunPoolOnRay, wake_event_hub_on_commit
from core.batching import Batcher
from core.settings import Settings
from persistence.db import Database
from persistence.group_commit import GroupCommit
from persistence.models import Task
from serve_app.rate_limits import LoginThrottle, RateLimitPolicy, login_policy
from services import sessions
from services.health import PASS, WARN, Check, CheckResult, HealthService
from services.login_throttle import MemoryLoginThrottle, RedisLoginThrottle
from services.ports import Actors, RouterChannel
from services.principal import Role
from services.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from services.tasks import NewTaskRequest, create_tasks
from services.tokens import TokenService
from services.users import RegistrationPolicy

log = logging.getLogger("orchestrator.api")

VERSION = "0.1.0"


@dataclass
class AppContext:
    settings: Settings
    db: Database
    tokens: TokenService
    redis: redis.Redis | None
    health: HealthService
    registration: RegistrationPolicy
    rate_limits: RateLimitPolicy
    # Tasks created without an agent or an approval: written in groups (persistence.group_commit).
    new_tasks: GroupCommit[NewTaskRequest, Task]
    # Whether a token (id, family, subject) is revoked: concurrent requests' checks as one lookup.
    revocations: Batcher[tuple[str | None, ...], bool]
    # The live side: agents' actors, the task router, the run pool (services/ports.py), on Ray.
    actors: Actors

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        db = Database.from_settings(settings, application_name="orchestrator:api")
        wake_event_hub_on_commit(settings)
        actors = Actors(agents=AgentActorsOnRay(settings), router=RouterOnRay(settings), runs=RunPoolOnRay(settings))
        redis_client = (
            redis.Redis.from_url(
                settings.redis.redis_url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
            )
            if settings.redis.redis_url
            else None
        )
        checks = [
            Check("database", _database_probe(db), critical=True),
            Check("ray", ray_probe, critical=False),
            Check("serve", serve_probe, critical=False),
            Check("queues", _queues_probe(actors.router, settings.health_check_timeout_s), critical=False),
        ]
        if redis_client is not None:
            checks.insert(1, Check("redis", _redis_probe(redis_client), critical=False))
        health = HealthService(
            checks,
            timeout_s=settings.health_check_timeout_s,
            cache_ttl_s=settings.health_cache_ttl_s,
            version=VERSION,
            environment=settings.environment.value,
        )
        limiter: RateLimiter = MemoryRateLimiter()
        policy = login_policy(settings.rate_limits)
        logins: LoginThrottle = MemoryLoginThrottle(policy)
        if settings.redis.redis_url:
            limits_redis = aioredis.Redis.from_url(settings.redis.redis_url, socket_timeout=2, socket_connect_timeout=2)
            limiter = RedisRateLimiter(limits_redis, prefix=settings.redis.redis_key_prefix)
            logins = RedisLoginThrottle(limits_redis, prefix=settings.redis.redis_key_prefix, policy=policy)
        return cls(
            settings=settings,
            db=db,
            tokens=TokenService.from_settings(settings),
            redis=redis_client,
            health=health,
            registration=RegistrationPolicy(
                allow_registration=settings.auth.allow_registration,
                default_role=Role.parse(settings.auth.default_role),
                password_min_length=settings.auth.password_min_length,
            ),
            rate_limits=RateLimitPolicy(settings.rate_limits, limiter, logins),
            new_tasks=GroupCommit(db, create_tasks),
            revocations=Batcher(partial(_revoked, db)),
            actors=actors,
        )

    async def aclose(self) -> None:
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()
        await self.rate_limits.aclose()


def _revoked(db: Database, tokens: Sequence[tuple[str | None, ...]]) -> list[bool]:
    with db.connect() as connection:
        return sessions.revoked(connection, tokens)


def _database_probe(db: Database):
    def probe() -> CheckResult:
        latency = db.ping()
        return CheckResult(PASS, f"{db.dialect} reachable", {"dialect": db.dialect, "latency_ms": round(latency, 3)})

    return probe


def _queues_probe(router: RouterChannel, timeout_s: float):
    """The task router's live queues (the `queues` check): warn when it cannot be asked."""

    def probe() -> CheckResult:
        if not ray.is_initialized():
            return CheckResult(WARN, "not connected to Ray: the task router's queues are not visible")
        stats = router.stats(timeout_s=timeout_s)
        if stats is None:
            return CheckResult(WARN, "the task router does not answer")
        return CheckResult(PASS, f"{stats['queued']} task(s) queued, {stats['free_slots']} free agent slot(s)", stats)

    return probe


def _redis_probe(client: redis.Redis):
    def probe() -> CheckResult:
        client.ping()
        return CheckResult(PASS, "redis reachable")

    return probe
