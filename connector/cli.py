"""`gameball-connector`: run, validate, map, redrive, sandbox, demo.

Builds the objects (config, mapper, client, metrics, pipeline), sets up logging and
signals, and turns errors into exit codes: 0 done, 1 runtime failure, 2 bad config
or usage. Config problems are printed with their key paths, never with secrets.
Every subcommand's module is imported only when that subcommand runs: `run` never
loads the sandbox, the demo or the dry run (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from connector import __version__
from connector.records import ConfigError

if TYPE_CHECKING:
    from connector.config import Settings

if TYPE_CHECKING:
    from connector.shutdown import ShutdownBudget

log = logging.getLogger("connector")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def cmd_validate(args: argparse.Namespace) -> int:
    from connector.config import load_checked

    try:
        settings, _mapper = load_checked(args.config)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return EXIT_CONFIG
    if getattr(args, "registry", False):
        code = _validate_registry(args.config, settings)
        if code != EXIT_OK:
            return code
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
        f"{settings.dead_letter.topic or 'off'} "
        f"(on_error: {settings.dead_letter.policy})"
    )
    gameball = settings.gameball
    if gameball.endpoint == "events" and gameball.secret_key is None:
        print(
            "  warning: gameball.endpoint is 'events' without gameball.secret_key: High "
            "Security Mode accounts will refuse these requests (401, code 1001)"
        )
    if args.show:
        import orjson

        print(orjson.dumps(settings.redacted(), option=orjson.OPT_INDENT_2).decode())
    if args.check_credentials:
        from connector.credentials import check

        result = check(gameball)
        print(f"  credentials: {result.message}")
        return EXIT_OK if result.ok else EXIT_FAILED
    return EXIT_OK


def _validate_registry(config: str, settings: Settings) -> int:
    """`validate --registry`: route paths against the subjects' latest schemas."""
    from connector.records import RegistryUnavailable
    from connector.registry import RegistryDecoders
    from connector.registry_check import check_routes

    if settings.schema_registry is None:
        print(f"{config}: --registry needs a schema_registry section", file=sys.stderr)
        return EXIT_CONFIG
    client = RegistryDecoders(settings.schema_registry).client()
    try:
        problems, notes = check_routes(settings, client)
    except RegistryUnavailable as exc:
        print(f"{config}: schema registry unreachable: {exc.detail}", file=sys.stderr)
        return EXIT_FAILED
    if problems:
        print(ConfigError(problems).report(config), file=sys.stderr)
        return EXIT_CONFIG
    for note in notes:
        print(f"  registry: {note}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, ProcessCollector

    from connector.config import load_checked
    from connector.factory import build_pipeline
    from connector.gameball import GameballClient
    from connector.logs import setup_logging
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
        from connector.deadletter import DeadLetterHooks, DeadLetters

        dead_letters = DeadLetters(settings, DeadLetterHooks(
            failed=lambda reason: metrics.dead_letter_errors.labels(reason).inc(),
            replaced=metrics.dead_letter_replaced.inc,
        ))
        try:
            dead_letters.check_topic()  # a missing topic fails here, not at the first copy
        except ConfigError as exc:
            log.error("invalid configuration", extra={"problems": exc.problems})
            print(str(exc), file=sys.stderr)
            if server is not None:
                server.stop()
            return EXIT_CONFIG
    pipeline = build_pipeline(settings, mapper, client, metrics, health, dead_letters)
    # The hot path makes many short-lived objects and almost no cycles; automatic
    # collections would rescan every event held in windows and tracked jobs. The loop
    # collects on a timer instead (pipeline.GC_INTERVAL_S; docs/benchmarks.md).
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

    def stop(signum: int) -> None:
        if budget.begin():
            log.info(
                "stopping: draining in-flight requests",
                extra={"signal": signal.Signals(signum).name, "bound_seconds": budget.bound},
            )

    # A thread that existed before this call (an embedding program's) does not block them:
    # a signal delivered there runs this handler instead of the default exit (exit -15).
    for signum in wanted:
        signal.signal(signum, lambda received, _frame: stop(received))
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)

    def wait() -> None:
        while True:
            stop(signal.sigwait(wanted))

    threading.Thread(target=wait, name="signals", daemon=True).start()


# Subcommands living in their own module: name -> (help, module with
# `add_arguments(parser)` and `run(args) -> int`). Imported only when chosen.
LAZY_COMMANDS = {
    "map": ("dry-run the mapping on JSON lines from stdin", "connector.dryrun"),
    "redrive": ("send dead-lettered records again through the current mapping",
                "connector.redrive"),
    "sandbox": ("a local Gameball-compatible API (NOT Gameball)", "connector.sandbox.command"),
    "demo": ("broker + sandbox + connector on loopback, live progress", "connector.demo"),
}


def _lazy_run(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).run(args))

    return run


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (`command` given) one whose other lazy subcommands are
    listed without their options, so their modules are not imported."""
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
    p.add_argument(
        "--check-credentials",
        action="store_true",
        help="make one harmless authenticated request to gameball.base_url and report "
        "whether the keys are accepted (exit 1 if not); the only option that connects",
    )
    p.add_argument(
        "--registry",
        action="store_true",
        help="also check every path a route reads against the schema registry's latest "
        "schema of its topic (connects to schema_registry.url)",
    )
    p.set_defaults(func=cmd_validate)

    for name, (text, module) in LAZY_COMMANDS.items():
        p = sub.add_parser(name, help=text)
        if command is None or command == name:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(func=_lazy_run(module))
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand in `argv`: the top level has only options before it."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_chosen(words) or "").parse_args(words)
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
