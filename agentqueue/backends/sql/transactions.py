"""What the halves of `SqlBackend` (durable, cron, admin) need from it: transactions and the
clock. Each half is an abstract base over these three; `SqlBackend` supplies them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa

from agentqueue.backends.sql.dialect import SqlDialect

T = TypeVar("T")
Work = Callable[[sa.Connection], T]
"""A transaction's work: a plain function of one SQLAlchemy connection."""


def always(_result: object) -> bool:
    """The default `changed`: every write may have changed something."""
    return True


def never(_result: object) -> bool:
    """`changed` for a read: nothing to wake anyone for."""
    return False


class Transactions(ABC):
    """Runs `Work` as transactions of one SQL store, on its clock."""

    dialect = SqlDialect()  # the store's own (a subclass sets it)

    @abstractmethod
    async def _write(self, work: Work[T], *, changed: Callable[[T], bool] = always) -> T:
        """Run `work` in one write transaction and commit it; driver errors are translated.

        Local waiters are woken after it unless `changed(result)` says it wrote nothing: a
        worker's empty claim must not wake that worker itself (it would claim again, for ever).
        """

    @abstractmethod
    async def _read(self, work: Work[T]) -> T:
        """Run `work` on a connection for reads."""

    def _at(self, conn: sa.Connection, now: datetime | None) -> datetime:
        """Return `now`, or the store's clock when it is None."""
        return self.dialect.now(conn, now)
