"""connector/refetch.py against the real broker: records written by confluent-kafka's
Producer are read back by (topic, partition, offset) with their key, value and headers;
what cannot be read comes back with a reason; nothing wanted is ever lost."""

from __future__ import annotations

import yaml

from connector.config import parse
from connector.localbroker import LocalBroker
from connector.refetch import CLOSED, TIMED_OUT, Fetched, RecordFetcher, fetcher_config
from tests.support import API_KEY, SECRET_KEY, connector_config, produce, unique, wait_until


def _fetcher(broker: LocalBroker, topic: str, **kw: object) -> RecordFetcher:
    text = yaml.safe_dump(connector_config(broker.bootstrap, "http://127.0.0.1:9", topic,
                                           unique("refetch")))
    settings = parse(text, env={"GAMEBALL_API_KEY": API_KEY, "GAMEBALL_SECRET_KEY": SECRET_KEY})
    return RecordFetcher(fetcher_config(settings), **kw)  # type: ignore[arg-type]


def _collect(fetcher: RecordFetcher, n: int) -> dict[tuple[str, int, int], Fetched]:
    got: dict[tuple[str, int, int], Fetched] = {}

    def all_in() -> bool:
        got.update((f.where, f) for f in fetcher.poll())
        return len(got) >= n

    wait_until(all_in, 60, f"{n} answers from the fetcher")
    return got


def test_records_are_read_back_by_offset_with_their_key_value_and_headers(
    broker: LocalBroker,
) -> None:
    topic = unique("refetch")
    broker.create_topics([topic], partitions=3)
    produce(broker.bootstrap, topic, (f"value-{i}".encode() for i in range(60)),
            key=lambda i: f"key-{i}".encode(),
            headers=lambda i: [("trace", f"t{i}".encode())],
            partition=lambda i: i % 3)  # record i is offset i // 3 of partition i % 3
    fetcher = _fetcher(broker, topic)
    wanted = [(topic, 0, 0), (topic, 0, 1), (topic, 0, 2), (topic, 0, 19), (topic, 2, 7)]
    for topic_, partition, offset in wanted:
        assert fetcher.want(topic_, partition, offset)
    assert fetcher.want(topic, 0, 1)  # asked twice: answered once
    assert fetcher.pending == len(wanted)
    got = _collect(fetcher, len(wanted))
    assert fetcher.pending == 0
    for _t, partition, offset in wanted:
        answer = got[(topic, partition, offset)]
        i = offset * 3 + partition
        assert answer.reason is None and answer.record is not None
        assert answer.record.value() == f"value-{i}".encode()
        assert answer.record.key() == f"key-{i}".encode()
        assert answer.record.headers() == [("trace", f"t{i}".encode())]
    assert fetcher.close(5) == []


def test_a_record_that_cannot_be_read_is_answered_with_a_reason(broker: LocalBroker) -> None:
    topic = unique("refetch")
    broker.create_topics([topic], partitions=1)
    produce(broker.bootstrap, topic, [b"only"], partition=lambda i: 0)
    fetcher = _fetcher(broker, topic, timeout=1.0, tries=2)
    fetcher.want(topic, 0, 0)
    fetcher.want(topic, 0, 500)  # never written
    fetcher.want(unique("no-such-topic"), 0, 3)
    got = _collect(fetcher, 3)
    assert got[(topic, 0, 0)].record is not None
    unreadable = [f for f in got.values() if f.record is None]
    assert [f.reason for f in unreadable] == [TIMED_OUT, TIMED_OUT]
    fetcher.close(5)


def test_close_answers_every_record_still_wanted(broker: LocalBroker) -> None:
    topic = unique("refetch")
    broker.create_topics([topic], partitions=1)
    produce(broker.bootstrap, topic, [b"a", b"b"], partition=lambda i: 0)
    fetcher = _fetcher(broker, topic, timeout=30.0)
    wanted = {(topic, 0, 0), (topic, 0, 1), (topic, 0, 900)}  # 900: never readable
    for where in wanted:
        fetcher.want(*where)
    answers = fetcher.close(0.5)  # before the pass over offset 900 can end
    assert {f.where for f in answers} == wanted
    assert next(f for f in answers if f.where == (topic, 0, 900)).reason == CLOSED
    assert not fetcher.want(topic, 0, 0)  # closed: nothing more is taken
