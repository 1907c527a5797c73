"""Prometheus metrics (on an injected registry) and the /metrics /healthz /readyz server.

The metric names are a public contract: the Grafana dashboard and the alert rules
in the Helm chart use them (docs/metrics.md describes each one).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from connector import __version__
from connector.jobitems import UNAVAILABLE_REASONS
from connector.jobs import JOB_OUTCOMES
from connector.telemetry_http import HttpServer

P = "gameball_connector_"


class Metrics:
    """Every metric the connector exports, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = self.registry = registry
        self.records_consumed = Counter(
            P + "records_consumed", "Records read from Kafka.", ["topic"], registry=r
        )
        self.records_skipped = Counter(
            P + "records_skipped",
            "Records that produced no event on purpose.",
            ["topic", "reason"],
            registry=r,
        )
        self.records_failed = Counter(
            P + "records_failed",
            "Records that could not be decoded or mapped.",
            ["topic", "stage", "reason"],
            registry=r,
        )
        self.events_accepted = Counter(
            P + "events_accepted", "Events Gameball accepted.", ["endpoint"], registry=r
        )
        self.requests = Counter(
            P + "requests",
            "Requests to Gameball by HTTP status (error = no answer).",
            ["endpoint", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            P + "request_duration_seconds",
            "Time of one Gameball request.",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.batch_items = Histogram(
            P + "batch_items",
            "Items per request.",
            buckets=(1, 10, 50, 100, 250, 500, 750, 1000),
            registry=r,
        )
        self.retries = Counter(
            P + "retries", "Requests sent again, by reason.", ["endpoint", "reason"], registry=r
        )
        self.possible_duplicates = Counter(
            P + "possible_duplicates",
            "Events that may reach Gameball twice: re-sent after an answer was lost, or"
            " accepted but not committed when their partition was revoked or lost.",
            registry=r,
        )
        self.inflight = Gauge(P + "inflight_requests", "Requests under way.", registry=r)
        self.resend_exposure = Gauge(
            P + "resend_exposure_events",
            "Events a crash now would send again: in flight, or accepted and not covered"
            " by a commit the broker confirmed (bound: batch.max_resend_events).",
            registry=r,
        )
        self.resend_overruns = Counter(
            P + "resend_bound_overruns",
            "Batches cut past batch.max_resend_events to unblock the oldest records (a"
            " record with more events than the reserve).",
            registry=r,
        )
        self.rate_limit_delay = Counter(
            P + "rate_limit_delay_seconds",
            "Time sends waited for the client-side rate limiter.",
            registry=r,
        )
        self.dead_letters = Counter(
            P + "dead_letter_records",
            "Records written to the dead-letter topic.",
            ["topic", "reason"],
            registry=r,
        )
        self.dead_letter_pending = Gauge(
            P + "dead_letter_pending", "Dead-letter copies not yet acknowledged.", registry=r
        )
        self.dead_letter_failing = Gauge(
            P + "dead_letter_failing",
            "Dead-letter copies whose last write failed (tried again with backoff).",
            registry=r,
        )
        self.dead_letter_errors = Counter(
            P + "dead_letter_errors",
            "Failed dead-letter writes, by error (each is tried again).",
            ["reason"],
            registry=r,
        )
        self.dead_letter_replaced = Counter(
            P + "dead_letter_replaced",
            "Dead-letter copies written with their value replaced by a reference (too large, "
            "or a rejected event's record could not be re-read).",
            registry=r,
        )
        self.records_dropped = Counter(
            P + "records_dropped",
            "Records that could not be delivered and were dropped (dead_letter.on_error: drop).",
            ["topic", "stage", "reason"],
            registry=r,
        )
        self.records_halted = Gauge(
            P + "records_halted",
            "Partitions held at a bad record (dead_letter.on_error: stop).",
            registry=r,
        )
        self.commits = Counter(P + "commits", "Offset commits by result.", ["result"], registry=r)
        self.committed_offset = Gauge(
            P + "committed_offset",
            "Last committed offset (next to read).",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            P + "consumer_lag",
            "Consumer lag from librdkafka statistics.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            P + "assigned_partitions", "Partitions assigned to this replica.", registry=r
        )
        self.rebalances = Counter(
            P + "rebalances", "Rebalance callbacks by kind.", ["kind"], registry=r
        )
        self.paused_partitions = Gauge(
            P + "paused_partitions", "Partitions paused for backpressure.", registry=r
        )
        self.end_to_end = Histogram(
            P + "end_to_end_seconds",
            "Record timestamp to acceptance, for the oldest record of each accepted request.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=r,
        )
        self.jobs = Counter(P + "jobs", "Batch jobs by final status.", ["status"], registry=r)
        for status in JOB_OUTCOMES:
            self.jobs.labels(status)  # present from the start: alerts see the first failure
        self.job_items_failed = Counter(
            P + "job_items_failed", "Items a batch job reported as failed.", registry=r
        )
        self.job_records_unavailable = Counter(
            P + "job_records_unavailable",
            "Failed job items whose record could not be re-read: dead-lettered as a reference.",
            ["reason"],
            registry=r,
        )
        for reason in UNAVAILABLE_REASONS:
            self.job_records_unavailable.labels(reason)
        self.ready = Gauge(P + "ready", "1 when the connector is ready.", registry=r)
        self.build_info = Gauge(
            P + "build_info", "Constant 1, labelled with the version.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)

    def possible_duplicates_total(self) -> float:
        """For the pipeline's closing log line."""
        return self.registry.get_sample_value(P + "possible_duplicates_total") or 0.0


class Health:
    """Liveness and readiness, updated by the pipeline, read by the HTTP server."""

    def __init__(
        self,
        liveness_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        retrying_timeout: float = 0.0,
    ) -> None:
        self._timeout = liveness_timeout
        self._clock = clock
        self._beat = clock()
        self.started = False
        self.broker_reachable = True
        self.auth_failing = False
        self.stopping = False
        # Why delivery is held (dead-letter copies failing, a partition stopped at a bad
        # record); set by the pipeline's bad-record handling, None when nothing is held.
        self.blocked: str | None = None
        self.registry_unreachable = False
        # Not ready once Gameball has answered only retryable failures this long (0: off).
        self._retrying_timeout = retrying_timeout
        self._retrying_since: float | None = None

    def beat(self) -> None:
        """Called by the poll loop on every turn."""
        self._beat = self._clock()

    def gameball_answered(self) -> None:
        """Sender threads: Gameball took or judged a request (anything but a retryable
        failure): it is delivering."""
        self._retrying_since = None

    def gameball_retrying(self) -> None:
        """Sender threads: a retryable failure (no answer, 408, 429, 5xx)."""
        if self._retrying_since is None:
            self._retrying_since = self._clock()

    def live(self) -> tuple[bool, str]:
        age = self._clock() - self._beat
        if age > self._timeout:
            return False, f"poll loop has not run for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting"
        if self.stopping:
            return False, "shutting down"
        if self.auth_failing:
            return False, "Gameball rejects the credentials"
        since = self._retrying_since
        if self._retrying_timeout and since is not None:
            age = self._clock() - since
            if age > self._retrying_timeout:
                return False, f"Gameball has answered only retryable failures for {age:.0f}s"
        if not self.broker_reachable:
            return False, "no Kafka broker reachable"
        if self.blocked is not None:
            return False, self.blocked
        if self.registry_unreachable:
            return False, "schema registry unreachable (records held)"
        return True, "ok"


class TelemetryServer:
    """Serves /metrics, /healthz and /readyz (connector/telemetry_http.py: the HTTP side,
    hardened against idle, slow and vanishing clients)."""

    def __init__(
        self,
        host: str,
        port: int,
        health: Health,
        metrics: Metrics,
        timeout: float = 10.0,
        max_connections: int = 128,
    ) -> None:
        registry = metrics.registry

        def route(path: str) -> tuple[int, bytes, str]:
            if path == "/metrics":
                ok, _ = health.ready()
                metrics.ready.set(1 if ok else 0)
                return 200, generate_latest(registry), CONTENT_TYPE_LATEST
            if path in ("/healthz", "/readyz"):
                ok, why = health.live() if path == "/healthz" else health.ready()
                return (200 if ok else 503), (why + "\n").encode(), "text/plain"
            return 404, b"not found\n", "text/plain"

        self._server = HttpServer(host, port, route, timeout, max_connections)
        self.port = self._server.port

    @property
    def connections(self) -> int:
        """Connections open now."""
        return self._server.connections

    def start(self) -> TelemetryServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
