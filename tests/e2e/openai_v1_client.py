"""The official openai client with base_url=http://HOST:PORT/v1: one llmgate endpoint serves
the local model (through Open WebUI) and a relay's model (routed by the body's model)."""
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0, timeout=10)

ids = [m.id for m in client.models.list().data]
assert ids == ["mock-model", "gpt-4o"], ids

for model, text in [("mock-model", "Hello from the mock"), ("gpt-4o", "Hello from the relay")]:
    done = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    assert done.choices[0].message.content == text, (model, done)
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(parts) == text, (model, parts)
print("openai v1 client: ok")
