//! Reading what deploy/ ships, for the deploy tests: YAML documents, the Dockerfile, llmgate
//! configs, and the Kubernetes manifests as kustomize renders them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
pub use yaml_rust2::Yaml;
use yaml_rust2::YamlLoader;

/// Where compose and Kubernetes mount llmgate's keys file (for `[auth] keys_file`).
pub const KEYS_PATH: &str = "/run/secrets/llmgate/keys.toml";

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn yaml_docs(name: &str, text: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// The one document of a YAML file in the repository.
pub fn yaml(rel: &str) -> Yaml {
    let mut docs = yaml_docs(rel, &read(rel));
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    docs.remove(0)
}

pub fn s(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {y:?}"))
}

pub fn int(y: &Yaml) -> i64 {
    y.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, found {y:?}"))
}

pub fn list(y: &Yaml) -> &Vec<Yaml> {
    y.as_vec()
        .unwrap_or_else(|| panic!("expected a list, found {y:?}"))
}

pub fn strings(y: &Yaml) -> Vec<&str> {
    list(y).iter().map(s).collect()
}

/// The element of a list of maps whose `name` is `name`.
pub fn named<'a>(items: &'a Yaml, name: &str) -> &'a Yaml {
    named_by(items, "name", name)
}

/// The element of a list of maps whose `key` is `value`.
pub fn named_by<'a>(items: &'a Yaml, key: &str, value: &str) -> &'a Yaml {
    list(items)
        .iter()
        .find(|i| i[key].as_str() == Some(value))
        .unwrap_or_else(|| panic!("no entry with {key} = {value:?} in {items:?}"))
}

/// Every label of `selector` (a map) is on `labels` with the same value.
pub fn assert_selects(selector: &Yaml, labels: &Yaml, what: &str) {
    let pairs = selector
        .as_hash()
        .unwrap_or_else(|| panic!("{what}: no selector"));
    assert!(!pairs.is_empty(), "{what}: empty selector");
    for (k, v) in pairs {
        assert_eq!(&labels[s(k)], v, "{what} does not select the pod ({k:?})");
    }
}

/// The environment the containers give llmgate (compose `env_file` + `environment`, the
/// Kubernetes Secret and env), with a secret long enough to pass `llmgate check`.
pub fn container_env(backend: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "WEBUI_SECRET_KEY",
            "deploy-test-secret-0123456789abcdef".into(),
        ),
        ("LLMGATE_RATE_LIMIT_BACKEND", backend.into()),
        ("LLMGATE_REDIS_URL", "redis://127.0.0.1:6379/0".into()),
    ]
}

/// Config text as the container sees it: the keys file that compose and Kubernetes mount at
/// KEYS_PATH is the shipped example, placed in `dir`.
fn as_mounted(text: &str, dir: &Path) -> PathBuf {
    assert!(
        text.contains(KEYS_PATH),
        "the config does not read {KEYS_PATH}"
    );
    let keys = dir.join("keys.toml");
    std::fs::copy(repo("deploy/secrets/keys.toml.example"), &keys).unwrap();
    let path = dir.join("llmgate.toml");
    std::fs::write(&path, text.replace(KEYS_PATH, keys.to_str().unwrap())).unwrap();
    path
}

/// `llmgate check` on config text, with either rate-limit backend; panics with llmgate's
/// explanation when it is invalid.
pub fn assert_check_passes(name: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = as_mounted(text, dir.path());
    for backend in ["memory", "redis"] {
        let out = Command::new(env!("CARGO_BIN_EXE_llmgate"))
            .args(["check", "--config"])
            .arg(&path)
            .envs(container_env(backend))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} (backend {backend}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A port's number from a list of `{name, containerPort}`.
pub fn container_port(container: &Yaml, name: &str) -> u16 {
    int(&named(&container["ports"], name)["containerPort"]) as u16
}

pub fn env<'a>(container: &'a Yaml, name: &str) -> &'a Yaml {
    named(&container["env"], name)
}

/// A duration written as compose and Kubernetes write them: "40s", "2m", "1m30s".
pub fn seconds(text: &str) -> u64 {
    humantime::parse_duration(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .as_secs()
}

/// A shipped llmgate config, loaded as `llmgate` loads it in its container.
pub fn config(rel: &str) -> llmgate::Config {
    let dir = tempfile::tempdir().unwrap();
    let path = as_mounted(&read(rel), dir.path());
    let env = container_env("memory");
    let lookup = |var: &str| env.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone());
    let text = std::fs::read_to_string(&path).unwrap();
    llmgate::config::parse(path.to_str().unwrap(), &text, &lookup).unwrap_or_else(|e| panic!("{e}"))
}

/// The `host:port` of the upstream `name`'s URL.
pub fn upstream_authority(c: &llmgate::Config, name: &str) -> String {
    let u = c
        .upstreams
        .iter()
        .find(|u| u.name.get_ref() == name)
        .unwrap_or_else(|| panic!("no upstream {name}"));
    let url = u.url.get_ref();
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Dockerfile instructions in order, continuation lines joined: ("COPY", "src ./src").
pub fn dockerfile() -> Vec<(String, String)> {
    let text = read("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// Arguments of every instruction `op`.
pub fn instructions(df: &[(String, String)], op: &str) -> Vec<String> {
    df.iter()
        .filter(|(o, _)| o == op)
        .map(|(_, a)| a.clone())
        .collect()
}

/// The exec-form JSON array at the end of an instruction's arguments.
pub fn exec_form(args: &str) -> Vec<String> {
    let at = args.find('[').expect("exec form");
    serde_json::from_str(&args[at..]).expect("exec form is a JSON array")
}

/// deploy/k8s copied to a temporary directory, with secrets made from the shipped examples
/// (the real ones are never committed), so kustomize can render it.
pub struct K8s {
    pub dir: tempfile::TempDir,
}

impl K8s {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo("deploy/k8s"), dir.path());
        let secrets = dir.path().join("base/secrets");
        for name in ["secrets.env", "keys.toml"] {
            let example = std::fs::read_to_string(secrets.join(format!("{name}.example"))).unwrap();
            let real = example.replace("WEBUI_SECRET_KEY=\n", "WEBUI_SECRET_KEY=test-secret\n");
            std::fs::write(secrets.join(name), real).unwrap();
        }
        Self { dir }
    }

    /// `kubectl kustomize` of `rel` (e.g. "base"): the rendered text.
    pub fn render_text(&self, rel: &str) -> String {
        let out = kustomize(&self.dir.path().join(rel));
        assert!(
            out.status.success(),
            "kubectl kustomize {rel} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn render(&self, rel: &str) -> Vec<Yaml> {
        yaml_docs(rel, &self.render_text(rel))
    }
}

pub fn kustomize(dir: &Path) -> std::process::Output {
    Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl is missing: tests/setup.sh checks for it")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        // A developer's real secrets stay where they are.
        if name_str == "secrets.env" || name_str == "keys.toml" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The rendered object of `kind` named `name` (generated names keep their hash suffix).
pub fn object<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| {
            d["kind"].as_str() == Some(kind)
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n == name || n.starts_with(&format!("{name}-")))
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

/// The pod spec of a rendered Deployment.
pub fn pod_spec<'a>(docs: &'a [Yaml], deployment: &str) -> &'a Yaml {
    &object(docs, "Deployment", deployment)["spec"]["template"]["spec"]
}

/// Every .yaml/.yml file under `dir`.
pub fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Files that `include_str!`/`include_bytes!` pull into the build, relative to the repository.
pub fn included_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(included_files(&path));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("include_") {
            let rest = &text[i..];
            let Some(arg) = rest
                .strip_prefix("include_str!(\"")
                .or_else(|| rest.strip_prefix("include_bytes!(\""))
            else {
                continue;
            };
            let rel = &arg[..arg.find('"').unwrap()];
            let abs = path.parent().unwrap().join(rel).canonicalize().unwrap();
            let root = repo("").canonicalize().unwrap();
            out.push(abs.strip_prefix(root).unwrap().display().to_string());
        }
    }
    out
}
