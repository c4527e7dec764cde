//! An incremental scanner for the top-level `model` members of a JSON object, fed frame by
//! frame, that never builds the document: nested values and strings are skipped (strings with
//! `memchr`), and only the keys and string values of top-level members named `model` are
//! decoded.
//!
//! It reports every top-level `model` member, because upstream parsers take the last of
//! duplicate keys (Python, Go) and Go's `encoding/json` (Ollama) also matches `Model` or
//! `MODEL`: an access check must see them all, routing uses the first exact one.

mod fields;
mod string;

pub use fields::{Field, Span};
use memchr::memchr2;
use string::{Char, Escape};

/// Longest model id decoded; longer values are reported as unreadable.
const MAX_MODEL_LEN: usize = 1024;
/// Longest key told apart (`max_completion_tokens`).
const KEY_LEN: usize = 21;
/// Most field spans kept (duplicates included).
const MAX_SPANS: usize = 16;

/// A top-level member whose key is `model`, ignoring ASCII case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The decoded key is exactly `model`.
    pub exact: bool,
    /// The decoded string value; `None` when the value is not a string or cannot be read.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The top-level object is still open.
    Scanning,
    /// The top-level object closed.
    Closed,
    /// The body is not a JSON object (an upload, a form, an array, ...).
    NotObject,
    /// No JSON parser would accept it as UTF-8 JSON (this includes UTF-16 and UTF-32 bodies,
    /// which Python's `json.loads` would still decode).
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{`; the count is how many bytes of a UTF-8 BOM were seen.
    Start(u8),
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,`: a key.
    Key,
    InKey,
    Colon,
    Value,
    InModel,
    /// Inside a string value; `depth` says whether it belongs to a nested value.
    SkipString,
    /// Inside an array or object value, `depth` levels down.
    Nested,
    /// Inside a number or literal.
    Scalar,
    AfterValue,
    Done(Status),
}

#[derive(Debug)]
pub struct Scanner {
    state: State,
    depth: u32,
    escape: Escape,
    /// A high surrogate waiting for its low half.
    high: Option<u32>,
    key: [u8; KEY_LEN],
    /// Decoded characters in the current key (only the first `KEY_LEN` are kept).
    key_len: usize,
    key_ascii: bool,
    exact: bool,
    value: Vec<u8>,
    value_ok: bool,
    found: Vec<Found>,
    /// Body bytes fed before the current frame.
    pos: u64,
    /// Offset of the top-level `{`.
    open_at: Option<u64>,
    /// The field whose value is being skipped, and where that value started.
    field: Option<(Field, u64)>,
    spans: Vec<Span>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Self {
            state: State::Start(0),
            depth: 0,
            escape: Escape::None,
            high: None,
            key: [0; KEY_LEN],
            key_len: 0,
            key_ascii: true,
            exact: false,
            value: Vec::new(),
            value_ok: true,
            found: Vec::new(),
            pos: 0,
            open_at: None,
            field: None,
            spans: Vec::new(),
        }
    }

    /// Offset of the top-level `{`, once seen.
    pub fn open_at(&self) -> Option<u64> {
        self.open_at
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.pos
    }

    /// Value spans of the top-level members in `Field`, in body order.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    fn value_end(&mut self, end: u64) {
        if let Some((field, start)) = self.field.take() {
            if self.spans.len() < MAX_SPANS {
                self.spans.push(Span { field, start, end });
            }
        }
    }

    pub fn status(&self) -> Status {
        match self.state {
            State::Done(s) => s,
            _ => Status::Scanning,
        }
    }

    /// `model` members completed since the last call.
    pub fn take_found(&mut self) -> Vec<Found> {
        std::mem::take(&mut self.found)
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.feed_frame(data);
        self.pos += data.len() as u64;
    }

    fn feed_frame(&mut self, data: &[u8]) {
        let base = self.pos;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                State::Done(_) => return,
                State::Start(n) => match (n, b) {
                    (0, b' ' | b'\t' | b'\n' | b'\r') => {}
                    (0, 0xEF) | (1, 0xBB) => self.state = State::Start(n + 1),
                    (2, 0xBF) => self.state = State::Start(0),
                    (0, b'{') => {
                        self.open_at = Some(base + i as u64);
                        self.state = State::KeyOrEnd;
                    }
                    (0, 0 | 0xFE | 0xFF) | (1 | 2, _) => self.done(Status::Malformed),
                    _ => self.done(Status::NotObject),
                },
                State::KeyOrEnd | State::Key => match b {
                    b' ' | b'\t' | b'\n' | b'\r' => {}
                    b'"' => self.begin_key(),
                    b'}' if self.state == State::KeyOrEnd => self.done(Status::Closed),
                    _ => self.done(Status::Malformed),
                },
                State::InKey => {
                    if let Some(c) = self.string_byte(b) {
                        match c {
                            Char::End => self.state = State::Colon,
                            Char::Unit(c) => self.key_char(c),
                            Char::Byte(b) => self.key_char(b as u32),
                        }
                    }
                }
                State::Colon => match b {
                    b' ' | b'\t' | b'\n' | b'\r' => {}
                    b':' => self.state = State::Value,
                    _ => self.done(Status::Malformed),
                },
                State::Value => {
                    let is_model = self.key_ascii
                        && self.key_len == 5
                        && self.key[..5].eq_ignore_ascii_case(b"model");
                    match b {
                        b' ' | b'\t' | b'\n' | b'\r' => {}
                        b'"' if is_model => {
                            self.value.clear();
                            self.value_ok = true;
                            self.escape = Escape::None;
                            self.high = None;
                            self.state = State::InModel;
                        }
                        b',' | b'}' | b']' | b':' => self.done(Status::Malformed),
                        _ => {
                            if is_model {
                                self.found.push(Found {
                                    exact: self.exact,
                                    value: None,
                                });
                            }
                            if self.key_ascii && self.key_len <= KEY_LEN {
                                self.field = Field::of(&self.key[..self.key_len])
                                    .map(|f| (f, base + i as u64));
                            }
                            self.depth = 0;
                            self.state = match b {
                                b'"' => State::SkipString,
                                b'{' | b'[' => {
                                    self.depth = 1;
                                    State::Nested
                                }
                                _ => State::Scalar,
                            };
                        }
                    }
                }
                State::InModel => {
                    if let Some(c) = self.string_byte(b) {
                        match c {
                            Char::End => {
                                let value = std::mem::take(&mut self.value);
                                let value = (self.value_ok && self.high.is_none())
                                    .then(|| String::from_utf8(value).ok())
                                    .flatten();
                                self.found.push(Found {
                                    exact: self.exact,
                                    value,
                                });
                                self.state = State::AfterValue;
                            }
                            Char::Unit(c) => self.value_char(c),
                            Char::Byte(b) => self.value_byte(b),
                        }
                    }
                }
                State::SkipString => {
                    if self.escape == Escape::Backslash {
                        self.escape = Escape::None;
                    } else {
                        match memchr2(b'"', b'\\', &data[i..]) {
                            None => return,
                            Some(at) => {
                                i += at;
                                if data[i] == b'\\' {
                                    self.escape = Escape::Backslash;
                                } else if self.depth == 0 {
                                    self.value_end(base + i as u64 + 1);
                                    self.state = State::AfterValue;
                                } else {
                                    self.state = State::Nested;
                                }
                            }
                        }
                    }
                }
                State::Nested => match b {
                    b'"' => self.state = State::SkipString,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            self.value_end(base + i as u64 + 1);
                            self.state = State::AfterValue;
                        }
                    }
                    _ => {}
                },
                State::Scalar => match b {
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' => {
                        self.value_end(base + i as u64);
                        self.state = State::AfterValue;
                        continue;
                    }
                    b'"' | b'{' | b'[' | b':' => self.done(Status::Malformed),
                    _ => {}
                },
                State::AfterValue => match b {
                    b' ' | b'\t' | b'\n' | b'\r' => {}
                    b',' => self.state = State::Key,
                    b'}' => self.done(Status::Closed),
                    _ => self.done(Status::Malformed),
                },
            }
            i += 1;
        }
    }

    fn done(&mut self, status: Status) {
        self.state = State::Done(status);
    }

    fn begin_key(&mut self) {
        self.key_len = 0;
        self.key_ascii = true;
        self.exact = false;
        self.escape = Escape::None;
        self.high = None;
        self.state = State::InKey;
    }

    fn key_char(&mut self, c: u32) {
        if self.key_len < KEY_LEN && c < 0x80 {
            self.key[self.key_len] = c as u8;
        } else {
            self.key_ascii = false;
        }
        self.key_len += 1;
        self.exact = self.key_len == 5 && &self.key[..5] == b"model";
    }

    fn value_byte(&mut self, b: u8) {
        if self.value.len() < MAX_MODEL_LEN {
            self.value.push(b);
        } else {
            self.value_ok = false;
        }
    }

    fn value_char(&mut self, c: u32) {
        match char::from_u32(c) {
            Some(c) => {
                let mut buf = [0; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    self.value_byte(b);
                }
            }
            None => self.value_ok = false,
        }
    }
}

#[cfg(test)]
mod tests;
