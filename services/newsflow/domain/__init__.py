"""Pure domain: contracts, event types, stages and story clustering. No I/O, no asyncpg, no aiokafka."""
