//! What one event says: an SSE `data:` payload, an NDJSON line, or the head and tail of a
//! JSON body. Byte scans (memchr) find the few keys that matter; serde_json only ever sees a
//! `usage` object, never a whole body.
//!
//! Key patterns carry their quotes, so they match keys, never text inside a string value
//! (a quote inside a JSON string is always escaped).

use memchr::memmem::Finder;
use serde::Deserialize;
use std::sync::LazyLock;

/// Token counts from a usage object or Ollama's final counters; `None` where absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
}

impl Counts {
    pub fn any(&self) -> bool {
        self.prompt.is_some() || self.completion.is_some()
    }

    /// Later reports win field by field (Anthropic sends input and output in separate events).
    pub fn merge(&mut self, later: Counts) {
        self.prompt = later.prompt.or(self.prompt);
        self.completion = later.completion.or(self.completion);
    }
}

/// What an LLM event carries.
#[derive(Debug, Default)]
pub struct Event<'a> {
    /// Generated output: text, reasoning or tool-call arguments.
    pub content: bool,
    pub model: Option<&'a str>,
    pub usage: Counts,
}

struct Keys {
    choices: Finder<'static>,
    done: Finder<'static>,
    ty: Finder<'static>,
    object: Finder<'static>,
    model: Finder<'static>,
    usage: Finder<'static>,
    /// Also matches `"reasoning_content"`.
    content: Finder<'static>,
    reasoning: Finder<'static>,
    text: Finder<'static>,
    arguments: Finder<'static>,
    response: Finder<'static>,
    thinking: Finder<'static>,
    eval_count: Finder<'static>,
    prompt_eval_count: Finder<'static>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    choices: Finder::new(b"\"choices\""),
    done: Finder::new(b"\"done\""),
    ty: Finder::new(b"\"type\""),
    object: Finder::new(b"\"object\""),
    model: Finder::new(b"\"model\""),
    usage: Finder::new(b"\"usage\""),
    content: Finder::new(b"content\""),
    reasoning: Finder::new(b"\"reasoning\""),
    text: Finder::new(b"\"text\""),
    arguments: Finder::new(b"\"arguments\""),
    response: Finder::new(b"\"response\""),
    thinking: Finder::new(b"\"thinking\""),
    eval_count: Finder::new(b"\"eval_count\""),
    prompt_eval_count: Finder::new(b"\"prompt_eval_count\""),
});

/// Longest model name taken from a response; longer ones are ignored.
const MAX_MODEL_LEN: usize = 256;

/// Which API a stream speaks, learned from its first LLM event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    Unknown,
    /// OpenAI chat and text completion chunks, and Open WebUI's conversions of Ollama.
    Chat,
    /// Ollama /api/chat and /api/generate lines.
    Ollama,
    /// OpenAI Responses and Anthropic Messages events (`"type": ...`).
    Typed,
}

/// Inspects one JSON event of a stream. `None` when it is not an LLM event (an Open WebUI
/// `sources` line, a pull progress line, a status event...). Once `dialect` is known, the
/// key that identified it is no longer searched for in every event.
pub fn inspect<'a>(json: &'a [u8], want_model: bool, dialect: &mut Dialect) -> Option<Event<'a>> {
    let k = &*KEYS;
    let mut ev = match *dialect {
        Dialect::Chat => chat(json),
        Dialect::Ollama => ollama(json, None),
        Dialect::Typed => typed(json)?,
        Dialect::Unknown => {
            if let Some(at) = k.choices.find(json) {
                *dialect = Dialect::Chat;
                chat(&json[at..])
            } else if let Some(at) = k.done.find(json) {
                *dialect = Dialect::Ollama;
                ollama(json, Some(at))
            } else {
                let ev = typed(json)?;
                *dialect = Dialect::Typed;
                ev
            }
        }
    };
    if want_model {
        ev.model = model_in(json);
    }
    Some(ev)
}

/// A chat chunk, from its `"choices"` on.
fn chat(choices: &[u8]) -> Event<'_> {
    let k = &*KEYS;
    let content = [&k.content, &k.reasoning, &k.text, &k.arguments]
        .iter()
        .find_map(|f| nonempty_string(choices, f));
    Event {
        content: content.is_some(),
        model: None,
        // Usage follows the choices, and in a content chunk (if ever) the content too, so
        // the common chunk is scanned to its end only once.
        usage: usage_object(&choices[content.unwrap_or(0)..]),
    }
}

/// An Ollama line; `done_at` is where its `"done"` key is, if already found.
fn ollama(json: &[u8], done_at: Option<usize>) -> Event<'_> {
    let k = &*KEYS;
    let content = [&k.content, &k.response, &k.thinking]
        .iter()
        .any(|f| nonempty_string(json, f).is_some());
    let mut ev = Event {
        content,
        ..Event::default()
    };
    if !content {
        // Only the `done: true` line, which has no content, carries the counters.
        let done = done_at.or_else(|| k.done.find(json));
        if done
            .is_some_and(|at| value_after(json, at + k.done.needle().len()).first() == Some(&b't'))
        {
            ev.usage = ollama_counts(json);
        }
    }
    ev
}

/// A Responses or Anthropic event; `None` for other `"type"`d objects.
fn typed(json: &[u8]) -> Option<Event<'_>> {
    let ty = string_value(json, &KEYS.ty)?;
    let llm = ty.starts_with(b"response.")
        || ty.starts_with(b"message_")
        || ty.starts_with(b"content_block_");
    llm.then(|| Event {
        content: ty.ends_with(b".delta") || ty == b"content_block_delta",
        model: None,
        usage: usage_object(json),
    })
}

/// Whether the start of a JSON body is a completion (chat, text, Responses, Anthropic,
/// embeddings) rather than any other API answer that happens to mention usage.
pub fn completion_head(head: &[u8]) -> bool {
    let k = &*KEYS;
    let Some(rest) = head.trim_ascii_start().strip_prefix(b"{") else {
        return false;
    };
    if rest.trim_ascii_start().starts_with(b"\"model\"") {
        return true; // Ollama: "model" is always the first key
    }
    match string_value(head, &k.object) {
        Some(o) => matches!(
            o,
            b"chat.completion" | b"text_completion" | b"response" | b"list"
        ),
        None => string_value(head, &k.ty) == Some(b"message"),
    }
}

/// The last usage object, else Ollama's counters, anywhere in `bytes`.
pub fn any_usage(bytes: &[u8]) -> Counts {
    let c = last(&KEYS.usage, bytes).map_or_else(Counts::default, |at| usage_at(bytes, at));
    if c.any() {
        c
    } else {
        ollama_counts(bytes)
    }
}

/// The first `"model"` string value, if it is a plausible model name.
pub fn model_in(bytes: &[u8]) -> Option<&str> {
    let m = string_value(bytes, &KEYS.model)?;
    if m.is_empty() || m.len() > MAX_MODEL_LEN {
        return None;
    }
    std::str::from_utf8(m).ok()
}

/// The last `"model"` string value (for bodies whose model comes after large fields).
pub fn last_model_in(bytes: &[u8]) -> Option<&str> {
    let at = memchr::memmem::rfind(bytes, b"\"model\"")?;
    model_in(&bytes[at..])
}

#[derive(Deserialize)]
struct UsageObject {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// Parses the first `"usage": {...}` object; `"usage": null` and broken ones count as none.
fn usage_object(json: &[u8]) -> Counts {
    KEYS.usage
        .find(json)
        .map_or_else(Counts::default, |at| usage_at(json, at))
}

/// Parses the usage object whose key starts at `at`.
fn usage_at(json: &[u8], at: usize) -> Counts {
    let value = value_after(json, at + b"\"usage\"".len());
    if value.first() != Some(&b'{') {
        return Counts::default();
    }
    // Reads one object and stops; whatever follows it in the event is not looked at.
    let mut de = serde_json::Deserializer::from_slice(value);
    match UsageObject::deserialize(&mut de) {
        Ok(u) => Counts {
            prompt: u.prompt_tokens.or(u.input_tokens),
            completion: u.completion_tokens.or(u.output_tokens),
        },
        Err(_) => Counts::default(),
    }
}

fn ollama_counts(json: &[u8]) -> Counts {
    let k = &*KEYS;
    let number = |f: &Finder| {
        let at = last(f, json)?;
        let v = value_after(json, at + f.needle().len());
        let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&v[..digits]).ok()?.parse().ok()
    };
    Counts {
        prompt: number(&k.prompt_eval_count),
        completion: number(&k.eval_count),
    }
}

/// The last occurrence of `key`. Searched forwards: memchr's forward search is vectorised and
/// its reverse one is not, so over an 8 KiB tail with no match this is several times cheaper.
fn last(key: &Finder, hay: &[u8]) -> Option<usize> {
    key.find_iter(hay).last()
}

/// Where the first occurrence of the key with a non-empty string value is.
fn nonempty_string(json: &[u8], key: &Finder) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = key.find(&json[from..]) {
        let at = from + i;
        let v = value_after(json, at + key.needle().len());
        if v.len() >= 2 && v[0] == b'"' && v[1] != b'"' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The first occurrence of the key with a string value, without its quotes. Strings with
/// escapes are skipped: names and types never need them.
fn string_value<'a>(json: &'a [u8], key: &Finder) -> Option<&'a [u8]> {
    key.find_iter(json).find_map(|at| {
        let v = value_after(json, at + key.needle().len()).strip_prefix(b"\"")?;
        let end = memchr::memchr2(b'"', b'\\', v)?;
        (v[end] == b'"').then(|| &v[..end])
    })
}

/// What follows `key":` (whitespace skipped), or nothing if no colon follows.
fn value_after(json: &[u8], after_key: usize) -> &[u8] {
    let rest = json.get(after_key..).unwrap_or_default().trim_ascii_start();
    match rest.strip_prefix(b":") {
        Some(v) => v.trim_ascii_start(),
        None => &[],
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
