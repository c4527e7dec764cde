"""A tiny OpenAI-compatible backend for Open WebUI in tests/real: one model, streamed replies."""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-gpt"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.send_json({"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "test"}]})
        else:
            self.send_json({"error": {"message": "not found"}}, 404)

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        req = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.endswith("/chat/completions"):
            return self.send_json({"error": {"message": "not found"}}, 404)
        words = ["Hello", " from", " the", " fake", " model."]
        if not req.get("stream"):
            return self.send_json({
                "id": "c1", "object": "chat.completion", "created": 0, "model": MODEL,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(words)}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def chunk(obj):
            data = f"data: {obj}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for i, w in enumerate(words):
            delta = {"content": w} if i else {"role": "assistant", "content": w}
            chunk(json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 0,
                              "model": MODEL, "choices": [{"index": 0, "delta": delta,
                                                           "finish_reason": None}]}))
            time.sleep(0.02)
        chunk(json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 0,
                          "model": MODEL, "choices": [{"index": 0, "delta": {},
                                                       "finish_reason": "stop"}]}))
        chunk("[DONE]")
        self.wfile.write(b"0\r\n\r\n")


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
