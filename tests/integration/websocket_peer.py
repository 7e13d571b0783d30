#!/usr/bin/python3
"""A real WebSocket server and client (Debian's python3-websockets) for the proxy's Upgrade
tunnel tests.

  websocket_peer.py server PORT [CERT KEY]
                                    echoes every message back, on 127.0.0.1:PORT, until killed;
                                    over TLS with the certificate and key given
  websocket_peer.py client URL [CA] sends text, a 1 MiB binary message and a ping through URL,
                                    checks each echo, closes cleanly; prints one line per check
                                    and exits 0 when all passed. A wss:// URL is verified
                                    against the CA file given.
"""
import asyncio
import ssl
import sys

import websockets


async def serve(port, cert=None, key=None):
    async def echo(ws, *_):
        async for message in ws:
            await ws.send(message)

    context = None
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    async with websockets.serve(echo, "127.0.0.1", port, max_size=4 * 1024 * 1024,
                                ssl=context):
        await asyncio.Future()


async def client(url, ca=None):
    ok = True
    context = ssl.create_default_context(cafile=ca) if ca else None
    async with websockets.connect(url, max_size=4 * 1024 * 1024, open_timeout=5,
                                  ssl=context) as ws:
        await ws.send("hello tether")
        text = await asyncio.wait_for(ws.recv(), 5)
        print("text", "ok" if text == "hello tether" else "wrong: " + repr(text)[:80])
        ok = ok and text == "hello tether"
        blob = bytes((i * 7) % 251 for i in range(1024 * 1024))
        await ws.send(blob)
        back = await asyncio.wait_for(ws.recv(), 10)
        print("binary", "ok" if back == blob else "wrong")
        ok = ok and back == blob
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)
        print("ping", "ok")
    print("close", ws.close_code)
    ok = ok and ws.close_code == 1000
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2]), *sys.argv[3:5]))
    else:
        sys.exit(asyncio.run(client(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)))
