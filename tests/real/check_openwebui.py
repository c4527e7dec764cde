"""Checks through llmgate in front of a real Open WebUI, with the official openai client.

Usage: check_openwebui.py LLMGATE_URL SK_KEY JWT
"""
import json
import socket
import sys
import urllib.error
import urllib.request

import openai

base, sk, jwt = sys.argv[1], sys.argv[2], sys.argv[3]


def status(path, headers=None):
    req = urllib.request.Request(base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# Public before sign-in; everything else needs a credential.
assert status("/api/config")[0] == 200, status("/api/config")
assert status("/")[0] == 200
code, body = status("/api/models")
assert code == 401 and json.loads(body)["error"]["code"] == "missing_api_key", (code, body)
code, body = status("/api/models", {"Authorization": "Bearer sk-" + "0" * 32})
assert code == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", (code, body)
code, _ = status("/ws/socket.io/?EIO=4&transport=polling")
assert code == 401, code

for name, cred in [("sk- key", sk), ("JWT", jwt)]:
    client = openai.OpenAI(base_url=base + "/api", api_key=cred, max_retries=0)
    ids = [m.id for m in client.models.list().data]
    assert "fake-gpt" in ids, ids
    stream = client.chat.completions.create(
        model="fake-gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    assert text == "Hello from the fake model.", text
    # The browser's way: the JWT as the token cookie.
    print(f"ok: {name}: models {ids}, streamed {text!r}")

code, _ = status("/api/v1/auths/", {"Cookie": "token=" + jwt})
assert code == 200, code


def upgrade(cookie):
    """Status of a WebSocket upgrade of Open WebUI's Socket.IO endpoint."""
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall((
            "GET /ws/socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            + (f"Cookie: token={cookie}\r\n" if cookie else "") + "\r\n").encode())
        return int(s.recv(4096).split(b" ")[1])


assert upgrade(None) == 401, "anonymous socket was let through"
assert upgrade(jwt) == 101, "signed-in socket was refused"
print("ok: Socket.IO upgrade needs the token cookie")
try:
    openai.OpenAI(base_url=base + "/api", api_key="sk-" + "1" * 32, max_retries=0).models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass
print("ok: all checks passed")
