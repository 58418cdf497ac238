"""The release path: pipeline dry run, service smoke test, promotion gate, champion move."""
