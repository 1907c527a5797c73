"""A Confluent-compatible Schema Registry stand-in for the tests (a test peer, NOT a product).

No registry server can be installed on the test machines (Confluent's and Apicurio's are
JVM services; Karapace is not on PyPI), so the tests run this: the subset of the REST API
that confluent-kafka's `SchemaRegistryClient` calls to serialize and deserialize
(Confluent's "Schema Registry API Reference", docs.confluent.io/platform/current/
schema-registry/develop/api.html):

  POST /subjects/{subject}/versions     register -> {"id": n}
  POST /subjects/{subject}              look up a schema under a subject
  GET  /schemas/ids/{id}                schema by id (404, error_code 40403, if unknown)
  GET  /subjects/{subject}/versions/latest | /{version}
  GET  /subjects, /subjects/{subject}/versions

Ids are given in registration order from 1 (a restarted peer given the same schemas in
the same order hands out the same ids, as a real registry's stored ids would be). Schemas
are stored and returned as registered: the Protobuf serializer registers a base64
FileDescriptorProto, which is what its deserializer asks for with `format=serialized`.
With `user_info` set, every request needs that HTTP basic auth (401 otherwise). `fail_with`
makes every request answer that status (an unhealthy registry).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


class RegistryPeer:
    """Serves on 127.0.0.1 from a daemon thread; `start`/`stop` may be repeated."""

    def __init__(self, port: int = 0, user_info: str | None = None) -> None:
        self.port = port
        self.user_info = user_info
        self.fail_with: int | None = None
        self.requests = 0
        self._lock = threading.Lock()
        self._schemas: list[dict[str, Any]] = []  # index = id - 1
        self._subjects: dict[str, list[int]] = {}  # subject -> ids by version
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RegistryPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer.handle(self, "GET")

            def do_POST(self) -> None:
                peer.handle(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop answering: connections are refused until `start` (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def forget(self) -> None:
        """Drop every schema (a registry restarted without its storage)."""
        with self._lock:
            self._schemas.clear()
            self._subjects.clear()

    # --- REST ---------------------------------------------------------------------------

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests += 1
        if self.fail_with is not None:
            return _send(req, self.fail_with, {"error_code": self.fail_with, "message": "down"})
        if self.user_info is not None:
            expected = "Basic " + base64.b64encode(self.user_info.encode()).decode()
            if req.headers.get("Authorization") != expected:
                return _send(req, 401, {"error_code": 401, "message": "Unauthorized"})
        parts = [unquote(p) for p in urlsplit(req.path).path.strip("/").split("/")]
        body: dict[str, Any] = {}
        if method == "POST":
            length = int(req.headers.get("Content-Length") or 0)
            body = json.loads(req.rfile.read(length) or b"{}")
        with self._lock:
            status, answer = self._route(method, parts, body)
        _send(req, status, answer)

    def _route(self, method: str, parts: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET" and parts[:2] == ["schemas", "ids"] and len(parts) == 3:
            sid = int(parts[2])
            if not 1 <= sid <= len(self._schemas):
                return 404, {"error_code": 40403, "message": "Schema not found"}
            s = self._schemas[sid - 1]
            return 200, {k: v for k, v in s.items() if k != "id"}
        if parts == ["subjects"] and method == "GET":
            return 200, sorted(self._subjects)
        if parts and parts[0] == "subjects" and len(parts) >= 2:
            subject = parts[1]
            if method == "POST" and len(parts) == 3 and parts[2] == "versions":
                return 200, {"id": self._register(subject, body)}
            versions = self._subjects.get(subject)
            if versions is None:
                return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
            if method == "POST" and len(parts) == 2:
                sid = self._find(body)
                if sid is None or sid not in versions:
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, self._version(subject, versions.index(sid) + 1)
            if method == "GET" and len(parts) == 3 and parts[2] == "versions":
                return 200, list(range(1, len(versions) + 1))
            if method == "GET" and len(parts) == 4 and parts[2] == "versions":
                n = len(versions) if parts[3] == "latest" else int(parts[3])
                if not 1 <= n <= len(versions):
                    return 404, {"error_code": 40402, "message": "Version not found."}
                return 200, self._version(subject, n)
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _find(self, body: dict[str, Any]) -> int | None:
        kind = body.get("schemaType", "AVRO")
        for s in self._schemas:
            if s["schema"] == body.get("schema") and s["schemaType"] == kind:
                return int(s["id"])
        return None

    def _register(self, subject: str, body: dict[str, Any]) -> int:
        sid = self._find(body)
        if sid is None:
            sid = len(self._schemas) + 1
            self._schemas.append(
                {
                    "id": sid,
                    "schema": body["schema"],
                    "schemaType": body.get("schemaType", "AVRO"),
                    "references": body.get("references", []),
                }
            )
        versions = self._subjects.setdefault(subject, [])
        if sid not in versions:
            versions.append(sid)
        return sid

    def _version(self, subject: str, n: int) -> dict[str, Any]:
        s = self._schemas[self._subjects[subject][n - 1] - 1]
        return {"subject": subject, "version": n, **s}


def _send(req: BaseHTTPRequestHandler, status: int, answer: Any) -> None:
    data = json.dumps(answer).encode()
    req.send_response(status)
    req.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    req.send_header("Content-Length", str(len(data)))
    req.end_headers()
    req.wfile.write(data)
