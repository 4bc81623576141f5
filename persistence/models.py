"""ORM models. Every table is created and changed only by an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.clock import utcnow
from persistence.base import Base, IdMixin, JSONType, OwnedMixin, TimestampMixin
from schedulers.agent_lifecycle import AgentStatus


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    # Stored lower-cased so that uniqueness is case-insensitive on every backend.
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    # Platform role: admin > agent > user (docs/api.md "Authentication and authorization").
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="user")
    subscription_tier: Mapped[str] = mapped_column(String(16), nullable=False, default="free")
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    last_login_at: Mapped[datetime | None] = mapped_column()


class IdempotencyKey(Base):
    """A client's `Idempotency-Key` on a creating request: the same key again answers the resource it made
    (services/idempotency.py). Kept `ORCHESTRATOR_IDEMPOTENCY_TTL_S`."""

    __tablename__ = "idempotency_keys"

    principal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False, index=True)


class RefreshToken(Base):
    """One issued refresh token. Rotation marks it used; reuse of a used one revokes its family."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)
    used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class TokenRevocation(Base):
    """A revoked access-token id (`jti`) or token family (`fam`), kept until the token would expire."""

    __tablename__ = "token_revocations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # "jti" | "family"
    expires_at: Mapped[datetime] = mapped_column(nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class ApiKey(IdMixin, Base):
    """A user's API key: only its SHA-256 is stored; the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # "ao_1a2b3c4d": enough to recognise a key in a list, useless to an attacker.
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class OAuthClient(IdMixin, Base):
    """A machine client registered by an admin for the OAuth 2.0 client-credentials grant."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    slug: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    subscription_tier: Mapped[str] = mapped_column(String(16), nullable=False, default="free")
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    members: Mapped[list[OrganizationMember]] = relationship(
        back_populates="organization", cascade="all, delete-orphan", order_by="OrganizationMember.joined_at"
    )


class OrganizationMember(Base):
    __tablename__ = "organization_members"

    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    # owner > admin > member
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)

    organization: Mapped[Organization] = relationship(back_populates="members")
    user: Mapped[User] = relationship()


class Configuration(IdMixin, TimestampMixin, OwnedMixin, Base):
    """A saved agent configuration or template; `usage_count` counts agents created from it."""

    __tablename__ = "configurations"
    __table_args__ = (Index("ix_configurations_owner", "owner_type", "owner_id"),)

    name: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    framework: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    is_template: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, index=True)
    usage_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_by: Mapped[str | None] = mapped_column(String(64))


class Agent(IdMixin, TimestampMixin, OwnedMixin, Base):
    """An agent: the durable record. Deploying it starts its Ray actor (`agent:<id>`)."""

    __tablename__ = "agents"
    __table_args__ = (
        Index("ix_agents_owner", "owner_type", "owner_id"),
        # Containment filters on capabilities/tags use JSONB @> on Postgres, which GIN indexes serve.
        Index("ix_agents_capabilities_gin", "capabilities", postgresql_using="gin"),
        Index("ix_agents_tags_gin", "tags", postgresql_using="gin"),
    )

    name: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    framework: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    agent_type: Mapped[str] = mapped_column(String(16), nullable=False, default="code")  # visual | code
    mode: Mapped[str] = mapped_column(String(16), nullable=False, default="hosted")  # hosted | external
    # The agent's role in routing ("type": coding, analysis, ops …).
    type: Mapped[str | None] = mapped_column(String(32), index=True)
    capabilities: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    specializations: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    tags: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    model: Mapped[str | None] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(50))
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    configuration_id: Mapped[str | None] = mapped_column(ForeignKey("configurations.id", ondelete="SET NULL"))
    working_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    max_concurrent_tasks: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    current_tasks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # {"cpu": cores, "memory": MB, "gpu": count}
    resource_limits: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=AgentStatus.draft.value, index=True)
    # Enabled flag (enable/disable): a disabled agent receives no new tasks, whatever its status.
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    version: Mapped[str] = mapped_column(String(32), nullable=False, default="1.0.0")
    total_executions: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    successful_executions: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    avg_execution_time: Mapped[float | None] = mapped_column(Float)  # milliseconds
    last_executed_at: Mapped[datetime | None] = mapped_column()
    deployed_at: Mapped[datetime | None] = mapped_column()
    undeployed_at: Mapped[datetime | None] = mapped_column()
    # Why the agent is `deploying` (waiting for resources) or in `error`; None otherwise.
    status_message: Mapped[str | None] = mapped_column(Text)
    # The Ray actor id of the current incarnation (the API's `container_id`).
    container_id: Mapped[str | None] = mapped_column(String(64))
    # Set when the idle actor released its process; cleared when it is re-activated (status stays active).
    passivated_at: Mapped[datetime | None] = mapped_column()
    # External mode: the remote worker's last heartbeat, and when it was reported offline (once per silence).
    last_heartbeat_at: Mapped[datetime | None] = mapped_column()
    offline_notified_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(64))


# Events fanned out but not yet in the Redis stream (it was unreachable): the stream's catch-up reads these.
UNSTREAMED = "streamed_at IS NULL AND published_at IS NOT NULL"


class Event(IdMixin, Base):
    """The outbox: every domain event (docs/api.md "Events"), written in the transaction of its change.

    `published_at` is set once the event has been fanned out (webhooks, live subscribers); until then a
    relay delivers it. `streamed_at` is set once it is in the Redis stream (or at once without Redis): a
    Redis outage does not hold the rest of the fan-out back, and the stream catches up afterwards.
    """

    __tablename__ = "events"
    # The relay's queries (`services.events.unpublished`, `unstreamed`): only the rows not yet fanned out or
    # streamed, however many done ones pile up behind them.
    __table_args__ = (
        Index(
            "ix_events_unpublished",
            "created_at",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        Index(
            "ix_events_unstreamed", "created_at", "id", postgresql_where=text(UNSTREAMED), sqlite_where=text(UNSTREAMED)
        ),
    )

    event_type: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    source: Mapped[str] = mapped_column(String(100), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    # Who may see it (None: a platform event, admins only).
    owner_type: Mapped[str | None] = mapped_column(String(16))
    owner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    subject_id: Mapped[str | None] = mapped_column(String(64), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False, index=True)
    published_at: Mapped[datetime | None] = mapped_column()
    streamed_at: Mapped[datetime | None] = mapped_column()


class MarketplaceListing(IdMixin, TimestampMixin, OwnedMixin, Base):
    """An agent published to the built-in marketplace (some clients call it an "integration"). One per agent.

    Ownership columns are the publisher's; the listing is visible to everyone while `published`.
    """

    __tablename__ = "marketplace_listings"

    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, unique=True)
    marketplace_name: Mapped[str] = mapped_column(String(100), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    pricing: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)  # published | unpublished
    published_at: Mapped[datetime | None] = mapped_column()
    unpublished_at: Mapped[datetime | None] = mapped_column()


class MarketplaceInstall(IdMixin, Base):
    """One install: the copy of a listed agent made into the installer's account."""

    __tablename__ = "marketplace_installs"

    listing_id: Mapped[str] = mapped_column(
        ForeignKey("marketplace_listings.id", ondelete="CASCADE"), nullable=False, index=True
    )
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    installed_by: Mapped[str] = mapped_column(String(64), nullable=False)
    owner_type: Mapped[str] = mapped_column(String(16), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Task(IdMixin, TimestampMixin, OwnedMixin, Base):
    """A unit of work: routed to an agent by type and priority, or assigned directly.

    Status changes go through `schedulers.task_lifecycle`. Hosted agents run their tasks in their actor;
    external agents' workers pull them (`GET /agents/{id}/tasks`) and report (`PATCH /tasks/{id}/status`).
    """

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_owner", "owner_type", "owner_id"),
        # The agent's queue and metrics: its tasks by status, newest first.
        Index("ix_tasks_agent_status", "agent_id", "status", "created_at"),
        # Routing: pending work by priority, oldest first.
        Index("ix_tasks_status_priority", "status", "priority", "created_at"),
    )

    title: Mapped[str] = mapped_column(String(300), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    # Routing type (e.g. bugfix, feature, deployment, incident, faq_update …).
    type: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    priority: Mapped[str] = mapped_column(String(2), nullable=False)  # P0 (critical) … P3 (low)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    project_id: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    requirements: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    acceptance_criteria: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    estimated_hours: Mapped[float | None] = mapped_column(Float)
    actual_hours: Mapped[float | None] = mapped_column(Float)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    # What a framework agent's model calls cost (its result's `usage`): services.tasks.finish_for_agent.
    tokens_used: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    cost: Mapped[float] = mapped_column(Float, nullable=False, default=0.0, server_default="0")
    sla_target: Mapped[int | None] = mapped_column(Integer)  # seconds from creation
    # created_at + sla_target, indexed for the reconciler's breach sweep; set when the breach fired.
    sla_due_at: Mapped[datetime | None] = mapped_column(index=True)
    sla_breached_at: Mapped[datetime | None] = mapped_column()
    due_date: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    assigned_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()


class Approval(IdMixin, OwnedMixin, Base):
    """A human decision (a human in the loop): a P0/P1 task waits `awaiting_approval` until it is approved,
    rejected or expires. Pending approvals are rows; their actor (`approval:<id>`) lives only while it
    acts. Ownership columns are the task's (or the requester's), so approvers of that tenant see it."""

    __tablename__ = "approvals"
    __table_args__ = (
        Index("ix_approvals_owner", "owner_type", "owner_id"),
        # Pending lists and the expiry sweep.
        Index("ix_approvals_status_expires", "status", "expires_at"),
    )

    task_id: Mapped[str | None] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    priority: Mapped[str] = mapped_column(String(2), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # pending | approved | rejected | expired
    requested_by: Mapped[str] = mapped_column(String(64), nullable=False)
    # The agent the task was created for (`agent_id` on a gated task): assigned on approval.
    assign_to: Mapped[str | None] = mapped_column(String(36))
    # A workflow run waiting at an approval node: resumed when this is decided or expires.
    execution_id: Mapped[str | None] = mapped_column(String(36), index=True)
    node_id: Mapped[str | None] = mapped_column(String(100))
    # A framework agent's tool call that waits for this decision: {name, arguments} (frameworks.context).
    tool_call: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The agent whose work it gates (the task's, the run's).
    agent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # What the approver sees: {"description": markdown, "preview": state or arguments (secrets masked),
    # "truncated": bool}.
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # A JSON Schema of the input an approval must carry; the input given goes to the resumed run.
    input_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    decision_input: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column()
    decision_reason: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)
    escalations: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False, index=True)


class RoutingRule(Base):
    """A task type's agent selector (`GET/PUT /routing/rules`), overriding the built-in default for that type."""

    __tablename__ = "routing_rules"

    task_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    # {"types": [...], "capabilities": [...], "tags": [...]}
    selector: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)


class TaskComment(IdMixin, Base):
    """A comment on a task; `mentions` are user ids, each notified."""

    __tablename__ = "task_comments"
    __table_args__ = (Index("ix_task_comments_task_created", "task_id", "created_at"),)

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False)
    author_id: Mapped[str] = mapped_column(String(64), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    mentions: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class TaskFile(IdMixin, Base):
    """A file attached to a task. The bytes live in the file store under `storage_key`
    (never a name the client chose); `name` is only what downloads are called."""

    __tablename__ = "task_files"
    __table_args__ = (Index("ix_task_files_task_uploaded", "task_id", "uploaded_at"),)

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    mime_type: Mapped[str] = mapped_column(String(100), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    storage_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    uploaded_by: Mapped[str] = mapped_column(String(64), nullable=False)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Notification(IdMixin, Base):
    """Something a user should know: a mention, their task assigned, their approval decided."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at"),)

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)  # mention | task_assigned | approval_decided
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    read_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Project(IdMixin, TimestampMixin, OwnedMixin, Base):
    """A project: tasks grouped under it; counts and progress are derived from them."""

    __tablename__ = "projects"
    __table_args__ = (Index("ix_projects_owner", "owner_type", "owner_id"),)

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    priority: Mapped[str] = mapped_column(String(2), nullable=False, default="P2")
    start_date: Mapped[datetime | None] = mapped_column()
    end_date: Mapped[datetime | None] = mapped_column()
    budget: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    # Agents planned for the project (the API's `agents`); those working its tasks are counted too.
    agent_ids: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    created_by: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[datetime | None] = mapped_column()

    members: Mapped[list[ProjectMember]] = relationship(
        cascade="all, delete-orphan", order_by="ProjectMember.added_at", lazy="selectin"
    )


class ProjectMember(Base):
    """A user on a project's team, with a project role and optional `resource:action` permissions. Members
    see the project and its tasks even when it belongs to an organization they are not in."""

    __tablename__ = "project_members"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(50), nullable=False, default="member")
    permissions: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    added_by: Mapped[str | None] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Workflow(IdMixin, TimestampMixin, OwnedMixin, Base):
    """An agent's workflow: a graph `workflow_data = {nodes, edges, settings}`, validated on save.
    Every update bumps `version` (1.0.0 → 1.1.0) and keeps the previous graph in `workflow_versions`.
    Ownership columns are the agent's."""

    __tablename__ = "workflows"
    __table_args__ = (
        Index("ix_workflows_owner", "owner_type", "owner_id"),
        Index("ix_workflows_agent_created", "agent_id", "created_at"),
    )

    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    workflow_type: Mapped[str] = mapped_column(String(16), nullable=False, default="visual")
    framework: Mapped[str | None] = mapped_column(String(32))
    workflow_data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    version: Mapped[str] = mapped_column(String(20), nullable=False, default="1.0.0")
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by: Mapped[str | None] = mapped_column(String(64))


class WorkflowVersion(IdMixin, Base):
    """One saved version of a workflow's graph (the current one included)."""

    __tablename__ = "workflow_versions"
    __table_args__ = (Index("uq_workflow_versions_workflow_version", "workflow_id", "version", unique=True),)

    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False)
    version: Mapped[str] = mapped_column(String(20), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    workflow_data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Execution(IdMixin, TimestampMixin, OwnedMixin, Base):
    """One run of a workflow. The graph it runs is the version it started with, copied
    here; `state` and `frontier` are its checkpoint after the last recorded step, from which a new actor
    resumes. `lease_owner`/`lease_until` fence the actor executing it: only the lease holder writes steps."""

    __tablename__ = "executions"
    __table_args__ = (
        # Owner first, then time: a tenant's runs in a period, and its latest ones (dashboard, lists).
        Index("ix_executions_owner_created", "owner_type", "owner_id", "created_at"),
        Index("ix_executions_status_updated", "status", "updated_at"),
        Index("ix_executions_workflow_created", "workflow_id", "created_at"),
        Index("ix_executions_agent_created", "agent_id", "created_at"),
    )

    workflow_id: Mapped[str | None] = mapped_column(ForeignKey("workflows.id", ondelete="SET NULL"))
    workflow_version: Mapped[str] = mapped_column(String(20), nullable=False)
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    task_id: Mapped[str | None] = mapped_column(String(36), index=True)
    graph: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    input: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    # {timeout (ms), retry_count, resources {cpu, memory (MB), gpu}}
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    configuration: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False, default="manual")
    environment: Mapped[str] = mapped_column(String(16), nullable=False, default="development")
    correlation_id: Mapped[str | None] = mapped_column(String(128), index=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    frontier: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    steps_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    current_step: Mapped[str | None] = mapped_column(String(100))
    tokens_used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    resource_usage: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    # What a `waiting` run waits for: {"approval_id": …} or {"task_id": …}.
    waiting_on: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column()
    actor_name: Mapped[str | None] = mapped_column(String(100))
    resumes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_by: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class RollupMeasures:
    """What a rollup counts of runs (`persistence.execution_rollups.SUMMED`, and the longest duration).
    Sums cover finished runs only, as the dashboard's do."""

    runs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # failed or timed out
    finished: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    duration_ms_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    duration_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    duration_ms_max: Mapped[int | None] = mapped_column(Integer)
    tokens_used: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    cost: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    start_latency_s_total: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    start_latency_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class ExecutionRollup(RollupMeasures, Base):
    """Runs counted per owner, agent and hour (or day) of creation, folded from `ExecutionRollupDelta` by
    `persistence.execution_rollups`: the dashboard sums these for whole days and hours instead of scanning
    runs. `agent_id` is "" for runs without an agent."""

    __tablename__ = "execution_rollups"
    __table_args__ = (Index("ix_execution_rollups_grain_starts_at", "grain", "starts_at"),)  # an admin: all owners

    grain: Mapped[str] = mapped_column(String(4), primary_key=True)  # "hour" | "day"
    owner_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class ExecutionRollupDelta(RollupMeasures, Base):
    """One transaction's change to one (owner, agent, hour) rollup, inserted as it commits (insert only:
    concurrent runs never wait on a shared row), and folded into `ExecutionRollup` by the reconciler.
    Readers add the deltas not folded yet, in the same statement, so figures are exact in between.
    `recount`: a run's duration left this hour's maximum, which the fold recounts from the runs."""

    __tablename__ = "execution_rollup_deltas"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    owner_type: Mapped[str] = mapped_column(String(16), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(64), nullable=False)
    starts_at: Mapped[datetime] = mapped_column(nullable=False)  # the hour
    agent_id: Mapped[str] = mapped_column(String(36), nullable=False)
    recount: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class ExecutionStep(IdMixin, Base):
    """One attempt of one node, recorded before the run moves on: `running` when it starts (so that a
    crash mid-step is re-run with the same idempotency key), then `completed` or `failed`."""

    __tablename__ = "execution_steps"
    __table_args__ = (
        Index("uq_execution_steps_execution_seq", "execution_id", "seq", unique=True),
        Index("ix_execution_steps_started_at", "started_at"),  # step latency over the last hour (/system/metrics)
    )

    execution_id: Mapped[str] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    node_id: Mapped[str] = mapped_column(String(100), nullable=False)
    node_type: Mapped[str] = mapped_column(String(32), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(250), nullable=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column()
    duration_ms: Mapped[float | None] = mapped_column(Float)


class ExecutionLog(IdMixin, Base):
    __tablename__ = "execution_logs"
    __table_args__ = (Index("ix_execution_logs_execution_created", "execution_id", "created_at"),)

    execution_id: Mapped[str] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"), nullable=False)
    level: Mapped[str] = mapped_column(String(8), nullable=False)  # DEBUG INFO WARN ERROR FATAL
    message: Mapped[str] = mapped_column(Text, nullable=False)
    node_id: Mapped[str | None] = mapped_column(String(100))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)


class Webhook(IdMixin, TimestampMixin, OwnedMixin, Base):
    """An HTTP endpoint that receives the events its owner may see, signed with its secret (docs/webhooks.md).

    The secret is stored encrypted (`core.crypto`): deliveries need it back to sign, the API never shows it.
    """

    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_owner", "owner_type", "owner_id"),)

    name: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    # Event names, "*" or "prefix.*" patterns.
    events: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    secret_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    # The secret's last 4 characters, to tell secrets apart in responses without decrypting them.
    secret_hint: Mapped[str] = mapped_column(String(8), nullable=False)
    # Custom request headers {name: value} as the encrypted JSON of the dict (values may be credentials);
    # `services.webhooks.custom_headers` reads them. `headers` held them in clear before migration 0013:
    # `orchestrator up` encrypts such rows and empties it.
    headers_encrypted: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by: Mapped[str | None] = mapped_column(String(64))
    last_delivery_at: Mapped[datetime | None] = mapped_column()
    last_delivery_status: Mapped[str | None] = mapped_column(String(16))
    last_status_code: Mapped[int | None] = mapped_column(Integer)


class WebhookDelivery(IdMixin, Base):
    """One event to one webhook: the exact body sent (retries send identical bytes), and how it went.

    `pending → delivered | failed | dead`; `failed` is retried at `next_attempt_at` (exponential backoff),
    `dead` after the last attempt. While a sender holds it, `next_attempt_at` is pushed forward as a lease.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # Enqueuing an event twice (a relay retrying its batch) adds nothing.
        Index("uq_webhook_deliveries_webhook_event", "webhook_id", "event_id", unique=True),
        # The senders' due query.
        Index("ix_webhook_deliveries_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"),
    )

    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False)
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # pending | delivered | failed | dead
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column()


class OwnerSettings(TimestampMixin, Base):
    """A user's or an organization's settings (`GET/POST /settings`): plain preferences in `values`, provider
    keys in `secrets`, each encrypted (`core.crypto.SecretBox`) and never returned in clear."""

    __tablename__ = "owner_settings"

    owner_type: Mapped[str] = mapped_column(String(16), primary_key=True)  # "user" | "organization"
    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    # name -> {"ciphertext", "hint"}
    secrets: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)


class CodeBundle(Base):
    """Code a client shipped with a Python-defined workflow (the SDK's notebook steps): cloudpickle bytes,
    content-addressed by SHA-256 per owner, stored as given. The API never deserializes it; only a run
    actor of that owner's run does (docs/sdk.md "Python-defined workflows")."""

    __tablename__ = "code_bundles"

    owner_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    python: Mapped[str] = mapped_column(String(20), nullable=False)  # the client's major.minor
    functions: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
