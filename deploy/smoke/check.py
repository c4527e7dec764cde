"""Client side of deploy/smoke/run.sh.

    python3 check.py proxy PROXY_PORT        requests through llmgate reach Open WebUI
    python3 check.py prometheus PROM_PORT N   Prometheus scrapes llmgate: up == 1 and at least
                                              N llmgate_requests_total, within 30 s
"""

import json
import sys
import time
import urllib.parse
import urllib.request


def proxy(port):
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(base + "/api/version", timeout=5) as r:
        body = json.load(r)
        assert r.status == 200, r.status
        assert body["version"] == "0.12.4-standin", body
        assert r.headers["x-request-id"], "llmgate did not add x-request-id"
        assert r.headers["x-standin-forwarded-for"] == "127.0.0.1", dict(r.headers)
    req = urllib.request.Request(
        base + "/api/chat/completions",
        data=json.dumps({"model": "m", "stream": True, "messages": []}).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer sk-smoke"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["content-type"] == "text/event-stream", dict(r.headers)
        events = [line for line in r.read().decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]", events
    text = "".join(json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-1])
    assert text == "Hello from the stand-in", text
    with urllib.request.urlopen(base + "/health", timeout=5) as r:
        assert json.load(r) == {"status": True}
    print("smoke: 3 requests went through llmgate (JSON, an SSE stream, /health)")


def query(port, promql):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return [float(s["value"][1]) for s in body["data"]["result"]]


def prometheus(port, want):
    deadline = time.monotonic() + 30
    up, total = [], []
    while time.monotonic() < deadline:
        try:
            up = query(port, 'up{job="llmgate"}')
            total = query(port, 'sum(llmgate_requests_total{job="llmgate"})')
        except OSError:
            pass
        if up == [1.0] and total and total[0] >= want:
            print(f'smoke: Prometheus scrapes llmgate: up{{job="llmgate"}} = 1, '
                  f"llmgate_requests_total = {total[0]:.0f}")
            return
        time.sleep(0.5)
    sys.exit(f"smoke: Prometheus did not see llmgate within 30 s: up={up} requests_total={total}")


if __name__ == "__main__":
    {"proxy": lambda: proxy(sys.argv[2]),
     "prometheus": lambda: prometheus(sys.argv[2], float(sys.argv[3]))}[sys.argv[1]]()
