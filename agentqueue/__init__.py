"""agentqueue: a durable background-job queue for Python applications and AI agents.

`__all__` is the public API; everything else may change between releases.
"""

from agentqueue.backends.base import Backend, Capabilities
from agentqueue.clock import Clock, FrozenClock, SystemClock
from agentqueue.context import JobCancelled, JobContext
from agentqueue.enqueue import JobId
from agentqueue.errors import (
    AgentQueueError,
    BackendUnavailable,
    ConfigError,
    DependencyInvalid,
    DuplicateHandler,
    InvalidArgument,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    MissingExtra,
    PayloadInvalid,
    SchemaMismatch,
    StoreFull,
)
from agentqueue.models import (
    BulkResult,
    CronJob,
    CronStatus,
    DeadLetter,
    ErrorRecord,
    EventType,
    FailureReason,
    Job,
    JobEdit,
    JobEvent,
    JobFilter,
    JobOptions,
    JobTypeInfo,
    ListOrder,
    NewJob,
    Origin,
    Page,
    QueueStats,
    TagMode,
    Throughput,
    ThroughputBucket,
    Token,
    TokenResult,
    TokenStatus,
)
from agentqueue.queue import Queue
from agentqueue.states import ACTIVE, TERMINAL, JobStatus, Transition
from agentqueue.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Queue",
    "Worker",
    "JobContext",
    "JobCancelled",
    # models
    "Job",
    "NewJob",
    "Origin",
    "JobId",
    "Token",
    "TokenResult",
    "TokenStatus",
    "CronJob",
    "CronStatus",
    "BulkResult",
    "DeadLetter",
    "JobOptions",
    "JobEdit",
    "JobEvent",
    "JobFilter",
    "JobTypeInfo",
    "Page",
    "QueueStats",
    "Throughput",
    "ThroughputBucket",
    "ErrorRecord",
    "EventType",
    "FailureReason",
    "ListOrder",
    "TagMode",
    "JobStatus",
    "Transition",
    "ACTIVE",
    "TERMINAL",
    # time and stores
    "Clock",
    "SystemClock",
    "FrozenClock",
    "Backend",
    "Capabilities",
    # errors
    "AgentQueueError",
    "BackendUnavailable",
    "ConfigError",
    "DuplicateHandler",
    "InvalidArgument",
    "DependencyInvalid",
    "InvalidTransition",
    "JobNotFound",
    "LeaseLost",
    "MissingExtra",
    "PayloadInvalid",
    "SchemaMismatch",
    "StoreFull",
    "__version__",
]
