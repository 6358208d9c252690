"""Serve recorded HTTP responses byte for byte, on their recorded schedule, on 127.0.0.1.

Each case (see tests/fixtures/sse_cases.json) contains a status line, headers, body chunks,
and the milliseconds after the request head was read at which the headers and each chunk
go out. A request to ``/<case id>/...`` gets that case. Chunked bodies are sent as one
HTTP chunk per recorded chunk. ``replay`` hints change the ending:
``close_without_terminator`` and ``close_after_last_chunk`` close the socket after the
last chunk, ``stall_after_last_chunk_ms`` keeps it open and silent (at most
``--max-stall-s``), and ``second_request_chunks`` replaces the body of every second
request of the case.

Run: python tests/support/replay_server.py CASES.json [MORE.json ...] [--port 0] [--max-stall-s 40];
it prints ``listening on http://127.0.0.1:PORT`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


class ReplayServer:
    def __init__(self, cases: dict[str, dict], max_stall_s: float) -> None:
        self.cases = cases
        self.max_stall_s = max_stall_s
        self.requests_per_case: dict[str, int] = {}

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.handle_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def handle_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection stays open."""
        head = await reader.readuntil(b"\r\n\r\n")
        received_at = time.monotonic()
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        _method, path, _version = request_line.split(" ", 2)
        body_length = 0
        for line in header_lines:
            field, _, value = line.partition(":")
            if field.strip().lower() == "content-length":
                body_length = int(value)
        if body_length:
            await reader.readexactly(body_length)

        case = self.cases.get(path.strip("/").split("/", 1)[0])
        if case is None:
            body = b'{"error": {"message": "unknown case id", "type": "not_found"}}'
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return True
        return await self.replay(case, received_at, writer)

    async def replay(self, case: dict, received_at: float, writer: asyncio.StreamWriter) -> bool:
        hints = case.get("replay") or {}
        count = self.requests_per_case.get(case["id"], 0) + 1
        self.requests_per_case[case["id"]] = count
        chunks = case["chunks"]
        if count % 2 == 0 and "second_request_chunks" in hints:
            chunks = hints["second_request_chunks"]
        headers = case["headers"]
        chunked = any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers.items())

        async def sleep_until(offset_ms: float) -> None:
            delay = received_at + offset_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

        await sleep_until(case.get("headers_time_ms", 0))
        head = case["status"] + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1"))
        await writer.drain()
        for chunk, offset_ms in zip(chunks, case["chunk_times_ms"]):
            await sleep_until(offset_ms)
            data = chunk.encode("latin-1")  # one character per byte in the fixture
            if data:
                writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                await writer.drain()

        if "stall_after_last_chunk_ms" in hints:
            await asyncio.sleep(min(hints["stall_after_last_chunk_ms"] / 1000, self.max_stall_s))
            return False
        if hints.get("close_without_terminator") or hints.get("close_after_last_chunk"):
            return False
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        closes = case["status"].startswith("HTTP/1.0") or any(
            k.lower() == "connection" and v.lower() == "close" for k, v in headers.items()
        )
        return not closes


async def serve(cases_paths: list[str], port: int, max_stall_s: float) -> None:
    cases = {}
    for path in cases_paths:
        with open(path, encoding="utf-8") as file:
            cases.update({case["id"]: case for case in json.load(file)})
    server = await asyncio.start_server(ReplayServer(cases, max_stall_s).handle_connection, "127.0.0.1", port)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="Replay recorded HTTP streaming responses on 127.0.0.1.")
    parser.add_argument("cases", nargs="+", help="cases JSON files")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 picks a free one)")
    parser.add_argument("--max-stall-s", type=float, default=40.0, help="cap on a recorded stall, in seconds")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.cases, args.port, args.max_stall_s))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
