"""Node types of a workflow (docs/workflows.md "Node types"). Each checks its configuration on save
(`validate`, problems as (field, message)) and runs with the run's state (`run`), returning the updates to
merge into the state. `approval` and `task` nodes make the run wait (`NodeResult.wait`); when the
decision or the task's outcome arrives, `resume` gives their updates. Examples of every type are in
docs/workflows.md.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from core.imports import check_allowed, import_object
from core.net import PrivateAddress, resolve_public
from runtime import roles, sandbox
from runtime.expressions import ExpressionError, compile_expression, evaluate
from schedulers.approval_lifecycle import ApprovalStatus
from schedulers.task_lifecycle import TaskStatus

Problems = list[tuple[str, str]]
MAX_HTTP_BODY = 1024 * 1024


class NodeFailed(Exception):
    """A node's failure that retrying cannot fix (a rejection, a refused URL, a bad configuration)."""


@dataclass(slots=True)
class NodeResult:
    updates: dict[str, Any] = field(default_factory=dict)
    branch: str | None = None  # a condition node's result, matched against edges' `branch`
    goto: list[str] | None = None  # instead of the node's edges (an approval's on_reject target)
    wait: dict[str, Any] | None = None  # {"kind": "approval" | "task", …}: the run waits, holding no process


class FrameworkRuntime(Protocol):
    """An agent framework's runtime loaded for one node (`frameworks.AgentRuntime`)."""

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


class FrameworkLoader(Protocol):
    """Loads a framework's runtime for a node. The engine has no adapters of its own: the process that
    assembles a run passes one in (`RunEnvironment.load_framework`; the run actor's is
    `frameworks.load_node_runtime`)."""

    def __call__(
        self,
        framework: str,
        *,
        execution_id: str,
        node_id: str,
        configuration: dict[str, Any],
        code_modules: tuple[str, ...],
    ) -> FrameworkRuntime: ...


class WorkspaceAccess(Protocol):
    """A project's workspace as nodes see it (`services.workspaces.Workspace`): paths are confined to it."""

    @property
    def files(self) -> Path: ...

    def write(self, path: str, content: bytes | str) -> dict[str, Any]: ...

    def resolve(self, path: str) -> Path: ...


@dataclass(slots=True)
class NodeContext:
    """What a node may use besides the state. `idempotency_key` (`execution_id:node_id:attempt`) is the
    same when a step is re-run after a crash, so side effects can be de-duplicated by it."""

    execution_id: str
    node_id: str
    attempt: int
    idempotency_key: str
    correlation_id: str | None
    code_modules: tuple[str, ...] = ()
    llm: dict[str, Any] = field(default_factory=dict)  # base_url, api_key, model, cost_per_1k_tokens
    http_allowed: tuple[str, ...] = ()  # hosts or networks an http node may reach although private
    log: Callable[..., None] = lambda level, message, **meta: None
    output: Callable[[str], None] = lambda text: None
    usage: Callable[[int, float], None] = lambda tokens, cost: None
    map_runner: Callable[[Callable[..., Any], list[Any], int], list[Any]] | None = None
    load_framework: FrameworkLoader | None = None
    workspace: WorkspaceAccess | None = None
    # The functions of shipped code by bundle SHA-256 (runs of graphs that name a bundle, in their own process).
    load_code: Callable[[str], Mapping[str, Callable[..., Any]]] | None = None
    # Set when the engine gives up on the node (its timeout, the run's deadline, a cancel): stop what it started.
    stopping: threading.Event = field(default_factory=threading.Event)
    visit: int = 1  # which completed visit of this node this will be (loops run a node more than once)


class NodeType(Protocol):
    def validate(self, config: Mapping[str, Any]) -> Problems: ...

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult: ...


def _import_path(config: Mapping[str, Any], key: str) -> Problems:
    value = config.get(key)
    if not isinstance(value, str) or ":" not in value:
        return [(key, "an import path 'package.module:function' is required")]
    return []


def _output_key(config: Mapping[str, Any]) -> Problems:
    key = config.get("output_key")
    return [] if key is None or (isinstance(key, str) and key) else [("output_key", "a non-empty string")]


def _expression(config: Mapping[str, Any], key: str, *, required: bool) -> Problems:
    value = config.get(key)
    if value is None:
        return [(key, "an expression is required")] if required else []
    try:
        compile_expression(value)
    except ExpressionError as exc:
        return [(key, str(exc))]
    return []


class InputNode:
    """The run's start: the execution's input is the state."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        required = config.get("required", [])
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            return [("required", "a list of field names")]
        return []

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        missing = [key for key in config.get("required", []) if key not in state]
        if missing:
            raise NodeFailed(f"input is missing {', '.join(missing)}")
        return NodeResult()


class OutputNode:
    """The run's result: the state (or only `fields` of it) becomes the execution's output."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        fields = config.get("fields")
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            return [("fields", "a list of state field names")]
        return []

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        fields = config.get("fields")
        output = {key: state.get(key) for key in fields} if fields else dict(state)
        return NodeResult(updates={"__output__": output})


class PythonNode:
    """`function` ('package.module:function' in ORCHESTRATOR_AGENT_CODE_MODULES), or `bundle` (the SHA-256 of
    code the client shipped, docs/sdk.md) and `function` (a name in it); sync or async, it takes the state
    (and a context, if it accepts a second argument) and returns a mapping merged into the state."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        return _bundle_function(config) if config.get("bundle") is not None else _import_path(config, "function")

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        function = _code(ctx, config["function"], config.get("bundle"))
        result = _call(function, dict(state), ctx)
        if result is None:
            return NodeResult()
        if not isinstance(result, Mapping):
            raise NodeFailed(f"{config['function']} returned {type(result).__name__}, not a mapping")
        return NodeResult(updates=dict(result))


class ConditionNode:
    """`expression` in the safe expression language; its result is stored (under `output_key`, default the
    node id) and chooses the outgoing edges whose `branch` is "true" or "false"."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        return _expression(config, "expression", required=True) + _output_key(config)

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        try:
            value = bool(evaluate(config["expression"], state))
        except ExpressionError as exc:
            raise NodeFailed(f"expression: {exc}") from None
        return NodeResult(updates={config.get("output_key") or ctx.node_id: value}, branch=str(value).lower())


class HttpNode:
    """An HTTP request (`url`, `method`, `headers`, `json`, `timeout_s`); the response's `status` and body
    (parsed JSON, else text) go under `output_key`. Private, loopback and link-local addresses are refused
    unless ORCHESTRATOR_HTTP_ALLOWED_HOSTS lists them; redirects are not followed."""

    METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})

    def validate(self, config: Mapping[str, Any]) -> Problems:
        problems = _output_key(config)
        url = config.get("url")
        if not isinstance(url, str) or not url:
            problems.append(("url", "a URL is required"))
        elif "{{" not in url and urlsplit(url).scheme not in ("http", "https"):
            problems.append(("url", "http or https"))
        if str(config.get("method", "GET")).upper() not in self.METHODS:
            problems.append(("method", f"one of {', '.join(sorted(self.METHODS))}"))
        return problems

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        url = str(config["url"])
        checked = check_url(url, ctx.http_allowed)
        headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        headers.setdefault("Idempotency-Key", ctx.idempotency_key)
        if ctx.correlation_id:
            headers.setdefault("X-Correlation-ID", ctx.correlation_id)
        with httpx.Client(timeout=float(config.get("timeout_s", 30)), follow_redirects=False) as client:
            response = client.request(
                str(config.get("method", "GET")).upper(),
                checked.url,
                headers={**headers, **checked.headers},
                extensions=checked.extensions,
                json=config.get("json"),
            )
        content = response.content[:MAX_HTTP_BODY]
        try:
            body: Any = json.loads(content) if "json" in response.headers.get("content-type", "") else None
        except ValueError:
            body = None
        if body is None:
            body = content.decode("utf-8", errors="replace")
        if response.status_code >= 500:
            raise RuntimeError(f"{url} answered {response.status_code}")  # retried
        return NodeResult(
            updates={config.get("output_key") or ctx.node_id: {"status": response.status_code, "body": body}}
        )


class LlmNode:
    """Chat completions from an OpenAI-compatible server: `prompt` (or `messages`), `system`, `model`,
    `temperature`, `max_tokens`, `stream` (default true: tokens arrive as `execution.output` events). The
    provider's URL, key and model come from the node, the agent's configuration (`llm`), or settings.
    Token usage is added to the run's `tokens_used` and `cost`."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        problems = _output_key(config)
        if not config.get("prompt") and not config.get("messages"):
            problems.append(("prompt", "a prompt or messages are required"))
        messages = config.get("messages")
        if messages is not None and not isinstance(messages, list):
            problems.append(("messages", "a list of {role, content}"))
        return problems

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        messages = list(config.get("messages") or [])
        if config.get("system"):
            messages.insert(0, {"role": "system", "content": str(config["system"])})
        if config.get("prompt"):
            messages.append({"role": "user", "content": str(config["prompt"])})
        return NodeResult(updates={config.get("output_key") or ctx.node_id: chat(ctx, config, messages)})


def chat(ctx: NodeContext, config: Mapping[str, Any], messages: list[dict[str, Any]]) -> str:
    """One chat completion from the OpenAI-compatible provider (the node's, else the run's): the answer's
    text, streamed to the run's output as it arrives; its tokens are added to the run's usage."""
    base_url = str(config.get("base_url") or ctx.llm.get("base_url") or "")
    model = config.get("model") or ctx.llm.get("model")
    if not base_url or not model:
        raise NodeFailed(
            "no LLM provider: set ORCHESTRATOR_LLM_BASE_URL and ORCHESTRATOR_LLM_MODEL, the agent's "
            "configuration.llm {base_url, model, api_key}, or openai_base_url and llm_model in /settings"
        )
    checked = check_url(base_url.rstrip("/") + "/chat/completions", ctx.http_allowed)
    body: dict[str, Any] = {"model": model, "messages": messages}
    for name in ("temperature", "max_tokens"):
        if config.get(name) is not None:
            body[name] = config[name]
    stream = config.get("stream", True)
    headers = {"Idempotency-Key": ctx.idempotency_key, **checked.headers}
    if ctx.llm.get("api_key"):
        headers["Authorization"] = f"Bearer {ctx.llm['api_key']}"
    url, extensions = checked.url, checked.extensions
    text, usage = "", {}
    with httpx.Client(timeout=float(config.get("timeout_s", 120))) as client:
        if stream:
            body["stream"], body["stream_options"] = True, {"include_usage": True}
            with client.stream("POST", url, json=body, headers=headers, extensions=extensions) as response:
                _raise_for(response)
                for line in response.iter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            text += piece
                            ctx.output(piece)
        else:
            response = client.post(url, json=body, headers=headers, extensions=extensions)
            _raise_for(response)
            answer = response.json()
            text = answer["choices"][0]["message"]["content"] or ""
            usage = answer.get("usage") or {}
            ctx.output(text)
    tokens = int(usage.get("total_tokens") or (usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)))
    ctx.usage(tokens, tokens / 1000 * float(ctx.llm.get("cost_per_1k_tokens") or 0))
    return text


class ApprovalNode:
    """Asks a person (`reason`, `priority` P0–P3, `timeout_s`; `description`: markdown the approver reads
    beside a preview of the state; `input_schema`: a JSON Schema of input the approver must give); the run
    waits holding no process. Approved, it goes on with the decision (and its `input`) under `output_key`;
    rejected, it fails, or with `on_reject: <node id>` continues there."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        problems: Problems = []
        timeout = config.get("timeout_s")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            problems.append(("timeout_s", "a number of seconds > 0"))
        if config.get("on_reject") is not None and not isinstance(config["on_reject"], str):
            problems.append(("on_reject", "'fail' or a node id"))
        schema = config.get("input_schema")
        if schema is not None:
            if not isinstance(schema, dict):
                problems.append(("input_schema", "a JSON Schema object"))
            else:
                try:
                    Draft202012Validator.check_schema(schema)
                except SchemaError as exc:
                    problems.append(("input_schema", exc.message))
        return problems

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        return NodeResult(
            wait={
                "kind": "approval",
                "reason": str(config.get("reason") or f"Approve {ctx.node_id}"),
                "description": config.get("description"),
                "input_schema": config.get("input_schema"),
                "priority": str(config.get("priority") or "P1"),
                "timeout_s": config.get("timeout_s"),
            }
        )

    def resume(self, ctx: NodeContext, config: Mapping[str, Any], outcome: Mapping[str, Any]) -> NodeResult:
        decision = {
            "status": outcome["status"],
            "decided_by": outcome.get("decided_by"),
            "reason": outcome.get("reason"),
            "input": outcome.get("input"),
        }
        updates = {config.get("output_key") or ctx.node_id: decision}
        if outcome["status"] == ApprovalStatus.approved:
            return NodeResult(updates=updates)
        target = config.get("on_reject") or "fail"
        if target == "fail":
            raise NodeFailed(f"approval {outcome['status']}: {outcome.get('reason') or 'no reason given'}")
        return NodeResult(updates=updates, goto=[target])


class TaskNode:
    """Hands a task (`type`, `title`, `payload`, `priority`) to the task router and waits for its result,
    which goes under `output_key`; a failed or cancelled task fails the node. The tokens the task's agent
    used (a framework agent's `tokens_used` and `cost`) are added to the run's."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        problems = _output_key(config)
        if not isinstance(config.get("type"), str) or not config.get("type"):
            problems.append(("type", "the task type is required"))
        return problems

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        return NodeResult(
            wait={
                "kind": "task",
                "type": str(config["type"]).lower(),
                "title": str(config.get("title") or f"{ctx.node_id} of {ctx.execution_id}"),
                "payload": dict(config.get("payload") or {}),
                "priority": str(config.get("priority") or "P2"),
            }
        )

    def resume(self, ctx: NodeContext, config: Mapping[str, Any], outcome: Mapping[str, Any]) -> NodeResult:
        ctx.usage(int(outcome.get("tokens_used") or 0), float(outcome.get("cost") or 0.0))  # a framework agent's
        if outcome["status"] != TaskStatus.completed:
            raise NodeFailed(f"task {outcome.get('task_id')} {outcome['status']}: {outcome.get('error') or ''}")
        return NodeResult(updates={config.get("output_key") or ctx.node_id: outcome.get("result")})


class MapNode:
    """Applies `function` to each element of `items` (a template, e.g. "{{ state.documents }}") as parallel
    Ray tasks, at most `max_parallel` at once; the results, in order, go under `output_key`."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        function = _bundle_function(config) if config.get("bundle") is not None else _import_path(config, "function")
        problems = function + _output_key(config)
        if config.get("items") is None:
            problems.append(("items", "a list, or a template naming one"))
        parallel = config.get("max_parallel", 4)
        if not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= 256:
            problems.append(("max_parallel", "an integer from 1 to 256"))
        return problems

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        items = config["items"]
        if not isinstance(items, list):
            raise NodeFailed(f"items is {type(items).__name__}, not a list")
        parallel = int(config.get("max_parallel", 4))
        if config.get("bundle") is not None:  # shipped code stays in this run's own process: threads
            function = _code(ctx, config["function"], config["bundle"])
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                results = list(pool.map(function, items))
            return NodeResult(updates={config.get("output_key") or ctx.node_id: results})
        check_allowed(config["function"], ctx.code_modules)
        runner = ctx.map_runner or _threads
        results = runner(config["function"], items, parallel) if items else []
        return NodeResult(updates={config.get("output_key") or ctx.node_id: results})


class LangGraphNode:
    """Runs a LangGraph graph (`graph`: import path) on the state; its final state is merged in."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        return _import_path(config, "graph")

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        if ctx.load_framework is None:
            raise NodeFailed("this process runs no agent framework: langgraph nodes run in the run actors")
        runtime = ctx.load_framework(
            "langgraph",
            execution_id=ctx.execution_id,
            node_id=ctx.node_id,
            configuration={"graph": config["graph"]},
            code_modules=ctx.code_modules,
        )
        try:
            return NodeResult(updates=runtime.invoke(dict(config.get("input") or state)))
        finally:
            runtime.close()


class RoleNode:
    """One stage of a requirement pipeline, done by a role (`role`: analyst, implementer, validator,
    integrator; runtime/roles.py). With `delegate: true` the stage is a task for the tenant's agents of that
    type, through the task router; otherwise the built-in role agent asks the run's LLM provider. The
    implementer's files are written to the project's workspace; the validator's verdict picks the edge
    (`branch` "true": approved, "false": back to the implementer), and its `max_rejections`-th rejection
    fails the run."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        problems: Problems = []
        if config.get("role") not in roles.ROLES:
            problems.append(("role", "one of " + ", ".join(roles.ROLES)))
        limit = config.get("max_rejections", 2)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 10:
            problems.append(("max_rejections", "an integer from 0 to 10"))
        return problems

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        role = config["role"]
        stage = roles.STAGES[role]
        if config.get("delegate"):
            return NodeResult(
                wait={
                    "kind": "task",
                    "type": f"requirement_{stage}",
                    "title": f"{stage.capitalize()}: {str(state.get('requirement', ''))[:150]}",
                    "payload": {"role": role, "stage": stage, "prompt": roles.prompt(role, state)},
                    "priority": str(config.get("priority") or "P2"),
                }
            )
        messages = [
            {"role": "system", "content": roles.SYSTEM[role]},
            {"role": "user", "content": roles.prompt(role, state)},
        ]
        return self._answered(ctx, config, chat(ctx, config, messages))

    def resume(self, ctx: NodeContext, config: Mapping[str, Any], outcome: Mapping[str, Any]) -> NodeResult:
        if outcome["status"] != TaskStatus.completed:
            raise NodeFailed(f"task {outcome.get('task_id')} {outcome['status']}: {outcome.get('error') or ''}")
        result = outcome.get("result")
        text = result.get("text") or result.get("output") or json.dumps(result) if isinstance(result, dict) else result
        answered = self._answered(ctx, config, str(text or ""))
        if isinstance(result, dict) and isinstance(result.get("files"), list):  # an agent may hand files over
            answered.updates["files"] = _write_files(
                ctx, [(str(f.get("path")), str(f.get("content", ""))) for f in result["files"] if isinstance(f, dict)]
            )
        return answered

    def _answered(self, ctx: NodeContext, config: Mapping[str, Any], text: str) -> NodeResult:
        role = config["role"]
        stage = roles.STAGES[role]
        updates: dict[str, Any] = {stage: text, "stage": stage}
        if role == "implementer":
            updates["files"] = _write_files(ctx, roles.files_in(text))
        if role != "validator":
            return NodeResult(updates=updates)
        approved, reason = roles.verdict(text)
        if approved:
            return NodeResult(updates={**updates, "feedback": None}, branch="true")
        limit = int(config.get("max_rejections", 2))
        if ctx.visit > limit:
            raise NodeFailed(f"the validator rejected the implementation {ctx.visit} times; last: {reason}")
        return NodeResult(updates={**updates, "feedback": reason, "rejections": ctx.visit}, branch="false")


def _write_files(ctx: NodeContext, files: list[tuple[str, str]]) -> list[dict[str, Any]]:
    if ctx.workspace is None:
        raise NodeFailed("this run has no project workspace to write files to")
    written = []
    for path, content in files:
        try:
            written.append(ctx.workspace.write(f"{roles.FILES_DIR}/{path}", content))
        except Exception as exc:  # a refused path or a full workspace: the stage fails with the reason
            raise NodeFailed(f"cannot write {path!r} to the workspace: {exc}") from exc
    return written


class SandboxNode:
    """Runs a file of the project's workspace (`path`) in the sandbox (runtime/sandbox.py) at least as
    strong as `min_tier`, with `limits`; its output streams as the run's output. The exit code, duration,
    CPU time and memory go under `output_key`; a non-zero exit, a limit or the wall clock fails the node."""

    def validate(self, config: Mapping[str, Any]) -> Problems:
        problems = _output_key(config)
        if not isinstance(config.get("path"), str) or not config.get("path"):
            problems.append(("path", "the workspace path of the file to run"))
        if config.get("min_tier") is not None and config["min_tier"] not in {t.value for t in sandbox.Tier}:
            problems.append(("min_tier", "bubblewrap, namespaces or rlimits"))
        return problems

    def run(self, ctx: NodeContext, state: Mapping[str, Any], config: Mapping[str, Any]) -> NodeResult:
        if ctx.workspace is None:
            raise NodeFailed("this run has no project workspace")
        try:
            tier = sandbox.choose_tier(str(config.get("min_tier") or "rlimits"))
        except sandbox.SandboxUnavailable as exc:
            raise NodeFailed(str(exc)) from exc
        limits = sandbox.Limits(**dict(config.get("limits") or {}))
        try:
            process = sandbox.SandboxProcess(ctx.workspace.files, str(config["path"]), tier=tier, limits=limits)
            process.start()
        except ValueError as exc:
            raise NodeFailed(str(exc)) from exc
        ctx.log("INFO", f"started pid {process.pid} in the {tier} sandbox", pid=process.pid, tier=str(tier))
        stopper = threading.Thread(target=_stop_when, args=(ctx.stopping, process), daemon=True)
        stopper.start()
        for piece in process.lines():
            ctx.output(piece)
        result = process.wait()
        ctx.stopping.set()  # ends the stopper thread
        ctx.usage(0, 0.0)  # flushes the output still held back
        summary = {
            "pid": process.pid,
            "exit_code": result.exit_code,
            "status": result.status,
            "duration_ms": result.duration_ms,
            "cpu_time_s": result.cpu_time_s,
            "max_rss_mb": result.max_rss_mb,
            "output_truncated": result.output_truncated,
            "tier": str(result.tier),
        }
        ctx.log("INFO" if result.status == "completed" else "ERROR", f"sandbox ended: {result.status}", **summary)
        if result.status != "completed":
            why = f" ({result.reason})" if result.reason else ""
            raise NodeFailed(f"{config['path']} {result.status} with exit code {result.exit_code}{why}")
        return NodeResult(updates={config.get("output_key") or ctx.node_id: summary})


def _stop_when(stopping: threading.Event, process: sandbox.SandboxProcess) -> None:
    stopping.wait()
    process.stop()


NODE_TYPES: dict[str, Any] = {
    "input": InputNode(),
    "output": OutputNode(),
    "python": PythonNode(),
    "condition": ConditionNode(),
    "http": HttpNode(),
    "llm": LlmNode(),
    "approval": ApprovalNode(),
    "task": TaskNode(),
    "map": MapNode(),
    "langgraph": LangGraphNode(),
    "role": RoleNode(),
    "sandbox": SandboxNode(),
}


@dataclass(frozen=True, slots=True)
class CheckedUrl:
    """A URL that passed `check_url`, to be requested at the address that was checked: a client resolving
    the name again could get another answer, one inside the network (DNS rebinding). `url` has the host
    replaced by that address (unchanged when the name itself is allow-listed or is an address), `headers`
    keep the original `Host`, and `extensions` its TLS server name, which the certificate is checked
    against (httpx: `client.request(..., headers={**headers, **checked.headers}, extensions=...)`)."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


def check_url(url: str, allowed: tuple[str, ...]) -> CheckedUrl:
    """Refuse URLs that reach private, loopback, link-local or reserved addresses (SSRF), unless the host
    or its network is in `allowed`. Every address the name resolves to is checked; the URL to request is
    pinned to the first."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NodeFailed(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    try:
        addresses = resolve_public(host, parts.port or (443 if parts.scheme == "https" else 80), allowed)
    except socket.gaierror as exc:
        raise RuntimeError(f"cannot resolve {host}: {exc}") from None  # retried: DNS may recover
    except PrivateAddress as exc:
        raise NodeFailed(str(exc)) from None
    if addresses is None:
        return CheckedUrl(url, {}, {})
    pinned = ipaddress.ip_address(addresses[0])
    if _is_address(host):
        return CheckedUrl(url, {}, {})
    literal = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + literal + (f":{parts.port}" if parts.port else "")
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return CheckedUrl(urlunsplit(parts._replace(netloc=netloc)), {"Host": host_header}, extensions)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        response.read()
        message = f"LLM provider answered {response.status_code}: {response.text[:300]}"
        if response.status_code >= 500 or response.status_code == 429:
            raise RuntimeError(message)  # retried
        raise NodeFailed(message)


def _code(ctx: NodeContext, path: str, bundle: str | None = None) -> Callable[..., Any]:
    if bundle is not None:
        if ctx.load_code is None:
            raise NodeFailed("this process does not load shipped code: such runs get a run actor of their own")
        functions = ctx.load_code(bundle)
        if path not in functions:
            raise NodeFailed(f"the shipped code has no function {path!r} (it has {', '.join(sorted(functions))})")
        return functions[path]
    try:
        return import_object(path, ctx.code_modules)
    except (ValueError, ImportError, AttributeError) as exc:
        raise NodeFailed(str(exc)) from None


def _bundle_function(config: Mapping[str, Any]) -> Problems:
    problems: Problems = []
    bundle = config.get("bundle")
    if not isinstance(bundle, str) or len(bundle) != 64 or any(c not in "0123456789abcdef" for c in bundle):
        problems.append(("bundle", "the SHA-256 (64 hex digits) of code shipped with PUT /code-bundles/{sha256}"))
    if not isinstance(config.get("function"), str) or not config.get("function"):
        problems.append(("function", "the name of a function in the shipped code"))
    return problems


def _call(function: Callable[..., Any], state: dict[str, Any], ctx: NodeContext) -> Any:
    try:
        takes_context = len(inspect.signature(function).parameters) >= 2
    except (TypeError, ValueError):
        takes_context = False
    result = function(state, ctx) if takes_context else function(state)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _threads(path: str, items: list[Any], parallel: int) -> list[Any]:
    """Map outside Ray (tests of the engine without a cluster): a thread pool."""
    function = import_object(path)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(function, items))
