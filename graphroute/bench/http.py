"""A minimal HTTP/1.1 keep-alive client for the service benchmarks.

Minimal on purpose: the server and the load share the machine's cores, and httpx spends about 2.6 ms of CPU per
request (measured) that would be taken from the server being measured.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (servers started by benchmarks and tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Connection:
    """One keep-alive connection to a server on 127.0.0.1."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, float]:
        """One request; returns the status, the body and the seconds from sending to the last byte read."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(payload)}\r\n"
        head += "Content-Type: application/json\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        start = time.perf_counter()
        self.writer.write(head.encode() + b"\r\n" + payload)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = await self.reader.readexactly(length)
        return status, data, time.perf_counter() - start

    def close(self) -> None:
        self.writer.close()


async def post_all(
    port: int, bodies: list[dict[str, Any]], clients: int, path: str = "/v1/route"
) -> tuple[list[float], int]:
    """POST each body over ``clients`` keep-alive connections; per-request seconds and the non-200 count."""
    seconds: list[float] = []
    failures = 0

    async def connection(part: list[dict[str, Any]]) -> None:
        nonlocal failures
        conn = await Connection.open(port)
        try:
            for body in part:
                status, _, took = await conn.call("POST", path, body)
                seconds.append(took)
                failures += status != 200
        finally:
            conn.close()

    await asyncio.gather(*(connection(bodies[i::clients]) for i in range(clients)))
    return seconds, failures
