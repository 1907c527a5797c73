"""Gameball Kafka connector: Kafka records in, Gameball batch jobs out."""

__version__ = "0.1.0"
