"""Order records written by confluent-kafka's own serializers, for the registry tests.

One shape in three formats: a nested customer id, an enum, a timestamp, an amount, a
64-bit count, bytes and tags. The Protobuf message type is built at test time
(descriptor_pb2 + DescriptorPool + GetMessageClass), as a producer's generated class
would be, so no .proto compiler is needed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass

AVRO_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [
            {
                "name": "customer",
                "type": {
                    "type": "record",
                    "name": "Customer",
                    "fields": [{"name": "id", "type": "string"}],
                },
            },
            {
                "name": "status",
                "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "REFUNDED"]},
            },
            {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
            },
            {"name": "items", "type": "long"},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
)

# The same record one version later (a new field with a default): a new schema id.
AVRO_SCHEMA_V2 = json.dumps(
    {
        **json.loads(AVRO_SCHEMA),
        "fields": [
            *json.loads(AVRO_SCHEMA)["fields"],
            {"name": "channel", "type": "string", "default": "web"},
        ],
    }
)

JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Order",
        "type": "object",
        "properties": {
            "customer": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            },
            "status": {"type": "string", "enum": ["NEW", "PAID", "REFUNDED"]},
            "placed_at": {"type": "string", "format": "date-time"},
            "amount": {"type": "number"},
            "items": {"type": "integer"},
        },
        "required": ["customer", "status", "placed_at", "amount"],
    }
)


def order_message_class() -> Any:
    """The `shop.Order` Protobuf class, built from a FileDescriptorProto at run time."""
    f = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(
        name="shop/order.proto",
        package="shop",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    customer = fd.message_type.add(name="Customer")
    customer.field.add(name="id", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    status = fd.enum_type.add(name="Status")
    for i, name in enumerate(("NEW", "PAID", "REFUNDED")):
        status.value.add(name=name, number=i)
    order = fd.message_type.add(name="Order")
    fields = [
        ("customer", f.TYPE_MESSAGE, ".shop.Customer"),
        ("status", f.TYPE_ENUM, ".shop.Status"),
        ("placed_at", f.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        ("amount", f.TYPE_DOUBLE, None),
        ("items", f.TYPE_INT64, None),
        ("payload", f.TYPE_BYTES, None),
    ]
    for number, (name, kind, type_name) in enumerate(fields, start=1):
        field = order.field.add(name=name, number=number, type=kind, label=f.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name
    tags = order.field.add(name="tags", number=7, type=f.TYPE_STRING, label=f.LABEL_REPEATED)
    del tags
    entry = order.nested_type.add(name="AttrsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=f.TYPE_INT64, label=f.LABEL_OPTIONAL)
    order.field.add(
        name="attrs",
        number=8,
        type=f.TYPE_MESSAGE,
        label=f.LABEL_REPEATED,
        type_name=".shop.Order.AttrsEntry",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fd)
    return GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


class OrderWriters:
    """Serializers for the `orders` shape against one registry (its client registers)."""

    def __init__(self, url: str, user_info: str | None = None) -> None:
        conf = {"url": url}
        if user_info:
            conf["basic.auth.user.info"] = user_info
        self.conf = conf
        self.client = SchemaRegistryClient(conf)
        self.order_class = order_message_class()
        self.avro = AvroSerializer(self.client, AVRO_SCHEMA)
        self.avro_v2 = AvroSerializer(self.client, AVRO_SCHEMA_V2)
        self.json = JSONSerializer(JSON_SCHEMA, self.client)
        self.protobuf = ProtobufSerializer(
            self.order_class, self.client, {"use.deprecated.format": False}
        )

    def avro_bytes(self, topic: str, customer: str, status: str, n: int, version: int = 1) -> bytes:
        value: dict[str, Any] = {
            "customer": {"id": customer},
            "status": status,
            "placed_at": placed_at(n),
            "amount": Decimal(f"{n}.25"),
            "items": 5_000_000_000 + n,
            "note": None,
        }
        write = self.avro
        if version == 2:
            write, value["channel"] = self.avro_v2, "app"
        out: bytes = write(value, SerializationContext(topic, MessageField.VALUE))
        return out

    def register_avro(self, topic: str) -> list[int]:
        """Register both Avro versions under `<topic>-value` again (a fresh client: the
        serializers' one has them cached), in the order they were first registered."""
        client = SchemaRegistryClient(self.conf)
        return [
            client.register_schema(f"{topic}-value", Schema(text, "AVRO"))
            for text in (AVRO_SCHEMA, AVRO_SCHEMA_V2)
        ]

    def json_bytes(self, topic: str, customer: str, status: str, n: int) -> bytes:
        value = {
            "customer": {"id": customer},
            "status": status,
            "placed_at": placed_at(n).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "amount": n + 0.25,
            "items": 5_000_000_000 + n,
        }
        out: bytes = self.json(value, SerializationContext(topic, MessageField.VALUE))
        return out

    def protobuf_bytes(self, topic: str, customer: str, status: str, n: int) -> bytes:
        msg = self.order_class(status=status, amount=n + 0.25, items=5_000_000_000 + n)
        msg.customer.id = customer
        msg.placed_at.FromDatetime(placed_at(n))
        msg.payload = b"\x00\xffok"
        msg.tags.extend(["a", "b"])
        msg.attrs["big"] = 1 << 40
        out: bytes = self.protobuf(msg, SerializationContext(topic, MessageField.VALUE))
        return out


def placed_at(n: int) -> datetime:
    """The order's timestamp: 2024-05-01T10:00:00.123Z plus n seconds."""
    return datetime(2024, 5, 1, 10, 0, n % 60, 123_000, tzinfo=UTC)
