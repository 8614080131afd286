"""Execution: the worker loop, one job's executor, and batched acknowledgements."""

from agentqueue.worker.worker import Worker, parse_queues

__all__ = ["Worker", "parse_queues"]
