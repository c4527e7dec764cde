"""The official openai client through llmgate (base_url=http://HOST:PORT/api) to the mock."""
import sys

import openai

base = sys.argv[1]
client = openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0, timeout=10)

models = client.models.list()
assert [m.id for m in models.data] == ["mock-model"], models

done = client.chat.completions.create(
    model="mock-model", messages=[{"role": "user", "content": "hi"}]
)
assert done.choices[0].message.content == "Hello from the mock", done
assert done.usage.total_tokens == 12, done.usage

stream = client.chat.completions.create(
    model="mock-model",
    messages=[{"role": "user", "content": "hi"}],
    stream=True,
    stream_options={"include_usage": True},
)
parts, usage = [], None
for chunk in stream:
    if chunk.choices:
        parts.append(chunk.choices[0].delta.content or "")
    if chunk.usage:
        usage = chunk.usage
assert "".join(parts) == "Hello from the mock", parts
assert usage is not None and usage.completion_tokens == 4, usage

try:
    client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected an error for an unknown model")
except openai.BadRequestError as e:
    assert e.status_code == 400
print("openai client: ok")
