"""`gameball-connector sandbox` (and `python -m connector.sandbox`): serve until a signal.

connector/cli.py calls `add_arguments` on its subparser and `run` with the parsed
arguments. Exit codes: 0 after SIGTERM/SIGINT, 2 for bad fault values, 1 if the
port cannot be bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from types import FrameType
from typing import Any

from connector.sandbox.faults import Faults
from connector.sandbox.server import (
    DEFAULT_API_KEY,
    DEFAULT_SECRET_KEY,
    NOTICE,
    SandboxServer,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's flags to `parser` (the CLI's `sandbox` subcommand)."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port, 0 for any free one "
                        "(default: %(default)s)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY,
                        help="the apikey header value to accept (default: %(default)s)")
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY,
                        help="the secretkey header value to accept (default: %(default)s)")
    parser.add_argument("--high-security", action="store_true",
                        help="High Security Mode: every request needs both apikey and secretkey "
                        "(else 401, code 1001)")
    parser.add_argument("--store", metavar="FILE.jsonl", default=None,
                        help="append every accepted item to this JSON-lines file (and load it "
                        "at start)")
    faults = parser.add_argument_group("faults (all off by default)")
    faults.add_argument("--error-rate", type=float, default=0.0, metavar="P",
                        help="share of send requests answered with --error-status, nothing stored")
    faults.add_argument("--error-status", type=int, default=500, metavar="CODE",
                        help="HTTP status of injected errors (default: %(default)s)")
    faults.add_argument("--latency-ms", type=int, default=0, metavar="MS",
                        help="delay before every API answer")
    faults.add_argument("--drop-rate", type=float, default=0.0, metavar="P",
                        help="share of send requests stored, then closed without an answer")
    faults.add_argument("--rate-per-second", type=int, default=None, metavar="N",
                        help="at most N send requests per sliding second, then 429")
    faults.add_argument("--rate-per-30-seconds", type=int, default=None, metavar="N",
                        help="at most N send requests per sliding 30 s, then 429")
    faults.add_argument("--status-rate-per-second", type=int, default=None, metavar="N",
                        help="at most N status reads and stops per sliding second, then 429 "
                        "(Gameball's Others bucket: 30)")
    faults.add_argument("--status-rate-per-30-seconds", type=int, default=None, metavar="N",
                        help="at most N status reads and stops per sliding 30 s, then 429 "
                        "(Gameball's Others bucket: 360)")
    faults.add_argument("--retry-after-seconds", type=int, default=None, metavar="S",
                        help="fixed Retry-After on 429 (default: until the window has room)")
    faults.add_argument("--stall-seconds", type=float, default=0.0, metavar="S",
                        help="hold every API request this long after start, then answer")
    faults.add_argument("--reject-customer", action="append", default=[], metavar="ID",
                        dest="reject_customers",
                        help="answer --reject-code to any send request with this customer "
                        "(repeatable)")
    faults.add_argument("--reject-code", type=int, default=2000, metavar="CODE",
                        help="Gameball error code for --reject-customer, answered with the "
                        "reference's status for it (default: %(default)s, 412)")
    faults.add_argument("--job-fail-customer", action="append", default=[], metavar="ID",
                        dest="job_fail_customers",
                        help="accept, but report this customer's items failed in the job "
                        "status (repeatable)")
    faults.add_argument("--job-delay-ms", type=int, default=0, metavar="MS",
                        help="a batch job completes this long after acceptance")
    faults.add_argument("--no-concurrency-check", action="store_false",
                        dest="check_concurrent_customers",
                        help="do not answer 422/2001 when a customer is in two requests at once")
    faults.add_argument("--seed", type=int, default=None, help="seed for the fault dice")


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The Faults the flags ask for; ValueError names a bad value.

    Every fault flag's argparse dest is the Faults field's name (add_arguments).
    """
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Faults):
        value = getattr(args, field.name)
        values[field.name] = list(value) if isinstance(value, list) else value  # own copy
    return Faults(**values)


def _active(faults: Faults) -> str:
    default = Faults()
    changed = [f"{name}={value}" for name, value in faults.to_dict().items()
               if value != getattr(default, name)]
    return ", ".join(changed) or "none"


def run(args: argparse.Namespace) -> int:
    """Serve the sandbox until SIGTERM or SIGINT; print a banner and a short summary."""
    try:
        faults = faults_from_args(args)
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    server = SandboxServer(host=args.host, port=args.port, api_key=args.api_key,
                           secret_key=args.secret_key, store_path=args.store, faults=faults,
                           high_security=args.high_security)
    try:
        server.start()
    except OSError as exc:
        print(f"sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    # Only the default keys are printed: a key chosen by the user may be a real one.
    api_key = args.api_key if args.api_key == DEFAULT_API_KEY else "(as given)"
    secret_key = args.secret_key if args.secret_key == DEFAULT_SECRET_KEY else "(as given)"
    print(f"*** {NOTICE} ***\n"
          f"sandbox listening on {server.url}\n"
          f"  accepts apikey={api_key} secretkey={secret_key}"
          f"{' (High Security Mode: both on every request)' if args.high_security else ''}\n"
          f"  faults: {_active(faults)}\n"
          f"  store: {args.store or '(memory only)'}\n"
          f"  inspect: {server.url}/_sandbox/items  {server.url}/_sandbox/stats\n"
          "  stop with Ctrl-C or SIGTERM", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stats = server.stats(arrivals=False)
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"sandbox stopped: {stats['requests_total']} requests, "
          f"{stats['items_accepted']} items accepted, {stats['rate_limited']} sends and "
          f"{stats['status_rate_limited']} status reads answered 429, "
          f"{stats['dropped']} answers dropped", flush=True)
    return 0
