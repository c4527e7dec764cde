//! Who is asking: established by authentication, read by limits, model access and logs.
//! It travels as a typed request extension.

use std::sync::Arc;

/// Where an identity came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A key from llmgate's own keys file.
    Key,
    /// An Open WebUI JWT verified locally with the shared secret.
    Jwt,
    /// An Open WebUI credential confirmed by asking Open WebUI (cached).
    Introspection,
}

#[derive(Clone, Debug)]
pub struct Identity {
    /// Stable name for logs, metrics and limits: a key id, or `user:<id>`. Never a credential.
    pub id: Arc<str>,
    pub source: Source,
    /// Open WebUI role (`admin`, `user`, ...), when known.
    pub role: Option<Arc<str>>,
    /// Model globs this identity may use; `None` means any model.
    pub models: Option<Arc<globset::GlobSet>>,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin")
    }

    /// Whether `model` is on this identity's allowlist (always true without one).
    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|g| g.is_match(model))
    }
}
