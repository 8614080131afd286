"""The load generator of bench/doors.py: N keep-alive clients posting jobs as fast as answered.

    python bench/doors_load.py http://127.0.0.1:8001 --clients 10 --start-at T --seconds 10

Each client sends `POST /api/v1/jobs` with `{"job_type": "bench.noop", "payload": {"i": n}}`,
waits for the answer and sends the next, on one kept-alive connection. The clients run from
the start until `--start-at` (a `time.time()` value, the same for every load process) as a
warm-up, then for `--seconds` measured: a request counts when it started and ended inside the
window. Prints one JSON object: requests, errors, the window and each request's latency (ms).

Two clients: `httpx` (an `httpx.AsyncClient`, keep-alive) and `raw` (HTTP/1.1 on asyncio
streams, a fraction of httpx's CPU per request), so the client can be kept from being the
limit on a small machine; bench/doors.py measures the CPU each side used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

PATH = "/api/v1/jobs"
JOB_TYPE = "bench.noop"

Post = Callable[[bytes], Awaitable[int]]
"""Send one body, return the answer's status."""


def body(n: int) -> bytes:
    """The n-th request's JSON body."""
    return b'{"job_type":"%s","payload":{"i":%d}}' % (JOB_TYPE.encode(), n)


class RawConnection:
    """One kept-alive HTTP/1.1 connection that posts JSON bodies and reads sized answers."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, payload: bytes) -> int:
        """Send one request and read its whole answer; return the status."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(b"%s%d\r\n\r\n%s" % (self.head, len(payload), payload))
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def drive(posts: list[Post], start_at: float, seconds: float) -> tuple[list[float], int, int]:
    """Run one loop per client until the window ends; return (latencies ms, requests, errors)
    of the requests inside the window."""
    end_at = start_at + seconds
    latencies: list[float] = []
    errors = 0
    counter = iter(range(1 << 62))

    async def client(post: Post) -> None:
        nonlocal errors
        while True:
            started = time.time()
            if started >= end_at:
                return
            began = time.perf_counter()
            status = await post(body(next(counter)))
            took = time.perf_counter() - began
            if started >= start_at and started + took <= end_at:
                latencies.append(took * 1000)
                if status not in (200, 201):
                    errors += 1

    await asyncio.gather(*(client(post) for post in posts))
    return latencies, len(latencies), errors


async def run(base: str, clients: int, kind: str, start_at: float, seconds: float) -> dict:
    """Drive `base` with `clients` connections of the `kind` client; the result as a dict."""
    if kind == "raw":
        connections = [RawConnection(base) for _ in range(clients)]
        try:
            latencies, requests, errors = await drive(
                [c.post for c in connections], start_at, seconds
            )
        finally:
            for connection in connections:
                await connection.close()
    else:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=base, limits=limits, headers=headers) as http:

            async def post(payload: bytes) -> int:
                return (await http.post(PATH, content=payload)).status_code

            latencies, requests, errors = await drive([post] * clients, start_at, seconds)
    return {"requests": requests, "errors": errors, "seconds": seconds, "latencies_ms": latencies}


def main() -> None:
    """Parse the arguments, drive the server, print the result as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the server's base URL")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--start-at", type=float, required=True, help="time.time() of the window")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.base, args.clients, args.client, args.start_at, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
