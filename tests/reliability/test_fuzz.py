"""Reliability scenario 11: hostile input.

- **Payloads** (hypothesis and hand-picked edges: deep nesting, integers past 64 bits, NUL,
  lone surrogates, emoji, right-to-left and combining text, odd keys, extreme floats) are
  added on all four stores at once: each is stored and read back identically (the same JSON
  text), or refused with the same typed error everywhere, before anything is stored.
- **The REST body limit** holds to the byte: a body of exactly the limit is taken, one byte
  more is 413 and stores nothing.
- **Injection through filters**: SQL, LIKE wildcards, Redis glob characters, JSON-path
  operators, NUL and quotes in every list filter (job type, queue, tags, creator, status, order,
  cursor), through the Python API and REST: each result equals a Python oracle over all jobs,
  or is a typed refusal; the tables are intact afterwards.
- **Cron strings**: generated and known-bad expressions are stored only when they parse, and
  refused with a typed error (422 over REST) leaving no schedule behind.

The REST schema fuzzing is `test_rest_fuzz.py`; MCP arguments are fuzzed in
`tests/mcp/test_mcp_fuzz.py`; installer paths in `tests/installers/test_installers_jail.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentqueue import Job, Queue
from agentqueue.errors import AgentQueueError, InvalidArgument, TokenNotFound
from agentqueue.testing import run_due_jobs
from tests.acceptance.procs import all_jobs
from tests.api.conftest import running_api
from tests.reliability.figures import record

EXAMPLES = 40
"""Hypothesis examples per property in the default run (soak runs take more)."""


def draw(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` examples of a strategy (hypothesis drives a sync function; the stores are
    async, so the examples are drawn first and then run on the test's loop)."""
    drawn: list[Any] = []

    @settings(
        max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(value=strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


WILD_TEXT = st.text(
    st.characters(codec=None, exclude_categories=()),  # every code point, surrogates included
    max_size=40,
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | WILD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WILD_TEXT, inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    """A list nested `depth` levels deep around one value."""
    value: Any = "core"
    for _ in range(depth):
        value = [value]
    return value


EDGES: list[Any] = [
    {"text": "nul\x00inside"},
    {"key\x00nul": 1},
    {"lone": "\ud800"},
    {"pair": "\ud83d\ude00"},  # a surrogate pair written out (not the emoji it spells)
    {"emoji": "🙂👍🏽", "rtl": "שלום مرحبا", "combining": "e\u0301\u0327"},
    {"big": 2**64, "small": -(2**63) - 1, "huge": 10**40},
    {"floats": [1e308, -1e-308, 5e-324, 0.1, -0.0, 1e16, 1.5]},
    {"": "empty key", " ": "space key", "a.b": "dot", "$x": "dollar", "'\"": "quotes"},
    nested(60),
    nested(200),
    nested(1000),
    "a bare string",
    12,
    [1, "two", None],
    {"wide": "x" * 100_000},
]


def same(sent: Any, stored: Any) -> bool:
    """Whether a stored value is the one sent: exact, except that a number may come back as
    the same number of the other type (PostgreSQL's jsonb keeps numbers as decimals: `1e16`
    reads back as `10000000000000000`, `-0.0` as `0.0`)."""
    numbers = (int, float)
    if isinstance(sent, bool) or isinstance(stored, bool):
        return type(sent) is type(stored) and sent == stored
    if isinstance(sent, numbers) and isinstance(stored, numbers):
        if isinstance(sent, int) and isinstance(stored, int):
            return sent == stored
        return float(sent) == float(stored)
    if isinstance(sent, list) and isinstance(stored, list):
        return len(sent) == len(stored) and all(map(same, sent, stored))
    if isinstance(sent, dict) and isinstance(stored, dict):
        return sent.keys() == stored.keys() and all(same(sent[k], stored[k]) for k in sent)
    return type(sent) is type(stored) and sent == stored


async def outcome(queue: Queue, payload: Any) -> tuple[str, Any]:
    """("stored", the payload read back) or ("refused", the error code) of adding `payload`."""
    try:
        job_id = await queue.add_job("fuzz", payload)
    except AgentQueueError as error:
        return "refused", error.code
    job = await queue.get_job(job_id)
    assert job is not None
    return "stored", job.payload


def judge(payload: Any, results: dict[str, tuple[str, Any]]) -> str | None:
    """None when every store did the same right thing with `payload`, else what went wrong."""
    verdicts = {verdict for verdict, _ in results.values()}
    if verdicts == {"refused"}:
        codes = {code for _, code in results.values()}
        return None if len(codes) == 1 else f"refused differently: {codes}"
    if verdicts != {"stored"}:
        return f"stored by some stores only: {results}"
    sent = {} if payload is None else payload  # no payload is stored as {} (documented)
    wrong = {kind: value for kind, (_, value) in results.items() if not same(sent, value)}
    return f"read back differently: {wrong}" if wrong else None


@contextlib.asynccontextmanager
async def every_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[dict[str, Queue]]:
    """One opened queue on each of the four stores."""
    urls = {
        "sqlite": f"sqlite:///{tmp_path / 'fuzz.db'}",
        "memory": "memory://",
        "postgres": request.getfixturevalue("postgres_url"),
        "redis": request.getfixturevalue("redis_url"),
    }
    async with contextlib.AsyncExitStack() as stack:
        queues = {kind: await stack.enter_async_context(Queue(url)) for kind, url in urls.items()}
        yield queues


async def test_payloads_round_trip_or_are_refused_alike_on_every_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    payloads = EDGES + await asyncio.to_thread(draw, JSON_VALUES, EXAMPLES)
    mismatches: list[str] = []
    refusals: dict[str, int] = {}
    async with every_store(request, tmp_path) as queues:
        for payload in payloads:
            results = {kind: await outcome(queue, payload) for kind, queue in queues.items()}
            problem = judge(payload, results)
            if problem is not None:
                mismatches.append(f"{ascii(payload)[:200]}: {ascii(problem)[:600]}")
            elif results["sqlite"][0] == "refused":
                refusals[results["sqlite"][1]] = refusals.get(results["sqlite"][1], 0) + 1
        counts = {kind: len(await all_jobs(queue)) for kind, queue in queues.items()}
    record(
        "11-payload-round-trip",
        "all",
        payloads=len(payloads),
        mismatches=len(mismatches),
        refusals=refusals,
        jobs_per_store=counts,
    )
    assert not mismatches, "\n".join(mismatches[:10])
    # A refusal stores nothing: every store holds the same number of jobs.
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("bad", ["nul\x00", "\udc00"], ids=["nul", "lone-surrogate"])
async def test_outputs_steps_and_token_data_refuse_what_a_store_cannot_keep(
    timed: Queue, bad: str
) -> None:
    """The same check guards every JSON a job writes: an output fails the attempt (typed, not
    a store error retried for ever), a step or token data is an InvalidArgument."""

    @timed.handler("emit")
    async def emit(payload: Any) -> Any:
        return {"value": bad}

    @timed.handler("stepper")
    async def stepper(payload: Any, ctx: Any) -> Any:
        return await ctx.step("s", lambda: bad)

    emitted = await timed.add_job("emit", max_attempts=1)
    stepped = await timed.add_job("stepper", max_attempts=1)
    assert await run_due_jobs(timed) == {"fail": 2}
    for job_id in (emitted, stepped):
        job = await timed.get_job(job_id)
        assert job is not None
        assert "not plain JSON data" in (job.last_error or ""), job.last_error
    token = await timed.create_token()
    with pytest.raises(InvalidArgument):
        await timed.complete_token(token.id, {"answer": bad})
    assert (await timed.get_token(token.id)).status.value == "pending"  # type: ignore[union-attr]


HOSTILE = [
    "' OR 1=1 --",
    "'; DROP TABLE aq_jobs; --",
    '" OR ""="',
    "$1",
    "%",
    "_",
    "50%",
    "5_0",
    "\\",
    "\\%",
    "*",
    "?",
    "[a-z]",
    "[",
    "{aq}",
    "}",
    "a:b",
    "$.payload",
    "->>'x'",
    "\u2019",  # a typographic apostrophe
    "🙂",
    " ",
    "nul\x00",
    "\udc00",
]
"""SQL, LIKE wildcards, Redis glob and key characters, JSON-path operators, quotes, NUL."""

PLAIN = ["500", "50", "abc", "a_c", "aXc", "report"]
"""Values a wildcard or an injection would wrongly match."""


async def every_id(store: Queue, **filters: Any) -> set[int] | str:
    """The ids of every page of `list_jobs(**filters)`, or the refusal's error code."""
    ids: set[int] = set()
    cursor = None
    try:
        while True:
            page = await store.list_jobs(limit=1000, cursor=cursor, **filters)
            ids.update(job.id for job in page.items)
            if page.next_cursor is None:
                return ids
            cursor = page.next_cursor
    except AgentQueueError as error:
        return error.code


def oracle(jobs: list[Job], kind: str, value: str) -> set[int]:
    """The ids a filter must return, computed in Python."""
    keep: dict[str, Callable[[Job], bool]] = {
        "job_type": lambda job: job.job_type == value,
        "queue": lambda job: job.queue == value,
        "tags": lambda job: value in job.tags,
    }
    return {job.id for job in jobs if keep[kind](job)}


async def test_hostile_filters_and_tags_match_a_python_oracle(store_url: str) -> None:
    stored_tags: list[str] = []
    refused_tags: dict[str, str] = {}
    async with Queue(store_url) as queue:
        for n, value in enumerate(PLAIN * 3):
            await queue.add_job(
                value if n % 2 else "report", queue=value, tags=[value, f"t{n % 4}"]
            )
        for value in HOSTILE:
            try:
                await queue.add_job("report", tags=[value, "hostile"])
                stored_tags.append(value)
            except AgentQueueError as error:
                refused_tags[ascii(value)] = error.code
        jobs = await all_jobs(queue)
        mismatches: list[str] = []
        for value in HOSTILE + PLAIN:
            for kind in ("job_type", "queue", "tags"):
                argument: Any = [value] if kind == "tags" else value
                got = await every_id(queue, **{kind: argument})
                expected = oracle(jobs, kind, value)
                # A value nothing can hold may be refused as a filter (typed), never match.
                if got != expected and not (isinstance(got, str) and not expected):
                    mismatches.append(f"{kind}={value!r}: got {got}, expected {expected}")
            for kind in ("status", "order", "cursor"):
                if value in PLAIN:
                    continue  # "50" is a cursor
                hostile: dict[str, Any] = {kind: value}
                try:
                    await queue.list_jobs(**hostile)
                    mismatches.append(f"{kind}={value!r} was not refused")
                except AgentQueueError as error:
                    if error.code != "invalid_argument":
                        mismatches.append(f"{kind}={value!r}: {error.code}")
        everything_tagged = await every_id(queue, tags=["hostile", *stored_tags], tag_mode="all")
        mismatches.extend(await check_token_filters(queue))
        after = await all_jobs(queue)
    assert not mismatches, "\n".join(mismatches[:10])
    assert [job.id for job in after] == [job.id for job in jobs], "the jobs table changed"
    assert everything_tagged == ({jobs[-1].id} if len(stored_tags) == 1 else set())
    # Whatever a store takes as a tag, every store takes: NUL and lone surrogates are refused.
    assert set(refused_tags) == {ascii("nul\x00"), ascii("\udc00")}, refused_tags
    record(
        "11-filter-injection",
        store_url.split(":", 1)[0],
        hostile_values=len(HOSTILE),
        filters=6,
        mismatches=len(mismatches),
        tags_refused=refused_tags,
        jobs_before=len(jobs),
        jobs_after=len(after),
    )


async def check_token_filters(queue: Queue) -> list[str]:
    """Tokens tagged with hostile values: `list_tokens(tags=...)` equals the oracle (or is a
    typed refusal of a value no token can hold); hostile token ids are simply not found."""
    made: dict[str, str] = {}
    for value in HOSTILE:
        with contextlib.suppress(InvalidArgument):
            made[value] = (await queue.create_token(tags=[value])).id
    problems: list[str] = []
    for value in HOSTILE:
        try:
            found = {token.id for token in await queue.list_tokens(tags=[value])}
        except InvalidArgument:
            found = set()
            if value in made:
                problems.append(f"token tag {value!r} stored but refused as a filter")
        if found != ({made[value]} if value in made else set()):
            problems.append(f"token tag {value!r}: got {found}")
        if await queue.get_token(value) is not None:
            problems.append(f"token id {value!r} found")
        with contextlib.suppress(TokenNotFound):
            await queue.complete_token(value, 1)
            problems.append(f"token id {value!r} completed")
    return problems


async def test_the_rest_body_limit_holds_to_the_byte(store_url: str) -> None:
    limit = 4096
    async with Queue(store_url) as queue, running_api(queue, max_body_bytes=limit) as api:

        def body(size: int) -> bytes:
            shell = b'{"job_type":"report","payload":{"pad":""}}'
            text = shell.replace(b'""', b'"' + b"x" * (size - len(shell)) + b'"')
            assert len(text) == size
            return text

        headers = {"Content-Type": "application/json"}
        taken = await api.client.post("/api/v1/jobs", content=body(limit), headers=headers)
        refused = await api.client.post("/api/v1/jobs", content=body(limit + 1), headers=headers)
        assert taken.status_code == 201, taken.text
        assert refused.status_code == 413, refused.text
        assert len(await all_jobs(queue)) == 1
    record("11-body-limit", store_url.split(":", 1)[0], limit=limit, at_limit=201, over_by_one=413)


CRON_PARTS = st.sampled_from(
    [
        "*",
        "*/0",
        "*/1000000",
        "0",
        "59",
        "60",
        "61",
        "1-5",
        "5-1",
        "L",
        "?",
        "#",
        "MON",
        "JAN",
        "1,2",
        ",",
        "-",
        "/",
        "99999999999999999999",
        "30",
        "2",
        "-1",
        "\x00",
        "\udc00",
        "٣",
    ]
)
CRON_STRINGS = st.one_of(
    st.lists(CRON_PARTS, min_size=5, max_size=6).map(" ".join),
    st.lists(CRON_PARTS, min_size=1, max_size=7).map(" ".join),
    st.text(max_size=30),
)
KNOWN_BAD = [
    "61 * * * *",
    "* * *",
    "* * * * * * *",
    "0 0 30 2 *",  # 30 February: it would never fire
    "",
    "@reboot",
    "x" * 10_000,
    "*/0 * * * *",
]


KNOWN_GOOD = ["*/5 * * * *", "0 0 * * MON", "@daily", "*/10 * * * * *", "0 12 1-5 JAN *"]


async def test_cron_strings_are_stored_only_when_they_parse(sqlite_url: str) -> None:
    drawn = await asyncio.to_thread(draw, CRON_STRINGS, EXAMPLES)
    expressions = KNOWN_BAD + KNOWN_GOOD + drawn
    accepted: list[str] = []
    refused: dict[str, int] = {}
    async with Queue(sqlite_url) as queue, running_api(queue) as api:
        for n, expression in enumerate(expressions):
            name = f"fuzz-{n}"
            try:
                cron = await queue.add_cron_job(name, expression, "report")
            except AgentQueueError as error:
                refused[error.code] = refused.get(error.code, 0) + 1
                assert await queue.get_cron_job(name) is None, expression
                continue
            assert cron.next_run_at is not None, expression
            accepted.append(expression)
        assert not set(KNOWN_BAD) & set(accepted), accepted
        assert set(KNOWN_GOOD) <= set(accepted), accepted
        for n, expression in enumerate(KNOWN_BAD):
            body = {"name": f"rest-{n}", "expression": expression, "job_type": "report"}
            answer = await api.client.post("/api/v1/cron", json=body)
            assert answer.status_code == 422, (expression, answer.status_code)
        # A pass over every schedule accepted fires or waits; it never crashes.
        await queue.maintain()
        stored = await queue.list_cron_jobs()
    assert sorted(c.expression for c in stored) == sorted(accepted)
    assert set(refused) == {"invalid_argument"}, refused
    record(
        "11-cron-strings",
        "sqlite",
        expressions=len(expressions),
        accepted=len(accepted),
        refused=sum(refused.values()),
        known_bad_accepted=0,
    )
