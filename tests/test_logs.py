"""agentqueue.logs: the formats, the job fields and the masking of secrets, on real records."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from agentqueue import logs
from agentqueue.models import Job

KEY = "aq_0123456789ab_s3cr3tS3cr3tS3cr3tS3cr3t"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    """A logger whose one handler writes to a buffer through the agentqueue filters."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.addFilter(logs.JobFields())
    handler.addFilter(logs.Redact())
    logger = logging.getLogger(f"test.logs.{id(sink)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, sink, handler
    logger.removeHandler(handler)


def _job(job_id: int) -> Job:
    # Only the fields a log line names matter here.
    return Job.model_construct(id=job_id, job_type="send_email", attempts=2)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://:pw0rd@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql+asyncpg://app:p%40ss@db/jobs", "postgresql+asyncpg://app:***@db/jobs"),
        (f"key {KEY} used", "key aq_0123456789ab_*** used"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("GET /x?api_key=abc&page=2", "GET /x?api_key=***&page=2"),
        ("https://example.com/path?q=1", "https://example.com/path?q=1"),
    ],
)
def test_redact(text: str, masked: str) -> None:
    assert logs.redact(text) == masked


async def test_json_lines_carry_the_running_jobs_fields_and_hide_secrets(
    captured: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, sink, handler = captured
    handler.setFormatter(logs.JsonFormatter())

    async def handler_code() -> None:
        logger.info("to %s", "postgresql://u:hunter2@db/x")
        try:
            raise RuntimeError(f"refused {KEY}")
        except RuntimeError:
            logger.exception("call failed")

    await asyncio.create_task(handler_code(), context=logs.bound_to(_job(7)))
    logger.warning("outside any job")
    logger.warning("about a job", extra=logs.job_fields(_job(9)))
    first, failed, outside, about = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert (first["job_id"], first["job_type"], first["attempt"]) == (7, "send_email", 2)
    assert first["message"] == "to postgresql://u:***@db/x"
    assert failed["job_id"] == 7
    assert "RuntimeError: refused aq_0123456789ab_***" in failed["exception"]
    assert "job_id" not in outside
    assert about["job_id"] == 9
    assert "hunter2" not in sink.getvalue()
    assert "s3cr3t" not in sink.getvalue()


def test_text_lines_end_with_the_job_fields(
    captured: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, sink, handler = captured
    handler.setFormatter(logs.TextFormatter())
    logger.info("sent", extra=logs.job_fields(_job(3)))
    logger.info("idle")
    sent, idle = sink.getvalue().splitlines()
    assert sent.endswith(" INFO " + logger.name + ": sent job=3 type=send_email attempt=2")
    assert idle.endswith(": idle")
