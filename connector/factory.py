"""Builds the pipeline: every collaborator of the loop, wired once, passed in as `Parts`.

The CLI calls `build_pipeline`; so do the unit tests and `bench.hotpath`, which then
drive the pipeline's public steps. The order below follows the dependencies: the core
and the sender side first, then the Kafka side, whose callbacks go to the rebalance and
commit handlers, and last the pipeline, whose drain the rebalance borrows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from connector.badrecords import BadRecords
from connector.commits import Commits
from connector.config import Settings
from connector.core import CoreSettings, DeliveryCore
from connector.deadletter import DeadLetters
from connector.event_json import encode_items
from connector.failures import Failures
from connector.flow import Flow
from connector.gameball import GameballClient
from connector.ingest import Ingest, MapperLike
from connector.job_letters import job_tracking
from connector.kafka_events import KafkaEvents
from connector.pipeline import Parts, Pipeline
from connector.quota_share import QuotaShare
from connector.ratelimit import RateLimiter, Window
from connector.rebalance import Rebalance
from connector.registry_outage import RegistryOutage
from connector.sender import Sender
from connector.sender_reports import SenderReports
from connector.senders import Senders
from connector.shutdown import ShutdownBudget
from connector.source import Partitions, Source
from connector.telemetry import Health, Metrics


def core_settings(settings: Settings) -> CoreSettings:
    """The delivery rules' numbers from `batch.*` (one event per request on `events`)."""
    b = settings.batch
    max_items = b.max_items if settings.gameball.endpoint == "batch" else 1
    return CoreSettings(max_items, b.linger_ms / 1000, b.max_in_flight, b.max_buffered_events,
                        b.resend_limit)


def rate_limiter(settings: Settings) -> RateLimiter | None:
    """The two-window limiter of `gameball.rate_limit`, or None when it is off."""
    rl = settings.gameball.rate_limit
    if not rl.enabled:
        return None
    return RateLimiter([Window(rl.per_second, 1.0), Window(rl.per_30_seconds, 30.0)],
                       rl.margin_ms / 1000)


def build_pipeline(
    settings: Settings,
    mapper: MapperLike,
    client: GameballClient,
    metrics: Metrics,
    health: Health,
    dead_letters: DeadLetters | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    source_type: type[Source] = Source,
) -> Pipeline:
    """Everything `Pipeline.run` needs; no connection is opened before `run`.
    `source_type`: tests pass a `Source` whose commits are recorded."""
    core = DeliveryCore(core_settings(settings))
    limiter = rate_limiter(settings)
    abandoned = threading.Event()
    reports = SenderReports(metrics, health, settings.gameball.endpoint)
    sender = Sender(client, limiter, settings.gameball.retry, reports, abandoned, clock,
                    settings.batch.max_bytes, encode_items)  # rows carry their events' JSON
    senders = Senders(sender, settings.batch.max_in_flight, abandoned)
    bad = BadRecords(settings, metrics, health, dead_letters)
    job_letters, jobs = job_tracking(settings, settings.gameball.endpoint == "batch",
                                     client.job_status, bad, metrics)
    failures = Failures(bad, metrics, job_letters)
    built: list[Pipeline] = []  # the rebalance drains through the pipeline built last

    def drain(parts: Partitions) -> bool:
        return built[0].drain_revoked(parts)

    # Source callbacks are bound late: the handlers need the source themselves.
    source = source_type(
        settings,
        on_assign=lambda parts: rebalance.on_assign(parts),
        on_revoke=lambda parts, lost: rebalance.on_revoke(parts, lost),
        on_stats=lambda raw: kafka_events.on_stats(raw),
        on_error=lambda err: kafka_events.on_error(err),
        on_commit=lambda err, parts: commits.on_commit(err, parts),
    )
    kafka_events = KafkaEvents(source, health, metrics)
    commits = Commits(core, source, metrics)
    registry = settings.schema_registry
    outage = RegistryOutage(
        source, health, metrics.registry,
        registry.retry_initial_backoff_ms if registry else 500,
        registry.retry_max_backoff_ms if registry else 30_000,
    )
    flow = Flow(settings, core, source, bad, outage, metrics)
    share = QuotaShare(limiter, source, metrics, clock)
    rebalance = Rebalance(core, source, commits, flow, share, bad, outage, metrics, health,
                          drain)
    ingest = Ingest(mapper, core, bad, outage, failures, metrics, kafka_events.on_error, clock)
    budget = ShutdownBudget(settings.shutdown.drain_seconds, settings.shutdown.close_seconds)
    pipeline = Pipeline(Parts(
        settings=settings, client=client, metrics=metrics, health=health, core=core,
        ingest=ingest, source=source, senders=senders, reports=reports, jobs=jobs,
        job_letters=job_letters, bad=bad,
        failures=failures, outage=outage, commits=commits, flow=flow, share=share,
        kafka_events=kafka_events, rebalance=rebalance, budget=budget, clock=clock,
    ))
    built.append(pipeline)
    return pipeline
