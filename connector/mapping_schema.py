"""The mapping section of the config: routes from Kafka records to Gameball events.

Validated by pydantic when the config loads (so `validate` reports key paths);
compiled into a fast `Mapper` by `connector.mapping`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RouteSettings(BaseModel):
    """One route: which records it takes and how it builds one event from each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    topic: str | None = None
    when: str | None = None
    customer_id: str
    event: str
    metadata: dict[str, str] = Field(default_factory=dict)
