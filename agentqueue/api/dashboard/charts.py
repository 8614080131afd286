"""The job list's charts: jobs finished per minute and the failure rate over the last hour.

Drawn on the server as inline SVG (no script, no CDN, nothing the content policy would have to
allow), inside a `data-live` part of the page, so they update with the rest of it whenever the
event stream reports a change, and `dashboard.js` refreshes them each minute so the time axis
moves on an idle queue. The data is `ThroughputReader.read`, the same as
`GET /api/v1/stats/throughput`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentqueue.models import Throughput

WIDTH = 600
HEIGHT = 120
"""The charts' coordinate space (the SVG scales to its box)."""


@dataclass(frozen=True)
class Bar:
    """One minute of the throughput chart: the completed bar and the failed one on top."""

    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    minute: str
    completed: int
    failed: int
    cancelled: int
    rate: float | None

    @property
    def title(self) -> str:
        """The tooltip: the minute and its counts."""
        rate = "" if self.rate is None else f", {self.rate:.0%} failed"
        return (
            f"{self.minute}: {self.completed} completed, {self.failed} failed, "
            f"{self.cancelled} cancelled{rate}"
        )


@dataclass(frozen=True)
class Point:
    """One minute of the failure-rate chart (only minutes where a job completed or failed)."""

    x: float
    y: float
    minute: str
    rate: float


@dataclass(frozen=True)
class Charts:
    """What the template draws."""

    bars: list[Bar]
    points: list[Point]
    peak: int
    """The tallest minute (completed + failed): the top of the throughput chart."""
    completed: int
    failed: int
    first: str
    last: str
    minutes: int

    @property
    def line(self) -> str:
        """The failure-rate polyline's points."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def failure_rate(self) -> float | None:
        """Failed / (completed + failed) over the whole window."""
        ended = self.completed + self.failed
        return self.failed / ended if ended else None


def charts(data: Throughput) -> Charts:
    """Lay out the bars and points of `data` in the charts' coordinate space."""
    count = len(data.buckets)
    step = WIDTH / count
    peak = max((b.completed + b.failed for b in data.buckets), default=0)
    scale = HEIGHT / peak if peak else 0.0
    bars: list[Bar] = []
    points: list[Point] = []
    for index, bucket in enumerate(data.buckets):
        x = index * step
        minute = bucket.start.strftime("%H:%M")
        completed_height = bucket.completed * scale
        failed_height = bucket.failed * scale
        rate = bucket.failure_rate
        bars.append(
            Bar(
                x=round(x + step * 0.1, 2),
                width=round(step * 0.8, 2),
                completed_y=round(HEIGHT - completed_height, 2),
                completed_height=round(completed_height, 2),
                failed_y=round(HEIGHT - completed_height - failed_height, 2),
                failed_height=round(failed_height, 2),
                minute=minute,
                completed=bucket.completed,
                failed=bucket.failed,
                cancelled=bucket.cancelled,
                rate=rate,
            )
        )
        if rate is not None:
            points.append(
                Point(
                    x=round(x + step / 2, 2),
                    y=round(HEIGHT * (1 - rate), 2),
                    minute=minute,
                    rate=rate,
                )
            )
    return Charts(
        bars=bars,
        points=points,
        peak=peak,
        completed=sum(b.completed for b in data.buckets),
        failed=sum(b.failed for b in data.buckets),
        first=data.buckets[0].start.strftime("%H:%M") if data.buckets else "",
        last=data.buckets[-1].start.strftime("%H:%M") if data.buckets else "",
        minutes=count,
    )
