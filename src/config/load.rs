//! Reading, `${ENV}` expansion and validation, with errors that name key, line and fix.

use super::Config;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use toml_edit::{DocumentMut, Item, Value};

/// A configuration problem, located as precisely as the source allows.
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.clone(),
        line: None,
        key: String::new(),
        message: format!("cannot read the config file: {e}"),
        fix: "pass an existing file with --config PATH or LLMGATE_CONFIG".into(),
    })?;
    parse(&name, &text, &|var| std::env::var(var).ok())
}

/// Loads `path`, or without one `config/llmgate.toml`, or the built-in default when that file
/// does not exist. Startup, `llmgate check` and reloads all come through here.
pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => load(p),
        None if Path::new(super::DEFAULT_PATH).exists() => load(Path::new(super::DEFAULT_PATH)),
        None => parse("(built-in default config)", super::EMBEDDED_DEFAULT, &|v| {
            std::env::var(v).ok()
        }),
    }
}

/// Parses and validates config text; `env` resolves `${VAR}` references.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let err = |line: Option<usize>, key: &str, message: String, fix: &str| ConfigError {
        file: file.to_string(),
        line,
        key: key.to_string(),
        message,
        fix: fix.to_string(),
    };
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        let line = e.span().map(|s| line_of(text, s.start));
        err(
            line,
            "",
            first_line(e.message()),
            "fix the TOML syntax at that line",
        )
    })?;
    expand_item(doc.as_item_mut(), env).map_err(|(key, var)| {
        let line = text
            .find(&format!("${{{var}}}"))
            .map(|at| line_of(text, at));
        err(
            line,
            &key,
            format!("environment variable `{var}` is not set"),
            &format!("export {var} before starting llmgate, or write the value literally"),
        )
    })?;
    let expanded = doc.to_string();
    let mut config: Config =
        toml::from_str(&expanded).map_err(|e| toml_error(file, &expanded, &e))?;
    validate(&config, file, text)?;
    if let Some(auth) = &mut config.auth {
        auth.validate(&config.upstreams, file, text)?;
        auth.load_keys_file(Path::new(file))?;
    }
    Ok(config)
}

/// A serde error from `toml`, located and explained.
pub(super) fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| line_of(text, s.start));
    let msg = first_line(e.message());
    let fix = if msg.contains("unknown field") {
        "remove the key or correct its spelling; every key is listed in README.md"
    } else if msg.contains("missing field") {
        "add the key; README.md lists what each section needs"
    } else {
        "correct the value as the message says"
    };
    ConfigError {
        file: file.to_string(),
        line,
        key: key_of(text, e.span()),
        message: msg,
        fix: fix.into(),
    }
}

impl ConfigError {
    /// An error at byte offset `at` of `text` (for its line number), or without a line.
    pub(super) fn new(
        file: &str,
        text: &str,
        at: Option<usize>,
        key: &str,
        message: String,
        fix: &str,
    ) -> Self {
        ConfigError {
            file: file.to_string(),
            line: at.map(|at| line_of(text, at)),
            key: key.to_string(),
            message,
            fix: fix.to_string(),
        }
    }
}

fn validate(c: &Config, file: &str, text: &str) -> Result<(), ConfigError> {
    let at = |span: std::ops::Range<usize>, key: &str, message: String, fix: &str| ConfigError {
        file: file.to_string(),
        line: Some(line_of(text, span.start)),
        key: key.to_string(),
        message,
        fix: fix.to_string(),
    };
    let plain = |key: &str, message: String, fix: &str| ConfigError {
        file: file.to_string(),
        line: None,
        key: key.to_string(),
        message,
        fix: fix.to_string(),
    };
    let s = &c.server;
    if s.listen == s.admin_listen && s.listen.port() != 0 {
        return Err(plain(
            "server.admin_listen",
            format!(
                "admin listener {} is the proxy listener too",
                s.admin_listen
            ),
            "give admin_listen its own port, e.g. 127.0.0.1:9100",
        ));
    }
    if s.header_read_timeout.0.is_zero() {
        return Err(plain(
            "server.header_read_timeout",
            "must be greater than zero".into(),
            "use e.g. \"10s\"",
        ));
    }
    if s.max_request_body.0 == 0 {
        return Err(plain(
            "server.max_request_body",
            "must be greater than zero".into(),
            "use e.g. \"100MiB\"",
        ));
    }
    super::server::validate(s).map_err(|(key, message, fix)| plain(key, message, fix))?;
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log.level) {
        return Err(plain(
            "log.level",
            format!("invalid level filter {:?}: {e}", c.log.level),
            "use trace, debug, info, warn or error (or a tracing filter such as \"llmgate=debug,info\")",
        ));
    }
    if c.routes.is_empty() {
        return Err(plain(
            "routes",
            "no [[routes]] are configured, so every request would get 404".into(),
            "add a [[routes]] table with path_prefix and upstream (see config/llmgate.toml)",
        ));
    }
    let mut names = HashSet::new();
    for u in &c.upstreams {
        let name = u.name.get_ref();
        if name.is_empty() || !names.insert(name.as_str()) {
            return Err(at(
                u.name.span(),
                "upstreams.name",
                format!("upstream name {name:?} is empty or used twice"),
                "give every [[upstreams]] a unique, non-empty name",
            ));
        }
        crate::upstream::parse_base_url(u.url.get_ref()).map_err(|m| {
            at(
                u.url.span(),
                "upstreams.url",
                m,
                "write e.g. \"http://127.0.0.1:8080\" or \"https://relay.example/v1\"",
            )
        })?;
        if let Some(h) = &u.host_header {
            if http::HeaderValue::from_str(h).is_err() || h.is_empty() {
                return Err(plain(
                    "upstreams.host_header",
                    format!("{h:?} is not a valid Host header value"),
                    "write host[:port], e.g. \"localhost:11434\"",
                ));
            }
        }
        if let Some(b) = &u.bearer {
            let ok =
                !b.0.is_empty() && http::HeaderValue::from_str(&format!("Bearer {}", b.0)).is_ok();
            if !ok {
                return Err(at(
                    u.name.span(),
                    "upstreams.bearer",
                    format!("the bearer of upstream {name:?} is empty or not a valid header value"),
                    "set it to the relay's API key, e.g. bearer = \"${RELAY_API_KEY}\"",
                ));
            }
        }
        for (key, d) in [
            ("upstreams.connect_timeout", u.connect_timeout),
            ("upstreams.response_timeout", u.response_timeout),
            ("upstreams.idle_timeout", u.idle_timeout),
        ] {
            if d.0.is_zero() {
                return Err(at(
                    u.name.span(),
                    key,
                    format!("must be greater than zero (upstream {name:?})"),
                    "use e.g. \"2s\"",
                ));
            }
        }
    }
    super::routes::validate(&c.routes, &names, c.auth.is_some(), file, text)?;
    if let Some(rl) = &c.rate_limit {
        let names = c.routes.iter().filter_map(|r| {
            r.name
                .as_deref()
                .or_else(|| r.pattern().map(|(p, _)| p.get_ref().as_str()))
        });
        rl.validate(names, file, text)?;
    }
    let located = |span: Option<std::ops::Range<usize>>, key: &str, message, fix: &str| match span {
        Some(span) => at(span, key, message, fix),
        None => plain(key, message, fix),
    };
    super::metrics::validate(&c.metrics, &c.pricing, &located)?;
    super::models::validate(c, file, text)
}

/// Expands `${VAR}` in every string value; `$${` stays a literal `${`.
/// On a missing variable returns (dotted key, variable name).
fn expand_item(
    item: &mut Item,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match item {
        Item::Value(v) => expand_value(v, env, ""),
        Item::Table(t) => {
            for (k, v) in t.iter_mut() {
                expand_item(v, env).map_err(|(key, var)| (join(k.get(), &key), var))?;
            }
            Ok(())
        }
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                for (k, v) in t.iter_mut() {
                    expand_item(v, env).map_err(|(key, var)| (join(k.get(), &key), var))?;
                }
            }
            Ok(())
        }
        Item::None => Ok(()),
    }
}

fn expand_value(
    v: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
) -> Result<(), (String, String)> {
    match v {
        Value::String(s) if s.value().contains("${") => {
            let expanded = expand_str(s.value(), env).map_err(|var| (key.to_string(), var))?;
            let decor = s.decor().clone();
            // Written back on one line even when the variable holds newlines (toml_edit would
            // choose a multi-line string), so error lines still point into the user's file.
            *v = basic_string(&expanded)
                .parse()
                .unwrap_or_else(|_| Value::from(expanded));
            *v.decor_mut() = decor;
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|v| expand_value(v, env, key)),
        Value::InlineTable(t) => {
            for (k, v) in t.iter_mut() {
                expand_value(v, env, &join(k.get(), key))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `s` as a one-line TOML basic string.
fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let Some(end) = rest[i + 2..].find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let var = &rest[i + 2..i + 2 + end];
        out.push_str(&env(var).ok_or_else(|| var.to_string())?);
        rest = &rest[i + 3 + end..];
    }
    out.push_str(rest);
    Ok(out)
}

fn join(head: &str, tail: &str) -> String {
    if tail.is_empty() {
        head.to_string()
    } else {
        format!("{head}.{tail}")
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// The dotted key written on the line an error points at, when there is one.
fn key_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = match line.split_once('=') {
        Some((k, _)) if !k.trim_start().starts_with('[') => k.trim(),
        _ => return String::new(),
    };
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match section {
        Some(s) => format!("{s}.{key}"),
        None => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanded_newlines_keep_error_lines() {
        let env = |_: &str| Some("a\"b\\c\nd\r\n\u{7f}".to_string());
        let text = "[log]\nlevel = \"${MULTI}\" # note\n[[routes]]\n";
        let e = parse("x.toml", text, &env).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let mut item: Item = "v = \"${X}\""
            .parse::<DocumentMut>()
            .unwrap()
            .as_item()
            .clone();
        expand_item(&mut item, &env).unwrap();
        let back: toml::Table = toml::from_str(&item.to_string()).unwrap();
        assert_eq!(back["v"].as_str(), Some("a\"b\\c\nd\r\n\u{7f}"));
    }

    #[test]
    fn env_expansion() {
        let env = |v: &str| (v == "A").then(|| "x\"y".to_string());
        assert_eq!(expand_str("k-${A}-z", &env).unwrap(), "k-x\"y-z");
        assert_eq!(expand_str("$${A}", &env).unwrap(), "${A}");
        assert_eq!(expand_str("${B}", &env).unwrap_err(), "B");
        assert_eq!(
            expand_str("${unterminated", &env).unwrap(),
            "${unterminated"
        );
    }
}
