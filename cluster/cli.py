"""The `orchestrator` command: up, down, status, db upgrade/current/downgrade, admin create, docs config,
deploy serve-config."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from core.logging import configure_logging
from core.settings import Settings, load_settings, resolve_secrets

app = typer.Typer(
    help="Orchestrator: deploy, run and supervise AI agents on a Ray cluster.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
admin_app = typer.Typer(help="Administration.", no_args_is_help=True)
docs_app = typer.Typer(help="Documentation generated from the code.", no_args_is_help=True)
deploy_app = typer.Typer(help="Deployment files generated from the code.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(docs_app, name="docs")
app.add_typer(deploy_app, name="deploy")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the SQLite database, secrets and "
        "run state live [env: ORCHESTRATOR_DATA_DIR; default ~/.orchestrator]",
    ),
]


def _settings(data_dir: Path | None = None, **api: Any) -> Settings:
    root = {"data_dir": data_dir} if data_dir else {}
    groups: dict[str, dict[str, Any]] = {"root": root}
    api = {key: value for key, value in api.items() if value is not None}
    if api:
        groups["api"] = api
    try:
        return load_settings(**groups)
    except ValueError as exc:
        typer.secho(f"invalid settings: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Interface the API listens on [default 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="API port [default 8000]")] = None,
    data_dir: DataDir = None,
    address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster instead of starting one [env: RAY_ADDRESS]")
    ] = None,
    gcs_redis: Annotated[
        str | None,
        typer.Option(
            help="GCS fault tolerance for the Ray started here: keep its control store's tables in this Redis "
            "(host:port) [env: ORCHESTRATOR_RAY_REDIS_ADDRESS or Ray's RAY_REDIS_ADDRESS]"
        ),
    ] = None,
) -> None:
    """Start Ray (or join one), apply migrations, deploy the API, and run until Ctrl-C."""
    from cluster import runtime
    from persistence.migrate import upgrade

    started = time.monotonic()
    settings = _settings(data_dir, host=host, port=port)
    if address:
        settings = settings.with_overrides(ray={"ray_address": address})
    if gcs_redis:
        settings = settings.with_overrides(ray={"ray_redis_address": gcs_redis})
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    existing = runtime.read_state(settings)
    if existing and runtime.pid_alive(existing.pid):
        typer.secho(
            f"already running (pid {existing.pid}) at {existing.api_url}; `orchestrator down` stops it",
            fg="yellow",
            err=True,
        )
        raise typer.Exit(1)
    settings = resolve_secrets(settings)

    typer.echo(f"data directory   {settings.data_dir}")
    typer.echo(f"database         {_redact(settings.database_url)}")
    upgrade(settings.database_url)
    typer.echo("migrations       up to date")
    runtime.housekeeping(settings)

    fast_proxy = runtime.configure_http_proxy(settings.api.fast_proxy)
    ray_address, dashboard_url, started_ray = runtime.start_or_join_ray(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        runtime.start_platform_actors(settings)
        api_url = runtime.deploy_api(settings)
        runtime.wait_until_healthy(api_url)
        platform = runtime.RunningPlatform(
            api_url=f"{api_url}/api/v1",
            docs_url=f"{api_url}/docs",
            dashboard_url=dashboard_url,
            ray_address=ray_address,
            started_ray=started_ray,
            fast_proxy=fast_proxy,
            pid=os.getpid(),
        )
        runtime.write_state(settings, platform)
        typer.echo(f"ray              {'started locally' if started_ray else 'joined ' + ray_address}")
        typer.echo(f"gcs storage      {_gcs_storage(settings, started_ray)}")
        typer.echo(f"http proxy       {'haproxy (fast path)' if fast_proxy else 'ray serve default'}")
        typer.secho(f"API              {platform.api_url}", fg="green")
        typer.echo(f"health           {api_url}/health")
        typer.echo(f"OpenAPI docs     {platform.docs_url}")
        typer.echo(f"Ray dashboard    {dashboard_url or 'not available'}")
        typer.echo(f"ready in {time.monotonic() - started:.1f}s. Ctrl-C (or `orchestrator down`) stops it.")
        while not stop.wait(1.0):
            pass
    except Exception as exc:
        typer.secho(f"failed to start: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    finally:
        stopping = time.monotonic()
        typer.echo("shutting down …")
        try:
            runtime.stop_platform(drain_timeout_s=settings.ray.shutdown_drain_timeout_s)
        finally:
            runtime.state_file(settings).unlink(missing_ok=True)
        typer.echo(f"stopped in {time.monotonic() - stopping:.1f}s")


def _gcs_storage(settings: Settings, started_ray: bool) -> str:
    """Where the cluster's GCS keeps its tables, and what that means when the GCS restarts."""
    from cluster import runtime

    storage = runtime.gcs_storage()
    if storage == "redis":
        where = (
            f" {settings.ray_redis_address} (namespace {settings.ray.ray_gcs_storage_namespace or 'default'})"
            if started_ray
            else " (set on the cluster's head)"
        )
        said = f"redis{where}: fault tolerant, a restarted GCS recovers the cluster"
    else:
        said = f'{storage}: a GCS restart loses the cluster\'s actors (docs/deploy.md "GCS fault tolerance")'
    if not started_ray and settings.ray.ray_redis_address:
        said += "; ORCHESTRATOR_RAY_REDIS_ADDRESS/--gcs-redis ignored: the joined cluster's head decides"
    return said


@app.command()
def down(data_dir: DataDir = None, timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 60) -> None:
    """Stop a platform started by `orchestrator up` with the same data directory."""
    from cluster import runtime

    settings = _settings(data_dir)
    state = runtime.read_state(settings)
    if state is None or not runtime.pid_alive(state.pid):
        runtime.state_file(settings).unlink(missing_ok=True)
        typer.echo("not running")
        return
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while runtime.pid_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if runtime.pid_alive(state.pid):
        typer.secho(f"pid {state.pid} still running after {timeout:.0f}s", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo("stopped")


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Show whether the platform runs, where, and its health checks."""
    from cluster import runtime

    settings = _settings(data_dir)
    state = runtime.read_state(settings)
    if state is None or not runtime.pid_alive(state.pid):
        typer.echo("not running")
        raise typer.Exit(3)
    base = state.api_url.removesuffix("/api/v1")
    typer.echo(
        f"running (pid {state.pid})\nAPI              {state.api_url}\nOpenAPI docs     {state.docs_url}\n"
        f"Ray dashboard    {state.dashboard_url or 'not available'}"
    )
    try:
        report = httpx.get(f"{base}/health", timeout=10).json()
    except (httpx.HTTPError, ValueError) as exc:
        typer.secho(f"health           unreachable: {exc}", fg="red")
        raise typer.Exit(1) from exc
    typer.echo(f"health           {report['status']}")
    for name, check in report.get("checks", {}).items():
        typer.echo(f"  {name:<14} {check['status']:<5} {check['response_time']:8.1f} ms  {check['message']}")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head", data_dir: DataDir = None) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from persistence.migrate import current_revision, upgrade

    settings = _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {current_revision(settings.database_url)}")


@db_app.command("current")
def db_current(data_dir: DataDir = None) -> None:
    """Print the database's revision and the latest one."""
    from persistence.migrate import current_revision, head_revision

    settings = _settings(data_dir)
    typer.echo(f"current {current_revision(settings.database_url)}  head {head_revision()}")


@db_app.command("downgrade")
def db_downgrade(revision: str, data_dir: DataDir = None) -> None:
    """Revert migrations down to REVISION ('base' removes every table)."""
    from persistence.migrate import current_revision, downgrade

    settings = _settings(data_dir)
    downgrade(settings.database_url, revision)
    typer.echo(f"database at revision {current_revision(settings.database_url)}")


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="Email of the new account")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="ORCHESTRATOR_ADMIN_PASSWORD",
            help="Prompted for when not given",
        ),
    ],
    first_name: str | None = None,
    last_name: str | None = None,
    role: Annotated[str, typer.Option(help="admin, agent or user")] = "admin",
    data_dir: DataDir = None,
) -> None:
    """Create an account from the command line (works with self-registration switched off)."""
    from email_validator import EmailNotValidError, validate_email

    from core.errors import DomainError
    from persistence.db import Database
    from persistence.migrate import upgrade
    from services import users
    from services.principal import Role

    settings = _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        email = validate_email(email, check_deliverability=False).normalized
        chosen_role = Role.parse(role)
    except (EmailNotValidError, ValueError) as exc:
        typer.secho(f"invalid input: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    upgrade(settings.database_url)
    policy = users.RegistrationPolicy(
        allow_registration=True, default_role=chosen_role, password_min_length=settings.auth.password_min_length
    )
    db = Database.from_settings(settings)
    try:
        password_hash = users.prepare_password(password, policy)
        with db.transaction() as session:
            user = users.register_user(
                session,
                email=email,
                password_hash=password_hash,
                first_name=first_name,
                last_name=last_name,
                policy=policy,
                role=chosen_role,
                bypass_policy=True,
            )
            typer.echo(f"created {user.role} {user.email} ({user.id})")
    except DomainError as exc:
        typer.secho(f"{exc.code}: {exc.message}", fg="red", err=True)
        raise typer.Exit(1) from exc
    finally:
        db.dispose()


@docs_app.command("config")
def docs_config(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when the file differs from the generated page")
    ] = False,
    output: Annotated[Path, typer.Option(help="The page to write or check")] = Path("docs/configuration.md"),
) -> None:
    """Generate the configuration reference from the settings classes (core/settings.py)."""
    from cluster import config_reference

    if check:
        diff = config_reference.stale_diff(output)
        if diff:
            typer.echo(diff, err=True)
            typer.secho(
                f"{output} is stale: it differs from what core/settings.py generates. "
                "Run `orchestrator docs config` and commit the result.",
                fg="red",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"{output} is up to date")
        return
    changed = config_reference.write(output)
    typer.echo(f"{'wrote' if changed else 'unchanged'} {output}")


@deploy_app.command("serve-config")
def deploy_serve_config(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when a file differs from the generated one")
    ] = False,
    output: Annotated[Path, typer.Option(help="Serve's config file")] = Path("deploy/serve-config.yaml"),
    rayservice: Annotated[Path, typer.Option(help="The RayService whose serveConfigV2 carries the same text")] = Path(
        "deploy/kubernetes/base/rayservice.yaml"
    ),
) -> None:
    """Generate Serve's config (`serve deploy`, a RayService's serveConfigV2): the application builder and the
    API deployment's replicas, CPUs and concurrency from the settings in effect (ORCHESTRATOR_API_REPLICAS …)."""
    from cluster import serve_config

    config = serve_config.render(_settings().api)
    files = {output: config}
    if rayservice.exists():
        files[rayservice] = serve_config.embed(rayservice.read_text(), config)
    stale = {path: serve_config.stale_diff(path, text) for path, text in files.items()}
    for path, text in files.items():
        if check and stale[path]:
            typer.echo(stale[path], err=True)
            typer.secho(f"{path} is stale: run `orchestrator deploy serve-config` and commit it", fg="red", err=True)
        elif check:
            typer.echo(f"{path} is up to date")
        else:
            if stale[path]:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            typer.echo(f"{'wrote' if stale[path] else 'unchanged'} {path}")
    if check and any(stale.values()):
        raise typer.Exit(1)


@app.command()
def doctor() -> None:
    """Say which workspace sandbox tiers work on this host and which one runs would use; exit 1 if refused."""
    from runtime import sandbox

    minimum = _settings().workspaces.sandbox_min_tier
    for check in sandbox.probe():
        typer.echo(f"{check.tier:<11} {'yes' if check.available else 'no':<4} {check.reason}")
    try:
        tier = sandbox.choose_tier(minimum)
    except sandbox.SandboxUnavailable as exc:
        typer.secho(f"runs refused (ORCHESTRATOR_SANDBOX_MIN_TIER={minimum}): {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"runs use {tier} (ORCHESTRATOR_SANDBOX_MIN_TIER={minimum})")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    app(prog_name="orchestrator")


if __name__ == "__main__":
    sys.exit(main())
