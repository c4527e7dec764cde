//! deploy/: the Dockerfile, the compose stack and the Prometheus config agree with each other and
//! with the llmgate config they ship. Images cannot be built or pulled here, so this checks
//! everything that can be checked without them; deploy_k8s.rs covers the Kubernetes manifests and
//! deploy_smoke.rs runs the stack's processes for real.

mod deploy_support;
use deploy_support::*;
use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn every_yaml_file_in_deploy_parses() {
    let mut files = Vec::new();
    yaml_files(&repo("deploy"), &mut files);
    assert!(files.len() >= 12, "found only {files:?}");
    for f in &files {
        let docs = yaml_docs(
            &f.display().to_string(),
            &std::fs::read_to_string(f).unwrap(),
        );
        assert!(!docs.is_empty(), "{}: empty", f.display());
        for d in &docs {
            assert!(
                d.as_hash().is_some(),
                "{}: a document is not a map",
                f.display()
            );
        }
    }
}

/// compose.yaml as Docker Compose reads it: variables interpolated (each must have a default, so
/// the stack starts without a .env file), then checked against the compose specification.
#[test]
fn compose_file_follows_the_compose_spec() {
    let mut text = read("deploy/compose.yaml");
    while let Some(at) = text.find("${") {
        let end = at + text[at..].find('}').unwrap();
        let reference = text[at..=end].to_string();
        let (var, default) = reference[2..reference.len() - 1]
            .split_once(":-")
            .unwrap_or_else(|| panic!("compose.yaml: {reference} has no default"));
        assert!(!var.is_empty() && !default.is_empty(), "{reference}");
        text.replace_range(at..=end, default);
    }
    let compose = compose_spec::Compose::options()
        .from_yaml_str(&text)
        .unwrap_or_else(|e| panic!("compose.yaml does not follow the compose spec: {e}"));
    compose
        .validate_all()
        .unwrap_or_else(|e| panic!("compose.yaml: {e}"));
    let services: Vec<&str> = compose.services.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        services,
        ["llmgate", "open-webui", "ollama", "prometheus", "redis"]
    );
}

#[test]
fn shipped_configs_pass_llmgate_check() {
    for rel in ["deploy/llmgate.toml", "deploy/k8s/base/llmgate.toml"] {
        assert_check_passes(rel, &read(rel));
    }
}

#[test]
fn compose_and_sidecar_configs_differ_only_in_where_open_webui_is() {
    let (compose, k8s) = (
        config("deploy/llmgate.toml"),
        config("deploy/k8s/base/llmgate.toml"),
    );
    assert_eq!(format!("{:?}", compose.server), format!("{:?}", k8s.server));
    assert_eq!(format!("{:?}", compose.log), format!("{:?}", k8s.log));
    let shape = |c: &llmgate::Config| {
        let ups: Vec<_> = c
            .upstreams
            .iter()
            .map(|u| {
                (
                    u.name.get_ref().clone(),
                    u.connect_timeout.0,
                    u.response_timeout.0,
                    u.idle_timeout.0,
                )
            })
            .collect();
        let routes: Vec<_> = c
            .routes
            .iter()
            .map(|r| {
                (
                    r.path_prefix.as_ref().map(|p| p.get_ref().clone()),
                    r.upstream.get_ref().clone(),
                )
            })
            .collect();
        (ups, routes)
    };
    assert_eq!(shape(&compose), shape(&k8s));
    assert_eq!(upstream_authority(&compose, "openwebui"), "open-webui:8080");
    assert_eq!(upstream_authority(&k8s, "openwebui"), "127.0.0.1:8080");
    // Ollama has no authentication of its own: it is reached only through Open WebUI.
    assert_eq!(compose.upstreams.len(), 1);
    for (rel, c) in [
        ("deploy/llmgate.toml", &compose),
        ("deploy/k8s/base/llmgate.toml", &k8s),
    ] {
        assert!(
            read(rel).contains(&format!("\nkeys_file = \"{KEYS_PATH}\"")),
            "{rel} does not read the mounted keys file"
        );
        let auth = c.auth.as_ref().expect("the shipped configs authenticate");
        assert!(auth.openwebui_jwt_secret.is_some());
        assert!(c.rate_limit.is_some(), "the shipped configs rate-limit");
    }
    assert_eq!(
        format!("{:?}", compose.rate_limit),
        format!("{:?}", k8s.rate_limit)
    );
}

#[test]
fn ports_paths_and_mounts_agree_across_dockerfile_compose_and_config() {
    let cfg = config("deploy/llmgate.toml");
    let (proxy, admin) = (cfg.server.listen, cfg.server.admin_listen);
    assert!(
        proxy.ip().is_unspecified() && admin.ip().is_unspecified(),
        "in a container both listeners must take connections from outside the container"
    );
    let df = dockerfile();

    let exposed: BTreeSet<u16> = instructions(&df, "EXPOSE")
        .iter()
        .flat_map(|a| {
            a.split_whitespace()
                .map(|p| p.parse::<u16>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(exposed, BTreeSet::from([proxy.port(), admin.port()]));
    let entry = exec_form(&instructions(&df, "ENTRYPOINT")[0]);
    let health = exec_form(&instructions(&df, "HEALTHCHECK")[0]);
    assert_eq!(
        health[0], entry[0],
        "HEALTHCHECK runs the image's own binary"
    );
    assert_eq!(health[1], "probe");
    assert_eq!(
        health.last().unwrap(),
        &format!("http://127.0.0.1:{}/readyz", admin.port())
    );
    let config_path = instructions(&df, "ENV")
        .iter()
        .find_map(|e| e.strip_prefix("LLMGATE_CONFIG=").map(str::to_string))
        .expect("ENV LLMGATE_CONFIG");
    assert!(
        instructions(&df, "COPY").contains(&format!("deploy/llmgate.toml {config_path}")),
        "the image's default config is not deploy/llmgate.toml at {config_path}"
    );

    let compose = yaml("deploy/compose.yaml");
    let services = compose["services"].as_hash().unwrap();
    let gate = &compose["services"]["llmgate"];
    assert_eq!(
        strings(&gate["ports"]),
        [format!("${{LLMGATE_PORT:-{0}}}:{0}", proxy.port())],
        "compose publishes the proxy port, and only that"
    );
    for (name, svc) in services {
        if s(name) != "llmgate" {
            assert!(
                svc["ports"].is_badvalue(),
                "{name:?} publishes a port: only llmgate may"
            );
        }
    }
    let mut compose_health = strings(&gate["healthcheck"]["test"]);
    assert_eq!(compose_health.remove(0), "CMD");
    assert_eq!(
        compose_health, health,
        "compose and the image run different health checks"
    );
    assert!(
        strings(&gate["volumes"]).contains(&format!("./llmgate.toml:{config_path}:ro").as_str())
    );
    let secret = named_by(&gate["secrets"], "source", "llmgate_keys");
    assert_eq!(s(&secret["target"]), KEYS_PATH);
    assert!(repo("deploy/secrets/keys.toml.example").exists());
    assert_eq!(
        s(&compose["secrets"]["llmgate_keys"]["file"]),
        "secrets/keys.toml"
    );

    let (host, port) = upstream_authority(&cfg, "openwebui")
        .split_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    assert!(
        services.contains_key(&Yaml::String(host.clone())),
        "no service {host}"
    );
    assert_eq!(port, "8080", "Open WebUI's image listens on 8080");
    assert!(
        s(&compose["services"]["open-webui"]["environment"]["OLLAMA_BASE_URL"])
            .starts_with("http://ollama:"),
        "Open WebUI must reach the ollama service"
    );
    assert_eq!(
        s(&gate["user"]),
        instructions(&df, "USER")[0],
        "compose runs llmgate as another user than the image"
    );
    assert_eq!(gate["read_only"].as_bool(), Some(true));
    assert_eq!(strings(&gate["cap_drop"]), ["ALL"]);
    assert!(seconds(s(&gate["stop_grace_period"])) > cfg.server.drain_timeout.0.as_secs());
}

#[test]
fn prometheus_scrapes_the_admin_port_and_passes_promtool() {
    let cfg = config("deploy/llmgate.toml");
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let job = named_by(&prom["scrape_configs"], "job_name", "llmgate");
    assert_eq!(s(&job["metrics_path"]), "/metrics");
    let targets: Vec<&str> = list(&job["static_configs"])
        .iter()
        .flat_map(|c| strings(&c["targets"]))
        .collect();
    assert_eq!(
        targets,
        [format!("llmgate:{}", cfg.server.admin_listen.port())]
    );
    assert!(
        prom["rule_files"].is_badvalue() || repo("deploy/prometheus/alerts.yml").exists(),
        "rule_files names a file that is not shipped"
    );

    let compose = yaml("deploy/compose.yaml");
    let p = &compose["services"]["prometheus"];
    assert!(strings(&p["volumes"]).contains(&"./prometheus:/etc/prometheus:ro"));
    assert!(strings(&p["command"]).contains(&"--config.file=/etc/prometheus/prometheus.yml"));

    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(repo("deploy/prometheus/prometheus.yml"))
        .output()
        .expect("promtool is missing: tests/setup.sh installs Debian's prometheus");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerfile_builds_the_binary_cargo_builds() {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let bins = manifest["bin"].as_array().unwrap();
    assert_eq!(bins.len(), 1);
    let bin = bins[0]["name"].as_str().unwrap();
    let df = dockerfile();
    let run = instructions(&df, "RUN").join(" ");
    assert!(
        run.contains(&format!("cargo build --release --locked --bin {bin} ")),
        "{run}"
    );
    for flag in [
        "--features",
        "--no-default-features",
        "--all-features",
        "--target ",
    ] {
        assert!(
            !run.contains(flag),
            "the image would build other features than `cargo build`: {flag}"
        );
    }
    assert!(
        manifest.get("features").is_none(),
        "Cargo.toml gained [features]: decide which the image builds and update this test"
    );
    assert!(run.contains(&format!("target/release/{bin} /out/{bin}")));
    let entry = exec_form(&instructions(&df, "ENTRYPOINT")[0]);
    assert!(instructions(&df, "COPY").contains(&format!("--from=build /out/{bin} {}", entry[0])));

    // The toolchain is new enough for the crate, and build and runtime share Debian 12's glibc.
    let rust_version = instructions(&df, "ARG")
        .iter()
        .find_map(|a| a.strip_prefix("RUST_VERSION=").map(str::to_string))
        .unwrap();
    let need = manifest["package"]["rust-version"].as_str().unwrap();
    let minor = |v: &str| v.split('.').nth(1).unwrap().parse::<u32>().unwrap();
    assert!(
        minor(&rust_version) >= minor(need),
        "{rust_version} < {need}"
    );
    let from = instructions(&df, "FROM");
    assert_eq!(from[0], "rust:${RUST_VERSION}-bookworm AS build");
    assert!(from[1].starts_with("gcr.io/distroless/cc-debian12:nonroot"));
    let user = &instructions(&df, "USER")[0];
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "USER {user}"
    );

    // The build context holds what the build needs and nothing else (Dockerfile.dockerignore).
    let ignore = read("deploy/Dockerfile.dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        "the ignore file must start from nothing"
    );
    let mut copied = Vec::new();
    for copy in instructions(&df, "COPY") {
        if copy.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = copy.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            assert!(repo(src).exists(), "COPY {src}: not in the repository");
            assert!(
                allowed.contains(src),
                "COPY {src}: excluded by Dockerfile.dockerignore"
            );
            copied.push(src.to_string());
        }
    }
    let mut needed = vec![manifest["lib"]["path"].as_str().unwrap().to_string()];
    needed.extend(bins.iter().map(|b| b["path"].as_str().unwrap().to_string()));
    for bench in manifest["bench"].as_array().unwrap() {
        needed.push(format!("benches/{}.rs", bench["name"].as_str().unwrap()));
    }
    needed.extend(included_files(&repo("src")));
    for path in needed {
        assert!(
            copied
                .iter()
                .any(|c| path == *c || path.starts_with(&format!("{c}/"))),
            "the build needs {path}, which the Dockerfile does not copy"
        );
    }
}

#[test]
fn images_carry_the_crate_version() {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let version = manifest["package"]["version"].as_str().unwrap();
    let compose = yaml("deploy/compose.yaml");
    assert_eq!(
        s(&compose["services"]["llmgate"]["image"]),
        format!("llmgate:{version}")
    );
    let kustomization = yaml("deploy/k8s/base/kustomization.yaml");
    let image = named(&kustomization["images"], "llmgate");
    assert_eq!(s(&image["newTag"]), version);
    assert!(read("deploy/Dockerfile").contains(&format!("-t llmgate:{version} .")));
}

#[test]
fn secret_examples_match_for_compose_and_kubernetes_and_real_secrets_stay_out_of_git() {
    for name in ["secrets.env.example", "keys.toml.example"] {
        assert_eq!(
            read(&format!("deploy/secrets/{name}")),
            read(&format!("deploy/k8s/base/secrets/{name}")),
            "the two copies of {name} drifted apart"
        );
    }
    let keys: toml::Table = read("deploy/secrets/keys.toml.example").parse().unwrap();
    assert!(keys.is_empty(), "the example must not carry a key");
    assert!(read("deploy/secrets/secrets.env.example")
        .lines()
        .any(|l| l == "WEBUI_SECRET_KEY="));
    let ignored = read("deploy/.gitignore");
    for real in [
        "secrets/secrets.env",
        "secrets/keys.toml",
        "k8s/base/secrets/secrets.env",
        "k8s/base/secrets/keys.toml",
    ] {
        assert!(
            ignored.lines().any(|l| l == real),
            "{real} is not git-ignored"
        );
    }
}
