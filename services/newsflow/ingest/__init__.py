"""Ingest: Kafka records through the stages into the event store, offsets in the same transaction."""
