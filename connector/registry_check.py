"""`validate --registry`: every path a route reads, against its subject's latest schema.

Called by the CLI's `validate --registry` only (the one place `validate` connects
anywhere). Fetches the latest schema of `<topic>-value` (and `-key`) with the
connector's SchemaRegistryClient and hands its shape to `connector.schema_paths`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from connector.registry import REGISTRY_FORMATS, SchemaRegistrySettings, classify
from connector.schema_paths import (
    ANY,
    Shape,
    avro_shape,
    check_route,
    json_schema_shape,
    protobuf_main_message,
    protobuf_shape,
)


def subject_for(settings: SchemaRegistrySettings, topic: str, part: str = "value") -> str:
    """The subject of a topic's values (or keys): `<topic>-value` by default, or the
    configured template (`prod.{topic}` -> `prod.orders-value`)."""
    strategy = settings.subject_name_strategy
    base = topic if strategy == "topic" else strategy.replace("{topic}", topic)
    return f"{base}-{part}"


def latest_shape(client: Any, subject: str, fmt: str) -> Shape | None:
    """The subject's latest schema as a `Shape`; None when the registry has no such
    subject. Raises `RegistryUnavailable` when it does not answer."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        latest = client.get_latest_version(subject, fmt="serialized" if fmt == "protobuf" else None)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404 and exc.error_code in (40401, 40402):
            return None
        raise classify(exc) from None
    except Exception as exc:
        raise classify(exc) from None
    text = latest.schema.schema_str
    if fmt == "avro":
        return avro_shape(json.loads(text))
    if fmt == "json_schema":
        return json_schema_shape(json.loads(text))
    from google.protobuf import descriptor_pb2

    file = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(text))
    return protobuf_shape(file, protobuf_main_message(file))


def check_routes(settings: Any, client: Any) -> tuple[list[str], list[str]]:
    """Called by `validate --registry`: every path a route reads from a registry-format
    topic, against the subject's latest schema. Returns (problems, notes checked/skipped)."""
    registry: SchemaRegistrySettings = settings.schema_registry
    problems: list[str] = []
    notes: list[str] = []
    for i, route in enumerate(settings.mappings):
        where = f"mappings[{i}]"
        topic = route.topic
        own = settings.topic_settings.get(topic or "")
        star = settings.topic_settings.get("*")
        fmts = {}
        for part in ("value", "key"):
            attr = f"{part}_format"
            fmts[part] = (
                getattr(route, attr)
                or (own and getattr(own, attr))
                or (star and getattr(star, attr))
            )
        if not any(f in REGISTRY_FORMATS for f in fmts.values()):
            continue
        if topic is None:
            notes.append(f"{where}: not checked (a topic_pattern has no single subject)")
            continue
        shapes: dict[str, Shape] = {}
        for part, fmt in fmts.items():
            if fmt not in REGISTRY_FORMATS:
                continue
            subject = subject_for(registry, topic, part)
            shape = latest_shape(client, subject, str(fmt))
            if shape is None:
                problems.append(
                    f"{where}.{part}_format: subject {subject!r} is not in the schema registry"
                )
                continue
            shapes[part] = shape
            notes.append(f"{where}: {part} paths checked against {subject!r} (latest)")
        if "value" in shapes or "key" in shapes:
            problems += check_route(route, where, shapes.get("value", ANY), shapes.get("key", ANY))
    return problems, notes
