"""The registry decoders against the registry test peer, without a broker: Avro schemas
with references (read through AvroDeserializer), registry-format keys (`@key.*`), and the
decode reasons of each format."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.mapping import Mapper
from connector.mapping_schema import RouteSettings, TopicSettings
from connector.records import DecodeError, Event, RegistryUnavailable, SourceRecord
from connector.registry import RegistryDecoders, SchemaRegistrySettings
from tests.registry_peer import RegistryPeer
from tests.schema_records import OrderWriters

CUSTOMER = json.dumps(
    {
        "type": "record",
        "name": "Customer",
        "namespace": "shop",
        "fields": [{"name": "id", "type": "string"}],
    }
)
ORDER = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [{"name": "customer", "type": "shop.Customer"}, {"name": "n", "type": "long"}],
    }
)


@pytest.fixture
def peer() -> Iterator[RegistryPeer]:
    p = RegistryPeer().start()
    yield p
    p.stop()


def decoders(peer: RegistryPeer) -> dict[str, Any]:
    return dict(RegistryDecoders(SchemaRegistrySettings(url=peer.url)).decoders())


def test_avro_schema_with_references_is_read(peer: RegistryPeer) -> None:
    client = SchemaRegistryClient({"url": peer.url})
    client.register_schema("shop.Customer", Schema(CUSTOMER, "AVRO"))
    ref = SchemaReference("shop.Customer", "shop.Customer", 1)
    write = AvroSerializer(client, Schema(ORDER, "AVRO", [ref]))
    raw = write({"customer": {"id": "c9"}, "n": 3}, SerializationContext("t", MessageField.VALUE))
    assert decoders(peer)["avro"](raw) == {"customer": {"id": "c9"}, "n": 3}


def test_avro_keys_are_read_for_at_key_paths(peer: RegistryPeer) -> None:
    writers = OrderWriters(peer.url)
    key = AvroSerializer(writers.client, CUSTOMER)(
        {"id": "k-7"}, SerializationContext("orders", MessageField.KEY)
    )
    value = writers.avro_bytes("orders", "c1", "PAID", 2)
    route = RouteSettings.model_validate(
        {"topic": "orders", "customer_id": "@key.id", "event": "e", "metadata": {"s": "status"}}
    )
    topics = {"orders": TopicSettings(value_format="avro", key_format="avro")}
    mapper = Mapper([route], topics, decoders=decoders(peer))
    out = mapper.map(SourceRecord("orders", value, key_=key))
    assert isinstance(out, list) and isinstance(out[0], Event)
    assert (out[0].customer_id, out[0].metadata) == ("k-7", {"s": "PAID"})
    bad = mapper.map(SourceRecord("orders", value, key_=b"plain-key"))
    assert isinstance(bad, DecodeError) and bad.reason == "invalid_key"
    assert "not Schema Registry wire format: first byte is 0x70" in bad.detail


@pytest.mark.parametrize("fmt", ["avro", "protobuf", "json_schema"])
def test_each_format_names_the_records_fault(peer: RegistryPeer, fmt: str) -> None:
    writers = OrderWriters(peer.url)
    good = {
        "avro": writers.avro_bytes,
        "protobuf": writers.protobuf_bytes,
        "json_schema": writers.json_bytes,
    }[fmt]("orders", "c1", "PAID", 7)
    decode = decoders(peer)[fmt]
    assert decode(good)["customer"] == {"id": "c1"}
    cases = {
        b"\x01" + good[1:]: "wrong_magic_byte",
        b'{"customer": {}}': "wrong_magic_byte",
        good[:4]: "truncated_payload",
        good[:-4]: "truncated_payload",
        b"\x00" + struct.pack(">I", 777) + good[5:]: "unknown_schema_id",
    }
    for raw, reason in cases.items():
        with pytest.raises(DecodeError) as err:
            decode(raw)
        assert err.value.reason == reason, (raw, err.value)


@pytest.mark.parametrize("status", [None, 500, 503, 429, 401])
def test_an_unhealthy_registry_is_not_the_records_fault(peer: RegistryPeer, status: Any) -> None:
    raw = OrderWriters(peer.url).avro_bytes("orders", "c1", "PAID", 1)
    decode = decoders(peer)["avro"]
    if status is None:
        peer.stop()
    else:
        peer.fail_with = status
    with pytest.raises(RegistryUnavailable):
        decode(raw)
    if status is None:
        peer.start()
    peer.fail_with = None
    assert decode(raw)["status"] == "PAID"  # the same decoder recovers


def test_a_key_needing_an_unreachable_registry_is_held_not_an_error(peer: RegistryPeer) -> None:
    writers = OrderWriters(peer.url)
    key = AvroSerializer(writers.client, CUSTOMER)(
        {"id": "k-8"}, SerializationContext("orders", MessageField.KEY)
    )
    route = RouteSettings.model_validate(
        {"topic": "orders", "customer_id": "@key.id", "event": "e"}
    )
    topics = {"orders": TopicSettings(key_format="avro")}
    mapper = Mapper([route], topics, decoders=decoders(peer))
    peer.stop()
    with pytest.raises(RegistryUnavailable):  # reaches the pipeline: not `invalid_key`
        mapper.map(SourceRecord("orders", b'{"a": 1}', key_=key))
    peer.start()
    out = mapper.map(SourceRecord("orders", b'{"a": 1}', key_=key))
    assert isinstance(out, list) and out[0].customer_id == "k-8"
