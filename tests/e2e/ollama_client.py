"""The official ollama client through llmgate (host=http://HOST:PORT/ollama) to the mock."""
import sys

import ollama

client = ollama.Client(host=sys.argv[1], timeout=10)

tags = client.list()
assert [m.model for m in tags.models] == ["mock-model:latest"], tags

reply = client.chat(model="mock-model", messages=[{"role": "user", "content": "hi"}], stream=False)
assert reply.message.content == "Hello from the mock", reply
assert reply.eval_count == 4, reply

parts, final = [], None
for part in client.chat(model="mock-model", messages=[{"role": "user", "content": "hi"}], stream=True):
    parts.append(part.message.content)
    if part.done:
        final = part
assert "".join(parts) == "Hello from the mock", parts
assert final is not None and final.prompt_eval_count == 8 and final.eval_count == 4, final

gen = "".join(p.response for p in client.generate(model="mock-model", prompt="hi", stream=True))
assert gen == "Hello from the mock", gen
print("ollama client: ok")
