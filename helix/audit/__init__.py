"""Audit and replay: the filtered audit log, time travel, export and import of the log."""
