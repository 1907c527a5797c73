"""`gameball-connector`: run, validate, map, sandbox, demo.

Builds the objects (config, mapper, client, metrics, pipeline), sets up logging and
signals, and turns errors into exit codes: 0 done, 1 runtime failure, 2 bad config
or usage. Config problems are printed with their key paths, never with secrets.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector

from connector import __version__, demo, dryrun
from connector.config import load_checked
from connector.records import ConfigError
from connector.sandbox import command

if TYPE_CHECKING:
    from connector.shutdown import ShutdownBudget

log = logging.getLogger("connector")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        settings, _mapper = load_checked(args.config)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return EXIT_CONFIG
    topics = ", ".join(settings.subscription())
    print(f"{args.config}: valid")
    print(
        f"  kafka: {settings.kafka.bootstrap_servers} group={settings.kafka.group_id} "
        f"topics={topics}"
    )
    print(
        f"  gameball: {settings.gameball.base_url} endpoint={settings.gameball.endpoint} "
        f"api_key=********** secret_key=**********"
    )
    print(
        f"  routes: {len(settings.mappings)}; dead letters: "
        f"{settings.dead_letter.topic or 'off (bad records are logged and counted)'}"
    )
    if args.show:
        import orjson

        print(orjson.dumps(settings.redacted(), option=orjson.OPT_INDENT_2).decode())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from connector.gameball import GameballClient
    from connector.logs import setup_logging
    from connector.pipeline import Pipeline
    from connector.shutdown import ShutdownBudget, flush_and_exit
    from connector.telemetry import Health, Metrics, TelemetryServer
    from connector.telemetry_http import raise_open_file_limit

    try:
        settings, mapper = load_checked(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.logging.level, settings.logging.format, settings.secret_values())

    # Signals go to one thread that waits for them, never to the loop: a loop blocked
    # inside librdkafka would not run a handler, and the shutdown bound must start anyway.
    budget = ShutdownBudget(
        settings.shutdown.drain_seconds, settings.shutdown.close_seconds, watchdog=True
    )
    watch_signals(budget)

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    # process_cpu_seconds_total and process_resident_memory_bytes: what sizing a replica
    # needs (docs/deployment.md); read from /proc, so Linux only.
    ProcessCollector(registry=registry)
    health = Health(
        settings.metrics.liveness_timeout_seconds,
        retrying_timeout=settings.metrics.not_ready_after_retrying_seconds,
    )
    server = None
    if settings.metrics.enabled:
        port = args.metrics_port if args.metrics_port is not None else settings.metrics.port
        raise_open_file_limit()
        server = TelemetryServer(
            settings.metrics.host, port, health, metrics,
            settings.metrics.connection_timeout_seconds, settings.metrics.max_connections,
        ).start()
        log.info(
            "metrics and health served",
            extra={"address": f"http://{settings.metrics.host}:{server.port}/metrics"},
        )
    pool = settings.batch.max_in_flight + settings.gameball.job_tracking.max_concurrent
    client = GameballClient(settings.gameball, pool_size=pool)
    dead_letters = None
    if settings.dead_letter.topic:
        from connector.deadletter import DeadLetters

        dead_letters = DeadLetters(settings)
    pipeline = Pipeline(settings, mapper, client, metrics, health, dead_letters)
    # The hot path makes many short-lived objects and almost no cycles; automatic
    # collections would rescan every event held in windows and tracked jobs. The loop
    # collects on a timer instead (Pipeline.GC_INTERVAL_S; docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    gc.disable()
    code = EXIT_OK
    try:
        pipeline.run(budget.stop, budget)
    except Exception:
        log.exception("connector failed")
        code = EXIT_FAILED
    finally:
        if server is not None:
            server.stop()
    # Leave without the interpreter's exit: it would join a sender thread still inside
    # an HTTP read and destroy librdkafka clients that may block (a stuck close, a
    # dead-letter broker gone). Offsets are committed; logs are flushed here.
    budget.finished()
    flush_and_exit(code)
    return code  # not reached


def watch_signals(budget: ShutdownBudget) -> None:
    """SIGTERM/SIGINT start `budget` from a thread of their own (called by `cmd_run` before
    any other thread exists, so that every later thread inherits the blocked mask)."""
    wanted = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)

    def wait() -> None:
        while True:
            signum = signal.sigwait(wanted)
            if budget.begin():
                log.info(
                    "stopping: draining in-flight requests",
                    extra={"signal": signal.Signals(signum).name,
                           "bound_seconds": budget.bound},
                )

    threading.Thread(target=wait, name="signals", daemon=True).start()


def cmd_map(args: argparse.Namespace) -> int:
    return int(dryrun.run(args))


def cmd_sandbox(args: argparse.Namespace) -> int:
    return int(command.run(args))


def cmd_demo(args: argparse.Namespace) -> int:
    return int(demo.run(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gameball-connector",
        description="Feed customer actions from Kafka topics into Gameball's batch-job API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="consume, map and deliver until SIGTERM/SIGINT")
    p.add_argument("--config", required=True, help="YAML or JSON config file")
    p.add_argument(
        "--metrics-port", type=int, default=None, help="override metrics.port (0 picks a free port)"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a config file without connecting anywhere")
    p.add_argument("--config", required=True, help="YAML or JSON config file")
    p.add_argument("--show", action="store_true", help="print the settings (secrets masked)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("map", help="dry-run the mapping on JSON lines from stdin")
    dryrun.add_arguments(p)
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("sandbox", help="a local Gameball-compatible API (NOT Gameball)")
    command.add_arguments(p)
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("demo", help="broker + sandbox + connector on loopback, live progress")
    demo.add_arguments(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `map ... | head`: the reader went away, which is not a failure. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
