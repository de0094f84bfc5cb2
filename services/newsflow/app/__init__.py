"""Operations: the command line, the daemon, status, and the offline tools (inspect, publish, reprocess)."""
