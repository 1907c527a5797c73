"""Schema Registry formats: `avro`, `protobuf`, `json_schema` values and keys.

Built by `config.load_checked` when a route or topic uses one of these formats; the
decoders are handed to the `Mapper` (`decoders=`). They read Confluent's wire format
(magic byte 0, 4-byte schema id, payload; Protobuf adds message indexes) with
confluent-kafka's own `schema_registry` module, which fetches writer schemas by id over
HTTP and caches them. A decoder raises `DecodeError` for the record's own faults (wrong
magic byte, truncated payload, schema id the registry answers 404 for, payload not
matching its schema) and `RegistryUnavailable` when the registry does not answer (down,
timeout, 5xx, refused credentials): that is retried, never dead-lettered
(docs/mapping.md, "Schema Registry formats").
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connector.decode import Decoder
from connector.records import DecodeError, RegistryUnavailable
from connector.wire_values import message_to_plain, plain

REGISTRY_FORMATS = ("avro", "protobuf", "json_schema")
_MAGIC = 0
_HEADER = 5  # magic byte + 4-byte big-endian schema id
# Defaults that keep a registry outage off the poll loop: one quick attempt per call
# (the pipeline retries with its own backoff, never blocking the loop for long).
_CLIENT_DEFAULTS: dict[str, Any] = {"max.retries": 0, "timeout": 5}


class SchemaRegistrySettings(BaseModel):
    """The `schema_registry` config section (docs/configuration.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    basic_auth_user_info: SecretStr | None = None
    # Passed to confluent-kafka's SchemaRegistryClient (TLS files, timeout, bearer auth).
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # How `validate --registry` names the subject of a topic's values (and keys).
    subject_name_strategy: str = "topic"
    # Backoff between attempts while the registry does not answer.
    retry_initial_backoff_ms: int = Field(default=500, ge=1)
    retry_max_backoff_ms: int = Field(default=30_000, ge=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        urls = [u.strip() for u in value.split(",")]
        if not all(re.match(r"^https?://[^/\s]+", u) for u in urls):
            raise ValueError("must be an http:// or https:// URL (several: comma-separated)")
        return ",".join(u.rstrip("/") for u in urls)

    @field_validator("subject_name_strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        if value != "topic" and "{topic}" not in value:
            raise ValueError(
                "must be 'topic' (<topic>-value) or a template with {topic} "
                "(e.g. 'prod.{topic}' for prod.<topic>-value)"
            )
        return value

    def client_config(self) -> dict[str, Any]:
        """The SchemaRegistryClient config (the secret included: never log it)."""
        conf: dict[str, Any] = {**_CLIENT_DEFAULTS, **self.properties, "url": self.url}
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        return conf

    def secret_values(self) -> list[str]:
        """The credentials to mask in logs: the user info, its secret half, and secret
        properties (bearer tokens, key passwords)."""
        values: list[str] = []
        if self.basic_auth_user_info is not None:
            info = self.basic_auth_user_info.get_secret_value()
            values += [info, info.split(":", 1)[-1]]
        values += [str(v) for k, v in self.properties.items() if is_secret_registry_property(k)]
        for url in self.url.split(","):  # https://key:secret@host: credentials in the URL
            netloc = url.split("://", 1)[-1].split("/", 1)[0]
            if "@" in netloc:
                info = netloc.rsplit("@", 1)[0]
                values += [info, info.split(":", 1)[-1]]
        return [v for v in values if v]


def is_secret_registry_property(name: str) -> bool:
    """A SchemaRegistryClient property whose value is a credential (masked by `validate`)."""
    return bool(re.search(r"(password|secret|token|user\.info|key\.pem)", name, re.I))


def classify(exc: BaseException) -> DecodeError | RegistryUnavailable:
    """An error from confluent-kafka's deserializers -> the record's fault or an outage."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, DecodeError | RegistryUnavailable):
        return exc
    if isinstance(exc, SchemaRegistryError):
        status, code = exc.http_status_code, exc.error_code
        if status == 404 and code == 40403:
            return DecodeError(
                "unknown_schema_id", f"the schema registry has no such schema ({exc.error_message})"
            )
        # Other answers (404 for a wrong URL path, 401/403, 429, 5xx) are the
        # registry's or the config's problem, not the record's.
        return RegistryUnavailable(f"schema registry answered HTTP {status} ({exc.error_message})")
    if exc.__class__.__module__.split(".")[0].startswith("httpx") or isinstance(exc, OSError):
        return RegistryUnavailable(f"schema registry unreachable: {exc.__class__.__name__}: {exc}")
    text = str(exc)
    if isinstance(exc, EOFError | IndexError) or re.search(r"truncated|end of data", text, re.I):
        return DecodeError("truncated_payload", "the payload ends before its schema says")
    return DecodeError("invalid_payload", f"the payload does not match its schema: {text}")


def _frame(data: bytes | str) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if not raw or raw[0] != _MAGIC:
        first = f"0x{raw[0]:02x}" if raw else "nothing"
        raise DecodeError(
            "wrong_magic_byte",
            f"not Schema Registry wire format: first byte is {first}, expected 0x00",
        )
    if len(raw) < _HEADER:
        raise DecodeError("truncated_payload", f"{len(raw)} bytes: shorter than the 5-byte header")
    return raw


def _needs_conversion(schema: Any) -> bool:
    """Whether fastavro's values for this schema include any that are not JSON already
    (logical types, bytes, fixed); if not, `plain` is skipped (the hot path)."""
    if isinstance(schema, dict):
        if "logicalType" in schema or schema.get("type") in ("bytes", "fixed"):
            return True
        return any(_needs_conversion(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_needs_conversion(v) for v in schema)
    return schema in ("bytes", "fixed")


def _no_subject(_ctx: Any, _record_name: Any) -> None:
    return None


# Decode with the writer schema named by the record's id, without a subject lookup (the
# library's default strategy would ask the registry for the topic's associations).
_BY_ID: dict[str, Any] = {"subject.name.strategy": _no_subject}


class RegistryDecoders:
    """One SchemaRegistryClient (made on first use) and a decoder per format.

    Used by the loop thread only (the Mapper is not thread-safe either); the client's
    schema cache is what keeps decoding off the network in steady state.
    """

    def __init__(self, settings: SchemaRegistrySettings, client: Any = None) -> None:
        self.settings = settings
        self._client: Any = client  # made from settings on first use unless given
        self._avro: Any = None
        self._json: Any = None
        self._avro_readers: dict[bytes, Callable[[bytes], Any]] = {}
        self._proto_types: dict[tuple[int, tuple[int, ...]], Any] = {}

    def client(self) -> Any:
        """The shared SchemaRegistryClient (no connection is made until a call)."""
        if self._client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._client = SchemaRegistryClient(self.settings.client_config())
        return self._client

    def decoders(self) -> dict[str, Decoder]:
        return {"avro": self.avro, "protobuf": self.protobuf, "json_schema": self.json_schema}

    def _guard(self, call: Callable[[bytes], Any], raw: bytes) -> Any:
        try:
            return call(raw)
        except (DecodeError, RegistryUnavailable):
            raise
        except Exception as exc:
            raise classify(exc) from None

    def avro(self, data: bytes | str) -> Any:
        """Avro wire bytes -> JSON value (`wire_values.plain` conversions)."""
        raw = _frame(data)
        read = self._avro_readers.get(raw[1:5])
        if read is None:
            read = self._avro_readers[raw[1:5]] = self._guard(self._avro_reader, raw)
        return read(raw)

    def _avro_reader(self, raw: bytes) -> Callable[[bytes], Any]:
        """The reader for one writer schema id. A plain schema (no references, no
        data-contract rules) is read by fastavro directly, the library's own Avro
        dependency, without AvroDeserializer's per-record work (docs/benchmarks.md);
        anything else goes through AvroDeserializer."""
        schema = self.client().get_schema(int.from_bytes(raw[1:5], "big"))
        if schema.references or schema.rule_set:
            if self._avro is None:
                from confluent_kafka.schema_registry.avro import AvroDeserializer

                self._avro = AvroDeserializer(self.client(), conf=_BY_ID)
            deserialize = self._avro
            return lambda r: plain(self._guard(deserialize, r))
        import io

        from fastavro import parse_schema, schemaless_reader

        parsed_json = json.loads(schema.schema_str)
        parsed = parse_schema(parsed_json)
        convert = _needs_conversion(parsed_json)

        def read(r: bytes) -> Any:
            try:
                value = schemaless_reader(io.BytesIO(r[5:]), parsed, None)
            except Exception as exc:
                raise classify(exc) from None
            return plain(value) if convert else value

        return read

    def json_schema(self, data: bytes | str) -> Any:
        """JSON Schema wire bytes -> the JSON value (validated against its schema)."""
        raw = _frame(data)
        if self._json is None:
            from confluent_kafka.schema_registry.json_schema import JSONDeserializer

            self._json = JSONDeserializer(None, schema_registry_client=self.client(), conf=_BY_ID)
        return self._guard(self._json, raw)

    def protobuf(self, data: bytes | str) -> Any:
        """Protobuf wire bytes -> a dict: the message type is taken from the writer
        schema and the message indexes, without generated classes."""
        raw = _frame(data)
        return self._guard(self._protobuf, raw)

    def _protobuf(self, raw: bytes) -> Any:
        from confluent_kafka.schema_registry import dual_schema_id_deserializer
        from confluent_kafka.schema_registry.serde import SchemaId

        schema_id = SchemaId("PROTOBUF")
        payload = dual_schema_id_deserializer(raw, None, schema_id)
        indexes = tuple(schema_id.message_indexes or [0])
        if schema_id.id is None:  # pragma: no cover - magic byte 0 always carries an id
            raise DecodeError("wrong_magic_byte", "no schema id in the header")
        key = (schema_id.id, indexes)
        cls = self._proto_types.get(key)
        if cls is None:
            cls = self._proto_types[key] = self._message_class(schema_id.id, indexes)
        body = payload.read()
        msg = cls()
        try:
            msg.ParseFromString(body)
        except Exception as exc:
            if _runs_past_end(body):
                raise DecodeError(
                    "truncated_payload", "the payload ends before its schema says"
                ) from None
            raise DecodeError(
                "invalid_payload", f"the payload does not match its schema: {exc}"
            ) from None
        return message_to_plain(msg)

    def _message_class(self, schema_id: int, indexes: tuple[int, ...]) -> Any:
        from google.protobuf import descriptor_pb2, descriptor_pool
        from google.protobuf.message_factory import GetMessageClass

        # format=serialized: the registry answers a base64 FileDescriptorProto
        schema = self.client().get_schema(schema_id, fmt="serialized")
        fd_proto = descriptor_pb2.FileDescriptorProto.FromString(
            base64.b64decode(schema.schema_str)
        )
        pool = descriptor_pool.DescriptorPool()
        for dep in fd_proto.dependency:
            pool.AddSerializedFile(_well_known(dep))
        pool.Add(fd_proto)
        messages: Any = fd_proto.message_type
        names: list[str] = []
        for i in indexes:
            if not 0 <= i < len(messages):
                raise DecodeError(
                    "schema_mismatch", f"message index {i} is not in schema {schema_id}"
                )
            names.append(messages[i].name)
            messages = messages[i].nested_type
        full = ".".join(([fd_proto.package] if fd_proto.package else []) + names)
        return GetMessageClass(pool.FindMessageTypeByName(full))


def _runs_past_end(body: bytes) -> bool:
    """A Protobuf payload whose last top-level field runs past its end: cut short (what
    tells `truncated_payload` from other corruption)."""
    i, n = 0, len(body)

    def varint() -> int | None:
        nonlocal i
        shift = value = 0
        while i < n:
            byte = body[i]
            i += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        return None

    while i < n:
        key = varint()
        if key is None:
            return True
        wire = key & 7
        if wire == 0:
            if varint() is None:
                return True
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        elif wire == 2:
            size = varint()
            if size is None:
                return True
            i += size
        else:
            return False  # groups: not worth telling apart
        if i > n:
            return True
    return False


def _well_known(name: str) -> bytes:
    """A dependency of a Protobuf schema: Google's well-known types only (schemas that
    import other registered schemas are not supported yet: docs/mapping.md)."""
    from google.protobuf import (  # noqa: F401  (importing them fills the default pool)
        any_pb2,
        descriptor_pool,
        duration_pb2,
        empty_pb2,
        field_mask_pb2,
        struct_pb2,
        timestamp_pb2,
        wrappers_pb2,
    )

    try:
        return bytes(descriptor_pool.Default().FindFileByName(name).serialized_pb)
    except KeyError:
        raise DecodeError(
            "schema_mismatch",
            f"the schema imports {name}: only Google's well-known types are supported",
        ) from None


def build_decoders(settings: SchemaRegistrySettings | None) -> Mapping[str, Decoder]:
    """Called by `config.load_checked`: the registry decoders, or none without a section."""
    return RegistryDecoders(settings).decoders() if settings is not None else {}
