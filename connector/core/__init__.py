"""The chunk-oriented delivery core: pure bookkeeping of the loop (docs/core.md).

`DeliveryCore` takes consumed chunks as plain rows, cuts batches, takes acks counted per
segment, says what to commit and bounds what a crash can re-send. No Kafka, no threads,
no clock: the shell (the pipeline) passes `now` in.
"""

from connector.core.delivery import Completion, CoreSettings, DeliveryCore, Revoked
from connector.core.rows import Batch, Item, Letter, Row, Run, Segment, encode_items

__all__ = [
    "Batch",
    "Completion",
    "CoreSettings",
    "DeliveryCore",
    "Item",
    "Letter",
    "Revoked",
    "Row",
    "Run",
    "Segment",
    "encode_items",
]
