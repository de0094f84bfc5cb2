"""Adapters at the edges: PostgreSQL (asyncpg), Kafka (aiokafka), embedded infrastructure."""
