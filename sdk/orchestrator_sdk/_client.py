"""The transport under both clients: base URL, authentication, retries, typed errors, paging, streams.

`Client` is built on `httpx.Client` and never touches an event loop, so it works the same in a script and
inside a Jupyter kernel whose loop is already running. `AsyncClient` is built on `httpx.AsyncClient`; it
opens its connection pool lazily in the loop that first uses it (and again in a new loop), so it may be
created at import time and used under `asyncio.run(...)`, as the API guide's example does.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx

from orchestrator_sdk import __version__, resources
from orchestrator_sdk._sse import Resume, SSEParser, StreamEvent
from orchestrator_sdk.errors import (
    APIConnectionError,
    AuthenticationError,
    OrchestratorError,
    error_from_response,
    retry_after_of,
)

T = TypeVar("T")
API_PREFIX = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8000"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
IDEMPOTENCY_HEADER = resources.IDEMPOTENCY_HEADER
RETRY_STATUSES = frozenset({502, 503, 504})
# Errors after which the request may have reached the server: retried only when it is idempotent.
_MAYBE_SENT = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.TimeoutException)
# A stream drops with these (or ends without its `end` event); it is then resumed.
_STREAM_DROPS = (httpx.TransportError,)


STREAM_IDLE_S = 60.0


def _read_timeout(deadline: float | None, path: str) -> float:
    """How long a stream may stay silent before it is opened again: a minute, or until the deadline."""
    if deadline is None:
        return STREAM_IDLE_S
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"stream {path} has not ended in time")
    return min(STREAM_IDLE_S, remaining)


def api_url(base_url: str | None) -> str:
    """The API root: `http://host:port` and `http://host:port/api/v1` both mean `…/api/v1`."""
    url = (base_url or os.environ.get("ORCHESTRATOR_URL") or DEFAULT_URL).rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


class _Credentials:
    """An API key, a bearer token, or email + password (login, then refresh when the token expires)."""

    def __init__(self, api_key: str | None, token: str | None, email: str | None, password: str | None) -> None:
        if api_key is None and token is None and email is None:
            api_key = os.environ.get("ORCHESTRATOR_API_KEY") or None
        self.api_key, self.email, self.password = api_key, email, password
        self.access_token: str | None = token
        self.refresh_token: str | None = None
        self.expires_at: float | None = None
        self.user: dict[str, Any] | None = None

    @property
    def uses_login(self) -> bool:
        return self.email is not None

    def headers(self) -> dict[str, str]:
        if self.api_key:
            return {"X-API-Key": self.api_key}
        if self.access_token:
            return {"Authorization": f"Bearer {self.access_token}"}
        return {}

    def needs_login(self) -> bool:
        return self.uses_login and self.access_token is None

    def expiring(self, skew_s: float = 30.0) -> bool:
        return self.expires_at is not None and self.refresh_token is not None and time.time() > self.expires_at - skew_s

    def store(self, body: dict[str, Any]) -> None:
        self.access_token = body["access_token"]
        self.refresh_token = body.get("refresh_token") or self.refresh_token
        expires_in = body.get("expires_in")
        self.expires_at = time.time() + float(expires_in) if expires_in else None
        if body.get("user"):
            self.user = body["user"]


class _Base:
    """What both clients share: settings, headers, the retry decisions."""

    is_async = False

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        backoff: float = 0.5,
        headers: dict[str, str] | None = None,
        transport: Any = None,
    ) -> None:
        self.base_url = api_url(base_url)
        self._credentials = _Credentials(api_key, token, email, password)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.backoff = backoff
        self._headers = {
            "User-Agent": f"orchestrator-sdk/{__version__}",
            "Accept": "application/json",
            **(headers or {}),
        }
        self._transport = transport
        self.agents = resources.Agents(self)
        self.workflows = resources.Workflows(self)
        self.executions = resources.Executions(self)
        self.tasks = resources.Tasks(self)
        self.approvals = resources.Approvals(self)
        self.projects = resources.Projects(self)
        self.events = resources.Events(self)
        self.webhooks = resources.Webhooks(self)
        self.users = resources.Users(self)
        self.auth = resources.Auth(self)
        self.requirements = resources.Requirements(self)
        self.workspaces = resources.Workspaces(self)
        self.settings = resources.Settings(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    @property
    def user(self) -> dict[str, Any] | None:
        """The account of an email + password login, once logged in."""
        return self._credentials.user

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def _delay(self, attempt: int) -> float:
        return self.backoff * (2**attempt) * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not security)

    def _retry_wait(self, method: str, attempt: int, response: httpx.Response, keyed: bool = False) -> float | None:
        """Seconds to wait before retrying `response`, or None to raise it."""
        if attempt >= self.max_retries:
            return None
        if response.status_code == 429:
            wait = retry_after_of(response)
            wait = self._delay(attempt) if wait is None else wait
            return wait if wait <= self.max_retry_wait else None
        if response.status_code in RETRY_STATUSES and _retry_safe(method, keyed):
            return max(retry_after_of(response) or 0.0, self._delay(attempt))
        return None

    def _retry_exception(self, method: str, attempt: int, exc: Exception, keyed: bool = False) -> float | None:
        if attempt >= self.max_retries:
            return None
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return self._delay(attempt)  # nothing was sent: any method may be tried again
        if isinstance(exc, _MAYBE_SENT) and _retry_safe(method, keyed):
            return self._delay(attempt)
        return None

    def _should_refresh(self, response: httpx.Response, authenticated: bool, refreshed: bool) -> bool:
        return response.status_code == 401 and authenticated and not refreshed and self._credentials.uses_login

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text


class Page(list):
    """One page of a list: the items (a list) with the envelope's `pagination` and `links`."""

    def __init__(self, items: list[Any], pagination: dict[str, Any], links: dict[str, Any], key: str) -> None:
        super().__init__(items)
        self.pagination, self.links, self.key = pagination, links, key

    @property
    def has_next(self) -> bool:
        return bool(self.pagination.get("has_next"))

    @property
    def total(self) -> int | None:
        return self.pagination.get("total")

    def _repr_html_(self) -> str:
        from orchestrator_sdk._base import rows_table

        rows = [item.to_dict() if hasattr(item, "to_dict") else item for item in self]
        fields = [
            f
            for f in ("id", "name", "title", "status", "type", "priority", "created_at")
            if any(f in row for row in rows)
        ]
        info = self.pagination
        return (
            f"<p>{self.key}: page {info.get('page')} of {info.get('pages')} ({info.get('total')} in all)</p>"
            + rows_table(rows, fields)
        )


def _page(body: dict[str, Any], key: str, cast: Callable[[Any], Any] | None) -> Page:
    items = [cast(item) if cast else item for item in body.get(key, [])]
    return Page(items, body.get("pagination") or {}, body.get("links") or {}, key)


def _page_params(params: dict[str, Any] | None, limit: int) -> dict[str, Any]:
    query = {k: v for k, v in (params or {}).items() if v is not None}
    query = {k: (",".join(map(str, v)) if isinstance(v, list | tuple | set) else v) for k, v in query.items()}
    query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in query.items()}
    query.setdefault("limit", limit)
    return query


class Client(_Base):
    """The synchronous client. Use it as a context manager, or call `close()`."""

    def __init__(self, base_url: str | None = None, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.Client(timeout=self.timeout, headers=self._headers, transport=self._transport)
        self._auth_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- authentication -------------------------------------------------------------------------------

    def login(self) -> dict[str, Any]:
        """POST /auth/login with the client's email and password (done for you on the first request)."""
        creds = self._credentials
        with self._auth_lock:
            body = self._send(
                "POST", "/auth/login", json={"email": creds.email, "password": creds.password}, authenticated=False
            )
            creds.store(body)
        return body

    def _refresh(self, stale_token: str | None) -> None:
        creds = self._credentials
        with self._auth_lock:
            if creds.access_token != stale_token:  # another thread already refreshed
                return
            if creds.refresh_token:
                try:
                    creds.store(
                        self._send(
                            "POST", "/auth/refresh", json={"refresh_token": creds.refresh_token}, authenticated=False
                        )
                    )
                    return
                except AuthenticationError:
                    if creds.password is None:
                        raise
            body = self._send(
                "POST", "/auth/login", json={"email": creds.email, "password": creds.password}, authenticated=False
            )
            creds.store(body)

    def _ensure_auth(self) -> None:
        creds = self._credentials
        if creds.needs_login():
            self.login()
        elif creds.expiring():
            self._refresh(creds.access_token)

    # --- requests --------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call with retries and typed errors; `path` is relative to `/api/v1`."""
        return self._request(method.upper(), path, authenticated=True, **kwargs)

    def _request(self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any) -> httpx.Response:
        attempt, refreshed = 0, False
        extra_headers = kwargs.pop("headers", {})
        while True:
            if authenticated:
                self._ensure_auth()
            token = self._credentials.access_token
            headers = {**(self._credentials.headers() if authenticated else {}), **extra_headers}
            try:
                response = self._http.request(method, self._url(path), headers=headers, **kwargs)
            except httpx.TransportError as exc:
                wait = self._retry_exception(method, attempt, exc, IDEMPOTENCY_HEADER in extra_headers)
                if wait is None:
                    raise APIConnectionError(f"{method} {path}: {exc!r}") from exc
                time.sleep(wait)
                attempt += 1
                continue
            if self._should_refresh(response, authenticated, refreshed):
                refreshed = True
                self._refresh(token)
                continue
            if response.is_success:
                return response
            wait = self._retry_wait(method, attempt, response, IDEMPOTENCY_HEADER in extra_headers)
            if wait is None:
                raise error_from_response(response)
            time.sleep(wait)
            attempt += 1

    def _send(self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any) -> Any:
        return self._decode(self._request(method, path, authenticated=authenticated, **kwargs))

    def _call(self, method: str, path: str, cast: Callable[[Any], T] | None = None, **kwargs: Any) -> Any:
        body = self._send(method, path, **kwargs)
        return cast(body) if cast else body

    def _get_page(self, path: str, key: str, params: dict[str, Any] | None, cast: Any, limit: int = 20) -> Page:
        return _page(self._send("GET", path, params=_page_params(params, limit)), key, cast)

    def _paginate(
        self, path: str, key: str, params: dict[str, Any] | None, cast: Any, limit: int = 100
    ) -> Iterator[Any]:
        """Every item across pages, each once (items that move to a later page while paging are skipped)."""
        query = _page_params(params, limit)
        number, seen = int(query.pop("page", 1)), set()
        while True:
            page = _page(self._send("GET", path, params={**query, "page": number}), key, cast)
            for item in page:
                ident = item.get("id") if hasattr(item, "get") else None
                if ident is not None:
                    if ident in seen:
                        continue
                    seen.add(ident)
                yield item
            if not page.has_next or not page:
                return
            number += 1

    # --- streams ---------------------------------------------------------------------------------------

    @contextmanager
    def _open_stream(
        self, path: str, last_event_id: str | None, read_timeout: float
    ) -> Generator[httpx.Response, None, None]:
        self._ensure_auth()
        headers = {**self._credentials.headers(), "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        with self._http.stream("GET", self._url(path), headers=headers, timeout=timeout) as response:
            if not response.is_success:
                response.read()
                raise error_from_response(response)
            yield response

    def _sse(
        self,
        path: str,
        last_event_id: str | None = None,
        max_reconnects: int = 10,
        timeout: float | None = None,
        *,
        end_event: str = "end",
    ) -> Iterator[StreamEvent]:
        """A run's events, resumed after a dropped connection from the last event id, each once.
        `timeout`: TimeoutError when the stream has not ended after that many seconds."""
        cursor, failures, refreshed = Resume(last_id=last_event_id), 0, False
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                with self._open_stream(path, cursor.last_id, _read_timeout(deadline, path)) as response:
                    parser = SSEParser()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is not None and cursor.accept(event):
                            failures = 0  # progress: the reconnect budget starts again
                            yield event
                            if event.event == end_event:
                                return
            except AuthenticationError:
                if refreshed or not self._credentials.uses_login:
                    raise
                refreshed = True
                self._refresh(self._credentials.access_token)
                continue
            except httpx.ReadTimeout:
                continue  # an idle run (waiting on an approval) sends nothing: ask again, not a failure
            except _STREAM_DROPS:
                pass
            except OrchestratorError as exc:
                if exc.status is None or exc.status < 500:
                    raise
            failures += 1
            if failures > max_reconnects:
                raise APIConnectionError(f"stream {path} dropped {failures} times in a row")
            time.sleep(min(self._delay(failures - 1), 5.0))

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class AsyncClient(_Base):
    """The asyncio client: the same namespaces and methods as `Client`, awaited."""

    is_async = True

    def __init__(self, base_url: str | None = None, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http_by_loop: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None
        self._lock_by_loop: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    @property
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http_by_loop is None or self._http_by_loop[0] is not loop:
            client = httpx.AsyncClient(timeout=self.timeout, headers=self._headers, transport=self._transport)
            self._http_by_loop = (loop, client)
        return self._http_by_loop[1]

    @property
    def _auth_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock_by_loop is None or self._lock_by_loop[0] is not loop:
            self._lock_by_loop = (loop, asyncio.Lock())
        return self._lock_by_loop[1]

    async def aclose(self) -> None:
        if self._http_by_loop is not None:
            loop, client = self._http_by_loop
            self._http_by_loop = None
            if loop is asyncio.get_running_loop():
                await client.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def login(self) -> dict[str, Any]:
        creds = self._credentials
        async with self._auth_lock:
            body = await self._send(
                "POST", "/auth/login", json={"email": creds.email, "password": creds.password}, authenticated=False
            )
            creds.store(body)
        return body

    async def _refresh(self, stale_token: str | None) -> None:
        creds = self._credentials
        async with self._auth_lock:
            if creds.access_token != stale_token:
                return
            if creds.refresh_token:
                try:
                    creds.store(
                        await self._send(
                            "POST", "/auth/refresh", json={"refresh_token": creds.refresh_token}, authenticated=False
                        )
                    )
                    return
                except AuthenticationError:
                    if creds.password is None:
                        raise
            body = await self._send(
                "POST", "/auth/login", json={"email": creds.email, "password": creds.password}, authenticated=False
            )
            creds.store(body)

    async def _ensure_auth(self) -> None:
        creds = self._credentials
        if creds.needs_login():
            async with self._auth_lock:
                if creds.needs_login():
                    creds.store(
                        await self._send(
                            "POST",
                            "/auth/login",
                            json={"email": creds.email, "password": creds.password},
                            authenticated=False,
                        )
                    )
        elif creds.expiring():
            await self._refresh(creds.access_token)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self._request(method.upper(), path, authenticated=True, **kwargs)

    async def _request(self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any) -> httpx.Response:
        attempt, refreshed = 0, False
        extra_headers = kwargs.pop("headers", {})
        while True:
            if authenticated:
                await self._ensure_auth()
            token = self._credentials.access_token
            headers = {**(self._credentials.headers() if authenticated else {}), **extra_headers}
            try:
                response = await self._http.request(method, self._url(path), headers=headers, **kwargs)
            except httpx.TransportError as exc:
                wait = self._retry_exception(method, attempt, exc, IDEMPOTENCY_HEADER in extra_headers)
                if wait is None:
                    raise APIConnectionError(f"{method} {path}: {exc!r}") from exc
                await asyncio.sleep(wait)
                attempt += 1
                continue
            if self._should_refresh(response, authenticated, refreshed):
                refreshed = True
                await self._refresh(token)
                continue
            if response.is_success:
                return response
            wait = self._retry_wait(method, attempt, response, IDEMPOTENCY_HEADER in extra_headers)
            if wait is None:
                raise error_from_response(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def _send(self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any) -> Any:
        return self._decode(await self._request(method, path, authenticated=authenticated, **kwargs))

    async def _call(self, method: str, path: str, cast: Callable[[Any], T] | None = None, **kwargs: Any) -> Any:
        body = await self._send(method, path, **kwargs)
        return cast(body) if cast else body

    async def _get_page(self, path: str, key: str, params: dict[str, Any] | None, cast: Any, limit: int = 20) -> Page:
        return _page(await self._send("GET", path, params=_page_params(params, limit)), key, cast)

    def _paginate(self, path: str, key: str, params: dict[str, Any] | None, cast: Any, limit: int = 100) -> AsyncPager:
        return AsyncPager(self, path, key, params, cast, limit)

    @asynccontextmanager
    async def _open_stream(
        self, path: str, last_event_id: str | None, read_timeout: float
    ) -> AsyncIterator[httpx.Response]:
        await self._ensure_auth()
        headers = {**self._credentials.headers(), "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        async with self._http.stream("GET", self._url(path), headers=headers, timeout=timeout) as response:
            if not response.is_success:
                await response.aread()
                raise error_from_response(response)
            yield response

    async def _sse(
        self,
        path: str,
        last_event_id: str | None = None,
        max_reconnects: int = 10,
        timeout: float | None = None,
        *,
        end_event: str = "end",
    ) -> AsyncIterator[StreamEvent]:
        cursor, failures, refreshed = Resume(last_id=last_event_id), 0, False
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                async with self._open_stream(path, cursor.last_id, _read_timeout(deadline, path)) as response:
                    parser = SSEParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None and cursor.accept(event):
                            failures = 0
                            yield event
                            if event.event == end_event:
                                return
            except AuthenticationError:
                if refreshed or not self._credentials.uses_login:
                    raise
                refreshed = True
                await self._refresh(self._credentials.access_token)
                continue
            except httpx.ReadTimeout:
                await asyncio.sleep(0)
                continue
            except _STREAM_DROPS:
                pass
            except OrchestratorError as exc:
                if exc.status is None or exc.status < 500:
                    raise
            failures += 1
            if failures > max_reconnects:
                raise APIConnectionError(f"stream {path} dropped {failures} times in a row")
            await asyncio.sleep(min(self._delay(failures - 1), 5.0))

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncPager:
    """Every item of a list across pages: `async for item in pager`, or `await pager` for them all as a
    list."""

    def __init__(
        self, client: AsyncClient, path: str, key: str, params: dict[str, Any] | None, cast: Any, limit: int
    ) -> None:
        self._client, self._path, self._key, self._cast = client, path, key, cast
        self._query = _page_params(params, limit)

    async def __aiter__(self) -> AsyncIterator[Any]:
        query = dict(self._query)
        number, seen = int(query.pop("page", 1)), set()
        while True:
            body = await self._client._send("GET", self._path, params={**query, "page": number})
            page = _page(body, self._key, self._cast)
            for item in page:
                ident = item.get("id") if hasattr(item, "get") else None
                if ident is not None:
                    if ident in seen:
                        continue
                    seen.add(ident)
                yield item
            if not page.has_next or not page:
                return
            number += 1

    async def _all(self) -> list[Any]:
        return [item async for item in self]

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self._all().__await__()


def _retry_safe(method: str, keyed: bool) -> bool:
    """Whether a request may be sent again after it may have reached the server: an idempotent method, or
    one carrying an idempotency key."""
    return method in IDEMPOTENT or keyed
