"""newsflow: streaming news ingestion with event-sourced storage."""

__version__ = "0.1.0"
