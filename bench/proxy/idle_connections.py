#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, sends one GET on each and reads its answer, then
holds them all idle until stdin closes. Prints "ready <n>" once every connection has had its
answer. Used by bench/proxy/run.sh to measure a proxy's memory with many idle clients."""
import asyncio
import sys


async def one(host, port, path, held):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    held.append(writer)


async def main():
    host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    held = []
    batch = 500
    for start in range(0, count, batch):
        await asyncio.gather(*(one(host, port, path, held) for _ in range(min(batch, count - start))))
    print(f"ready {len(held)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in held:
        w.close()


asyncio.run(main())
