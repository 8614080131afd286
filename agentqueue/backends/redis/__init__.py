"""The Redis store (`redis://host:6379/0?prefix=myapp`); needs `pip install 'agentqueue[redis]'`."""

from agentqueue.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
