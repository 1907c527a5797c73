"""Wire-format records for the mapping micro-benchmark's Avro and Protobuf rows.

Called by `bench.mapping_bench`: the benchmark's plain order written by confluent-kafka's
AvroSerializer and ProtobufSerializer (a message type built at run time) against the
library's in-memory MockSchemaRegistryClient, and the connector's registry decoders over
the same client, so no network is timed: after the first record the writer schema comes
from the decoder's cache, as in steady state.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
    MockSchemaRegistryClient,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass

from connector.decode import Decoder
from connector.registry import RegistryDecoders, SchemaRegistrySettings

_S, _D, _L, _M = "string", "double", "long", "record"

AVRO_ORDER = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": _S},
        {"name": "type", "type": _S},
        {
            "name": "customer",
            "type": {
                "type": "record",
                "name": "Customer",
                "fields": [{"name": "id", "type": _S}, {"name": "tier", "type": _S}],
            },
        },
        {
            "name": "total",
            "type": {
                "type": "record",
                "name": "Total",
                "fields": [{"name": "amount", "type": _D}, {"name": "currency", "type": _S}],
            },
        },
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Item",
                    "fields": [
                        {"name": "sku", "type": _S},
                        {"name": "qty", "type": _L},
                        {"name": "price", "type": _D},
                    ],
                },
            },
        },
        {"name": "channel", "type": _S},
    ],
}


def _order_class() -> Any:
    f = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="bench/order.proto", package="bench")
    fd.syntax = "proto3"
    kinds = {_S: f.TYPE_STRING, _D: f.TYPE_DOUBLE, _L: f.TYPE_INT64}

    def message(name: str, fields: list[tuple[str, Any]]) -> None:
        m = fd.message_type.add(name=name)
        for number, (field, kind) in enumerate(fields, start=1):
            one = m.field.add(name=field, number=number, label=f.LABEL_OPTIONAL)
            if kind in kinds:
                one.type = kinds[kind]
            else:
                one.type, one.type_name = f.TYPE_MESSAGE, f".bench.{kind.strip('[]')}"
                if kind.startswith("["):
                    one.label = f.LABEL_REPEATED

    message("Customer", [("id", _S), ("tier", _S)])
    message("Total", [("amount", _D), ("currency", _S)])
    message("Item", [("sku", _S), ("qty", _L), ("price", _D)])
    message(
        "Order",
        [
            ("id", _S),
            ("type", _S),
            ("customer", "Customer"),
            ("total", "Total"),
            ("items", "[Item]"),
            ("channel", _S),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return GetMessageClass(pool.FindMessageTypeByName("bench.Order"))


def wire_values(value: dict[str, Any], topic: str) -> dict[str, tuple[bytes, Decoder]]:
    """{format: (the value's wire bytes, the connector's decoder for them)}."""
    client = MockSchemaRegistryClient({"url": "mock://bench"})
    ctx = SerializationContext(topic, MessageField.VALUE)
    avro = AvroSerializer(client, json.dumps(AVRO_ORDER))(value, ctx)
    cls = _order_class()
    msg = cls()
    msg.id, msg.type, msg.channel = value["id"], value["type"], value["channel"]
    msg.customer.id, msg.customer.tier = value["customer"]["id"], value["customer"]["tier"]
    msg.total.amount, msg.total.currency = value["total"]["amount"], value["total"]["currency"]
    for item in value["items"]:
        msg.items.add(sku=item["sku"], qty=item["qty"], price=item["price"])
    proto = ProtobufSerializer(cls, client, {"use.deprecated.format": False})(msg, ctx)
    decoders = RegistryDecoders(SchemaRegistrySettings(url="http://mock"), client).decoders()
    return {"avro": (avro, decoders["avro"]), "protobuf": (proto, decoders["protobuf"])}
