#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, sends one GET on each and reads its answer (with a
Content-Length, or chunked), then holds them all idle until stdin closes. Usage: HOST PORT COUNT
PATH [BATCH=500], BATCH the connections opened at once. Prints "ready <n>" once every connection has had its
answer. Used by bench/proxy/run.sh to measure a proxy's memory with many idle clients."""
import asyncio
import sys


async def one(host, port, path, held):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    chunked = False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
            chunked = True
    if chunked:
        await reader.readuntil(b"\r\n0\r\n\r\n")  # the last chunk, no trailers
    else:
        await reader.readexactly(length)
    held.append(writer)


async def main():
    host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 500  # connections opened at once
    held = []
    for start in range(0, count, batch):
        await asyncio.gather(*(one(host, port, path, held) for _ in range(min(batch, count - start))))
    print(f"ready {len(held)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in held:
        w.close()


asyncio.run(main())
