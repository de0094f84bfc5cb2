"""Pure domain: contracts, event types, stages and grouping. No I/O, no asyncpg, no aiokafka."""
