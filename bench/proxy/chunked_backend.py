#!/usr/bin/env python3
"""A backend whose every answer is a chunked body of many small chunks (4,000 chunks of 10
bytes), sent in one write: a proxy reading it gets thousands of body pieces per read. Used by
bench/proxy/idle_memory.sh to see what such a response leaves behind on a connection that then
goes idle. Listens on 127.0.0.1:PORT until killed."""
import asyncio
import sys

BODY = b"a\r\n0123456789\r\n" * 4000 + b"0\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + BODY


async def serve(reader, writer):
    pending = b""
    while True:
        try:
            data = await reader.read(65536)
        except ConnectionError:
            break  # a proxy stopped by the benchmark may reset its pooled connections
        if not data:
            break
        pending += data
        while b"\r\n\r\n" in pending:
            _, pending = pending.split(b"\r\n\r\n", 1)  # requests without bodies
            writer.write(RESPONSE)
            await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()


asyncio.run(main())
