"""Pipelines: DAGs of tasks, each an ordinary job (spec, manager, handlers, client)."""
