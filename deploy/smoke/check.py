"""Client side of deploy/smoke/run.sh.

    python3 check.py proxy PROXY_PORT KEY SECRET
        requests through llmgate reach Open WebUI: public ones without a credential, the others
        with an llmgate key (KEY) or an Open WebUI JWT signed with WEBUI_SECRET_KEY (SECRET);
        without a credential they get 401
    python3 check.py prometheus PROM_PORT N
        Prometheus scrapes llmgate (up == 1, at least N llmgate_requests_total) within 30 s,
        and has loaded the alert rules
"""

import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def jwt(secret, claims):
    """An HS256 JWT as Open WebUI signs its session tokens."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def chat_stream(base, credential):
    headers = {"content-type": "application/json"}
    if credential:
        headers["authorization"] = f"Bearer {credential}"
    req = urllib.request.Request(
        base + "/api/chat/completions",
        data=json.dumps({"model": "m", "stream": True, "messages": []}).encode(),
        headers=headers,
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["content-type"] == "text/event-stream", dict(r.headers)
        assert r.headers["x-ratelimit-limit-requests"], "no rate-limit headers"
        events = [line for line in r.read().decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]", events
    text = "".join(json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-1])
    assert text == "Hello from the stand-in", text


def proxy(port, key, secret):
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(base + "/api/version", timeout=5) as r:
        body = json.load(r)
        assert r.status == 200, r.status
        assert body["version"] == "0.12.4-standin", body
        assert r.headers["x-request-id"], "llmgate did not add x-request-id"
        assert r.headers["x-standin-forwarded-for"] == "127.0.0.1", dict(r.headers)
    try:
        chat_stream(base, None)
        sys.exit("smoke: a chat without a credential went through")
    except urllib.error.HTTPError as e:
        assert e.code == 401, e.code
        assert json.load(e)["error"]["type"], "401 without an OpenAI-shaped body"
    chat_stream(base, key)
    chat_stream(base, jwt(secret, {"id": "smoke-user", "exp": int(time.time()) + 300}))
    with urllib.request.urlopen(base + "/health", timeout=5) as r:
        assert json.load(r) == {"status": True}
    print("smoke: public /api/version and /health pass without a credential; a chat gets 401 "
          "without one and streams with an llmgate key and with an Open WebUI JWT")


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
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as r:
                groups = json.load(r)["data"]["groups"]
            rules = sum(len(g["rules"]) for g in groups)
            assert rules > 0, "Prometheus loaded no alert rules from alerts.yml"
            print(f"smoke: Prometheus loaded {rules} alert rules from alerts.yml")
            return
        time.sleep(0.5)
    sys.exit(f"smoke: Prometheus did not see llmgate within 30 s: up={up} requests_total={total}")


if __name__ == "__main__":
    {"proxy": lambda: proxy(sys.argv[2], sys.argv[3], sys.argv[4]),
     "prometheus": lambda: prometheus(sys.argv[2], float(sys.argv[3]))}[sys.argv[1]]()
