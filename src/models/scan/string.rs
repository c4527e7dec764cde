//! Decoding one byte of a key or `model` string: escapes, surrogate pairs, and the raw
//! control characters strict parsers refuse.

use super::{Scanner, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escape {
    None,
    Backslash,
    /// Inside `\uXXXX`: digits read so far and their value.
    Hex(u8, u32),
}

impl Scanner {
    /// One byte inside a key or model string: `None` while an escape is incomplete.
    pub(super) fn string_byte(&mut self, b: u8) -> Option<Char> {
        match self.escape {
            Escape::None => match b {
                b'"' => {
                    if self.high.take().is_some() {
                        self.value_ok = false;
                        self.key_ascii = false;
                    }
                    Some(Char::End)
                }
                b'\\' => {
                    self.escape = Escape::Backslash;
                    None
                }
                0..=0x1F => {
                    // Strict parsers (Python, Go) reject raw control characters in strings.
                    self.done(Status::Malformed);
                    None
                }
                _ => {
                    if self.high.take().is_some() {
                        self.value_ok = false;
                        self.key_ascii = false;
                    }
                    Some(Char::Byte(b))
                }
            },
            Escape::Backslash => {
                self.escape = Escape::None;
                let c = match b {
                    b'"' | b'\\' | b'/' => b as u32,
                    b'b' => 0x08,
                    b'f' => 0x0C,
                    b'n' => 0x0A,
                    b'r' => 0x0D,
                    b't' => 0x09,
                    b'u' => {
                        self.escape = Escape::Hex(0, 0);
                        return None;
                    }
                    _ => {
                        self.done(Status::Malformed);
                        return None;
                    }
                };
                Some(Char::Unit(c))
            }
            Escape::Hex(n, acc) => {
                let Some(d) = (b as char).to_digit(16) else {
                    self.done(Status::Malformed);
                    return None;
                };
                let acc = acc << 4 | d;
                if n < 3 {
                    self.escape = Escape::Hex(n + 1, acc);
                    return None;
                }
                self.escape = Escape::None;
                match (self.high.take(), acc) {
                    (None, 0xD800..=0xDBFF) => {
                        self.high = Some(acc);
                        None
                    }
                    (Some(hi), 0xDC00..=0xDFFF) => {
                        Some(Char::Unit(0x10000 + ((hi - 0xD800) << 10) + (acc - 0xDC00)))
                    }
                    (Some(_), _) | (None, 0xDC00..=0xDFFF) => {
                        // A lone surrogate: Python keeps it, so no glob on our side can match
                        // what the upstream would see.
                        self.value_ok = false;
                        self.key_ascii = false;
                        Some(Char::Unit(0xFFFD))
                    }
                    (None, c) => Some(Char::Unit(c)),
                }
            }
        }
    }
}

pub(super) enum Char {
    End,
    /// A decoded code point from an escape.
    Unit(u32),
    /// A raw byte of the UTF-8 text.
    Byte(u8),
}
