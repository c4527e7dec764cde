"""A stand-in for Open WebUI in deploy/smoke/run.sh: the few endpoints the smoke check uses.

    python3 openwebui_standin.py PORT

/health and /api/version answer JSON; POST /api/chat/completions streams three SSE chunks and
[DONE] with chunked encoding, as Open WebUI does. Every answer echoes the X-Forwarded-For it
received, so the check can see that the request went through llmgate.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-standin-forwarded-for", self.headers.get("x-forwarded-for", ""))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._json(200, {"status": True})
        elif self.path == "/api/version":
            self._json(200, {"version": "0.12.4-standin"})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        if self.path != "/api/chat/completions":
            self._json(404, {"detail": "Not Found"})
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-standin-forwarded-for", self.headers.get("x-forwarded-for", ""))
        self.end_headers()
        for word in ["Hello", " from", " the stand-in"]:
            event = {"choices": [{"delta": {"content": word}}]}
            self._chunk(f"data: {json.dumps(event)}\n\n".encode())
            time.sleep(0.05)
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def log_message(self, fmt, *args):
        sys.stderr.write("standin: " + (fmt % args) + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
