"""The sandbox's endpoints: Gameball's API as its reference describes it, and the
sandbox's own inspection API. NOT Gameball.

Which reference page each behaviour follows is in docs/sandbox.md. Authentication
follows the OpenAPI security of each path (batch, status and stop need both keys,
Send Events the apikey only) and, with High Security Mode, both keys everywhere
(overview--authentication.mdx).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from operator import itemgetter
from typing import Any, ClassVar

import orjson

from connector.sandbox import errors
from connector.sandbox.faults import Faults
from connector.sandbox.httpd import Answer, BaseHandler, Reply, Route, route
from connector.sandbox.jobs import Job, newest_status, older_status, stop_answer
from connector.sandbox.limiter import retry_after_header
from connector.sandbox.validation import validate_batch_body, validate_events_body

_CUSTOMER_ID = itemgetter("customerId")

NOTICE = "Gameball sandbox: a local test double for the Gameball API. This is NOT Gameball."

BATCH_PATH = "/api/v4.0/integrations/batch/events"
EVENTS_PATH = "/api/v4.0/integrations/events"
STATUS_NEWEST = "/api/v4.0/integrations/batches/{id}/status"
STATUS_OLDER = "/api/v4/integrations/batch/{id}"

DEFAULT_API_KEY = "sandbox-api-key"
DEFAULT_SECRET_KEY = "sandbox-secret-key"
STOP_NEWEST = "/api/v4.0/integrations/batches/{id}/stop"


class Handler(BaseHandler):
    """The endpoints; one instance per connection (BaseHandler does the plumbing)."""

    routes: ClassVar[tuple[Route, ...]] = (
        route(BATCH_PATH, {"POST": "_post_batch"}, True, sends=True),
        route(EVENTS_PATH, {"POST": "_post_events"}, True, sends=True),
        route(STATUS_NEWEST, {"GET": "_get_status_newest"}, True),
        route(STOP_NEWEST, {"POST": "_post_stop"}, True),
        route(STATUS_OLDER, {"GET": "_get_status_older", "DELETE": "_delete_job"}, True),
        route("/_sandbox/items", {"GET": "_sandbox_items"}, False),
        route("/_sandbox/stats", {"GET": "_sandbox_stats"}, False),
        route("/_sandbox/faults", {"GET": "_sandbox_get_faults", "PUT": "_sandbox_put_faults",
                                   "POST": "_sandbox_put_faults"}, False),
        route("/_sandbox/reset", {"POST": "_sandbox_reset"}, False),
        route("/", {"GET": "_banner"}, False),
    )

    def _check_auth(self, secret: bool) -> None:
        """Both keys when `secret` (the path's OpenAPI security) or High Security Mode."""
        api_key = self.headers.get("apikey")
        if not api_key:
            raise Answer(errors.api_error(errors.UNAUTHORIZED, "missing apikey header"))
        if not hmac.compare_digest(api_key.encode(), self.srv.api_key):
            raise Answer(errors.api_error(errors.UNAUTHORIZED, "invalid API key"))
        secret_key = self.headers.get("secretkey")
        if not secret and not self.srv.high_security:
            return
        if not secret_key:
            why = "High Security Mode: " if not secret else ""
            raise Answer(errors.api_error(errors.SECRET_KEY_REQUIRED,
                                          f"{why}missing secretkey header"))
        if not hmac.compare_digest(secret_key.encode(), self.srv.secret_key):
            raise Answer(errors.api_error(errors.UNAUTHORIZED, "invalid secret key"))

    def _parse_json(self, body: bytes) -> Any:
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise Answer(errors.api_error(errors.NOT_SUPPORTED,
                                          "Content-Type must be application/json"))
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Answer(errors.api_error(errors.INVALID_PAYLOAD,
                                          f"request body is not valid JSON: {exc}")) from None

    def _post_batch(self, body: bytes, _: str) -> Reply:
        self._check_auth(secret=True)
        obj = self._admit_and_parse(body)
        problem = validate_batch_body(obj)
        if problem is not None:
            raise Answer(problem)
        return self._send(obj["body"], "batch", body)

    def _post_events(self, body: bytes, _: str) -> Reply:
        self._check_auth(secret=False)
        obj = self._admit_and_parse(body)
        problem = validate_events_body(obj)
        if problem is not None:
            raise Answer(problem)
        return self._send([obj], "events", body)

    def _admit_and_parse(self, body: bytes) -> Any:
        state = self.srv.state
        wait, self._arrival = state.admit()
        if wait is not None:
            faults = state.faults
            seconds = faults.retry_after_seconds or retry_after_header(wait)
            raise Answer(errors.http_error(429, f"Too Many Requests: rate limit exceeded, "
                                           f"retry after {seconds} s",
                                           (("Retry-After", str(seconds)),)))
        return self._parse_json(body)

    def _send(self, items: list[dict[str, Any]], endpoint: str,
              raw: bytes) -> Reply:
        """Faults, store and answer for an already valid send request."""
        state = self.srv.state
        faults = state.faults
        customers = list(map(_CUSTOMER_ID, items))
        rejecting = set(faults.reject_customers)
        if rejecting and not rejecting.isdisjoint(customers):
            rejected = next(c for c in customers if c in rejecting)
            state.count("rejected")
            raise Answer(errors.api_error(
                faults.reject_code,
                f"customer {rejected} is refused (sandbox fault reject_customers); "
                "nothing in this request was stored"))
        conflict = state.claim(customers, faults.check_concurrent_customers)
        if conflict is not None:
            raise Answer(errors.api_error(
                errors.CONCURRENT_REQUEST,
                f"Concurrent Request In Progress: customer {conflict} is in another request "
                "being processed"))
        try:
            self._latency()  # customers stay claimed meanwhile, so overlaps are visible
            if state.roll(faults.error_rate):
                state.count("injected_errors")
                raise Answer(errors.injected_error(faults.error_status))
            job_id = state.accept(items, endpoint, self.request_id, faults, raw)
            dropped = state.roll(faults.drop_rate)
        finally:
            state.release(customers)
        if endpoint == "batch":
            payload = orjson.dumps({"jobId": job_id})
        else:
            payload = orjson.dumps({"success": True, "message": "Events processed"})
        return Reply(200, payload, items=len(items), answered=not dropped)

    def _find_job(self, raw_id: str, lookup: Callable[[int], Job | None]) -> Job:
        """The job `raw_id` names, found with `lookup`; 404 (4004 Not Found) otherwise."""
        # isascii: "²".isdigit() is true, but int() refuses it.
        job = lookup(int(raw_id)) if raw_id.isascii() and raw_id.isdigit() else None
        if job is None:
            raise Answer(errors.api_error(errors.NOT_FOUND, f"no batch job {raw_id}"))
        return job

    def _other(self, raw_id: str, lookup: Callable[[int], Job | None]) -> Job:
        """Auth, the "Others" rate-limit bucket (status reads, stop), then the job."""
        self._check_auth(secret=True)
        state = self.srv.state
        wait, self._arrival = state.admit_other()
        if wait is not None:
            seconds = retry_after_header(wait)
            raise Answer(errors.http_error(429, f"Too Many Requests: rate limit exceeded, "
                                           f"retry after {seconds} s",
                                           (("Retry-After", str(seconds)),)))
        return self._find_job(raw_id, lookup)

    def _get_status_newest(self, _: bytes, raw_id: str) -> Reply:
        job = self._other(raw_id, self.srv.state.job)
        return self._ok(newest_status(job, self.srv.state.now()))

    def _post_stop(self, _: bytes, raw_id: str) -> Reply:
        job = self._other(raw_id, self.srv.state.stop_job)
        return self._ok(stop_answer(job, self.srv.state.now()))

    def _get_status_older(self, _: bytes, raw_id: str) -> Reply:
        job = self._other(raw_id, self.srv.state.job)
        return self._ok(older_status(job, self.srv.state.now()))

    def _delete_job(self, _: bytes, raw_id: str) -> Reply:
        job = self._other(raw_id, self.srv.state.stop_job)
        return self._ok(older_status(job, self.srv.state.now()))

    # ---- the sandbox's own inspection API --------------------------------------------

    def _query_int(self, name: str, default: int | None) -> int | None:
        values = self._query.get(name)
        if not values:
            return default
        try:
            value = int(values[0])
        except ValueError:
            raise Answer(errors.api_error(errors.INVALID_VALUE,
                                          f"query parameter {name} must be a whole number")
                         ) from None
        if value < 0:
            raise Answer(errors.api_error(errors.INVALID_VALUE, f"{name} must not be negative"))
        return value

    def _sandbox_items(self, _: bytes, __: str) -> None:
        offset = self._query_int("offset", 0) or 0
        limit = self._query_int("limit", None)
        self._write(200, self.srv.state.items_json(offset, limit))

    def _sandbox_stats(self, _: bytes, __: str) -> None:
        arrivals = self._query.get("arrivals", ["1"])[0].lower() not in ("0", "false", "no")
        self._json(200, self.srv.state.stats(arrivals=arrivals))

    def _sandbox_get_faults(self, _: bytes, __: str) -> None:
        self._json(200, self.srv.state.faults.to_dict())

    def _sandbox_put_faults(self, body: bytes, _: str) -> None:
        try:
            data = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            problem = errors.api_error(errors.INVALID_PAYLOAD, f"faults are not JSON: {exc}")
            raise Answer(problem) from None
        if not isinstance(data, dict):
            raise Answer(errors.api_error(errors.INVALID_PAYLOAD, "faults must be a JSON object"))
        try:
            faults = Faults.from_mapping(data)
        except (TypeError, ValueError) as exc:
            raise Answer(errors.api_error(errors.INVALID_VALUE, str(exc))) from None
        self.srv.state.set_faults(faults)
        self._json(200, faults.to_dict())

    def _sandbox_reset(self, _: bytes, __: str) -> None:
        self.srv.state.reset()
        self._json(200, {"reset": True})

    def _banner(self, _: bytes, __: str) -> None:
        self._json(200, {
            "service": "gameball-sandbox",
            "notice": NOTICE,
            "endpoints": [f"{'/'.join(r.methods)} {r.template}" for r in self.routes if r.api],
            "inspection": ["GET /_sandbox/items", "GET /_sandbox/stats",
                           "GET|PUT /_sandbox/faults", "POST /_sandbox/reset"],
        })
