"""A small HTTP/1.1 backend for the proxy's process tests (Python's http.server, threaded).

Prints its port on the first line of stdout, then serves until killed:
  /slow?ms=N  answers 200 "ok" after N milliseconds (default 1500)
  anything    answers 200 "ok"
"""
import http.server
import sys
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/slow":
            ms = int(urllib.parse.parse_qs(url.query).get("ms", ["1500"])[0])
            time.sleep(ms / 1000.0)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
