"""The REST edge: route registry, auth, rate limits, body limits, errors, request ids, audit.

Every ``/v1.0`` route is declared through :meth:`Api.route`, which records a :class:`RouteSpec`;
the OpenAPI document is generated from those records, so it lists exactly the served routes.
Order per request: request id, per-IP bucket, authentication (401), per-customer bucket (429),
role (403), path ids (404), body (413/400), handler. Another customer's resource is 404, never 403.
Writes and denials leave an audit row; logs are structured JSON carrying ``request_id``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from pydantic import BaseModel, ValidationError
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from control.auth import AuthError, Principal, Role, authenticate
from control.bridge import BridgeClosed
from control.client_addr import client_address
from control.db import DatabaseError
from control.http_drain import DrainBeforeReuse
from control.ratelimit import TokenBuckets, retry_after_header
from control.schemas import PATTERN_MEANINGS, UNION_TAGS
from control.services import Services
from control.validation import field_errors
from proto import safe_json

log = logging.getLogger(__name__)
_ID_PARAM = re.compile(r"<(\w+)>")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.headers = headers or {}


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def _json_error(exc: safe_json.JsonInputError) -> ApiError:
    if exc.reason == "too_large":
        return ApiError(413, "body_too_large", "request body too large")
    if exc.reason == "too_deep":
        return ApiError(
            400,
            "json_too_deep",
            f"request body nests deeper than {safe_json.DEFAULT_MAX_DEPTH} levels",
        )
    return ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str  # Quart style: /v1.0/calls/<call_id>
    summary: str
    role: Role
    body: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    status: int = 200
    body_optional: bool = False  # no body at all reads as ``{}``

    @property
    def openapi_path(self) -> str:
        return _ID_PARAM.sub(r"{\1}", self.path)

    @property
    def path_params(self) -> list[str]:
        return _ID_PARAM.findall(self.path)


@dataclass(slots=True)
class Ctx:
    principal: Principal
    body: Any
    args: dict[str, str] = field(default_factory=dict)


Handler = Callable[..., Awaitable[Any]]


class Api:
    def __init__(self, app: QuartTrio, services: Services) -> None:
        self.app = app
        self.services = services
        self.specs: list[RouteSpec] = []
        cfg = services.cfg
        self.ip_buckets = TokenBuckets(cfg.rate_per_s, cfg.rate_burst)
        self.customer_buckets = TokenBuckets(cfg.rate_per_s, cfg.rate_burst)
        app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
        # Quart's documented way to add ASGI middleware: keep-alive after an early answer.
        app.asgi_app = DrainBeforeReuse(app.asgi_app)  # type: ignore[method-assign]
        app.before_request(self._before)
        app.after_request(self._after)
        app.register_error_handler(ApiError, self._api_error)
        app.register_error_handler(HTTPException, self._http_error)
        app.register_error_handler(DatabaseError, self._storage_error)
        app.register_error_handler(BridgeClosed, self._storage_error)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        role: Role = "agent_user",
        body: type[BaseModel] | None = None,
        query: tuple[str, ...] = (),
        status: int = 200,
        body_optional: bool = False,
    ) -> Callable[[Handler], Handler]:
        spec = RouteSpec(method, path, summary, role, body, query, status, body_optional)
        self.specs.append(spec)

        def register(fn: Handler) -> Handler:
            async def view(**params: str) -> Response:
                principal: Principal = g.principal
                if not principal.allows(spec.role):
                    raise ApiError(403, "forbidden", f"role {principal.role} may not do this")
                for name, value in params.items():
                    if name.endswith("id") and not _UUID.match(value):
                        raise not_found()
                parsed = await self._parse_body(spec) if spec.body else None
                ctx = Ctx(principal, parsed, {k: request.args.get(k, "") for k in spec.query})
                result = await fn(ctx, **params)
                if isinstance(result, Response):  # a file (a call's recording), not JSON
                    return result
                return Response(
                    json.dumps(result, default=str),
                    status=spec.status,
                    content_type="application/json",
                )

            self.app.add_url_rule(path, f"{method} {path}", view, methods=[method])
            return fn

        return register

    async def _parse_body(self, spec: RouteSpec) -> BaseModel:
        model = spec.body
        assert model is not None
        raw = await request.get_data(cache=False)
        if spec.body_optional and raw.strip() in (b"", b"null"):  # no body, or JSON's none
            raw = b"{}"
        try:
            data = safe_json.loads(raw, max_chars=self.services.cfg.max_body_bytes)
        except safe_json.JsonInputError as exc:
            raise _json_error(exc) from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", "request body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            fields = field_errors(exc, model, UNION_TAGS, PATTERN_MEANINGS)
            raise ApiError(
                400, "invalid_request", "request body failed validation", fields
            ) from exc

    # -- middleware -----------------------------------------------------------------------------
    async def _before(self) -> None:
        rid = request.headers.get("X-Request-ID", "")
        g.request_id = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        g.started = time.perf_counter()
        g.principal = None
        g.client_addr = self.client_addr(request.remote_addr or "", request.headers)
        if not request.path.startswith("/v1.0/") or request.path == "/v1.0/ws":
            return
        now_s = trio.current_time()
        wait_s = self.ip_buckets.take(f"ip:{g.client_addr}", now_s)
        if wait_s:
            raise ApiError(
                429,
                "rate_limited",
                "too many requests",
                headers={"Retry-After": retry_after_header(wait_s)},
            )
        g.principal = await self.principal(request.headers.get("Authorization", ""))
        wait_s = self.customer_buckets.take(f"customer:{g.principal.customer_id}", now_s)
        if wait_s:
            raise ApiError(
                429,
                "rate_limited",
                "too many requests for this customer",
                headers={"Retry-After": retry_after_header(wait_s)},
            )

    def client_addr(self, peer: str, headers: Headers) -> str:
        """The client's address: ``peer``, or the one a trusted proxy names (client_addr.py)."""
        return client_address(
            peer,
            self.services.cfg.trusted_proxies,
            headers.getlist("Forwarded"),
            headers.getlist("X-Forwarded-For"),
        )

    async def principal(self, header: str) -> Principal:
        try:
            return await authenticate(header, self.services.store, self.services.cfg.jwt_secret)
        except AuthError as exc:
            raise ApiError(
                401, "unauthorized", str(exc), headers={"WWW-Authenticate": "AccessKey, Bearer"}
            ) from exc

    async def _after(self, response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        started = g.get("started")
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if started is not None:
            self.services.http_latency.labels(
                request.method, rule, str(response.status_code)
            ).observe(time.perf_counter() - started)
        is_write = request.method in ("POST", "PUT", "PATCH", "DELETE")
        denied = response.status_code in (401, 403, 404, 429)
        if request.path.startswith("/v1.0/") and (is_write or denied):
            await self._audit(response.status_code)
        log.info(
            "http",
            extra={
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "client": g.get("client_addr"),
            },
        )
        return response

    async def _audit(self, status_code: int) -> None:
        principal: Principal | None = g.get("principal")
        try:
            with trio.CancelScope(shield=True):  # a client hang-up must not lose the audit row
                await self.services.store.insert(
                    "audits",
                    {
                        "customer_id": principal.customer_id if principal else "",
                        "actor": principal.actor if principal else "anonymous",
                        "action": request.method,
                        "path": request.path[:255],
                        "status_code": status_code,
                        "request_id": g.get("request_id", ""),
                        "remote_addr": str(g.get("client_addr", ""))[:64],
                    },
                )
        except (DatabaseError, BridgeClosed) as exc:
            log.error(
                "audit row lost",
                extra={"request_id": g.get("request_id"), "status": status_code, "error": str(exc)},
            )

    async def _api_error(self, exc: ApiError) -> Response:
        body: dict[str, Any] = {
            "error": exc.code,
            "message": exc.message,
            "request_id": g.get("request_id", ""),
        }
        if exc.fields:
            body["fields"] = exc.fields
        return Response(
            json.dumps(body),
            status=exc.status,
            content_type="application/json",
            headers=exc.headers,
        )

    async def _storage_error(self, exc: Exception) -> Response:
        log.error(
            "storage unavailable", extra={"request_id": g.get("request_id"), "error": str(exc)}
        )
        return await self._api_error(
            ApiError(503, "unavailable", "storage unavailable, retry", headers={"Retry-After": "1"})
        )

    async def _http_error(self, exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
            400: "bad_request",
        }.get(status, "http_error")
        return await self._api_error(ApiError(status, code, exc.description or code))
