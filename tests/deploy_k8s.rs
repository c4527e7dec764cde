//! deploy/k8s/ as kustomize renders it (`kubectl kustomize`, offline): valid against the
//! Kubernetes API schemas (PyPI's kubernetes-validate, strict; Debian ships no offline validator),
//! and in agreement with the llmgate config, the image and the drain budget.

mod deploy_support;
use deploy_support::*;
use std::path::PathBuf;
use std::process::Command;

/// The oldest Kubernetes the manifests support: the kubelet's preStop `sleep` action is on by
/// default from 1.30.
const MIN_KUBERNETES: &str = "1.30.0";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("LLMGATE_PYTHON") {
        return p.into();
    }
    let p = repo("target/pyenv/bin/python");
    assert!(p.exists(), "no target/pyenv: run tests/setup.sh");
    p
}

fn sidecar_config() -> llmgate::Config {
    config("deploy/k8s/base/llmgate.toml")
}

#[test]
fn base_and_overlay_render_and_pass_strict_schema_validation() {
    let k8s = K8s::new();
    for (rel, kinds) in [
        ("base", 5),
        ("overlays/replicated", 10), // + Redis Deployment and Service, PDB, PodMonitor, PrometheusRule
    ] {
        let text = k8s.render_text(rel);
        assert_eq!(
            yaml_docs(rel, &text).len(),
            kinds,
            "{rel}: objects rendered"
        );
        let file = k8s.dir.path().join("rendered.yaml");
        std::fs::write(&file, &text).unwrap();
        for version in [MIN_KUBERNETES, "1.37.0"] {
            let out = Command::new(python())
                .args([
                    "-m",
                    "kubernetes_validate",
                    "--strict",
                    "--quiet",
                    "-k",
                    version,
                ])
                .arg(&file)
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{rel} against {version}:\n{report}");
            assert!(
                !report.contains("ERROR"),
                "{rel} against {version}:\n{report}"
            );
        }
    }
}

#[test]
fn rendered_configmap_is_the_shipped_config_and_passes_check() {
    let docs = K8s::new().render("base");
    let cm = object(&docs, "ConfigMap", "llmgate-config");
    let text = s(&cm["data"]["llmgate.toml"]);
    assert_eq!(text, read("deploy/k8s/base/llmgate.toml"));
    assert_check_passes("the rendered ConfigMap", text);
}

#[test]
fn the_service_reaches_the_pod_only_through_llmgate() {
    let docs = K8s::new().render("base");
    let cfg = sidecar_config();
    let pod = pod_spec(&docs, "open-webui");
    let gate = named(&pod["containers"], "llmgate");
    let owui = named(&pod["containers"], "open-webui");
    let svc = object(&docs, "Service", "open-webui");
    let port = &list(&svc["spec"]["ports"])[0];
    assert_eq!(s(&port["targetPort"]), "http");
    assert_eq!(container_port(gate, "http"), cfg.server.listen.port());
    assert!(
        owui["ports"].is_badvalue(),
        "Open WebUI must not declare a port"
    );
    let upstream = upstream_authority(&cfg, "openwebui");
    assert_eq!(
        upstream,
        format!("127.0.0.1:{}", s(&env(owui, "PORT")["value"]))
    );
    assert_eq!(
        s(&env(owui, "HOST")["value"]),
        "127.0.0.1",
        "Open WebUI must listen on loopback only"
    );
    let labels = &pod_template(&docs)["metadata"]["labels"];
    assert_selects(&svc["spec"]["selector"], labels, "the Service");
}

fn pod_template(docs: &[Yaml]) -> &Yaml {
    &object(docs, "Deployment", "open-webui")["spec"]["template"]
}

#[test]
fn probes_and_scrapes_use_the_admin_port() {
    let docs = K8s::new().render("overlays/replicated");
    let admin = sidecar_config().server.admin_listen.port();
    let pod = pod_spec(&docs, "open-webui");
    let gate = named(&pod["containers"], "llmgate");
    assert_eq!(container_port(gate, "admin"), admin);
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
        assert_eq!(s(&gate[probe]["httpGet"]["path"]), path);
        assert_eq!(s(&gate[probe]["httpGet"]["port"]), "admin");
    }
    let annotations = &pod_template(&docs)["metadata"]["annotations"];
    assert_eq!(s(&annotations["prometheus.io/port"]), admin.to_string());
    assert_eq!(s(&annotations["prometheus.io/path"]), "/metrics");

    let monitor = object(&docs, "PodMonitor", "llmgate");
    let endpoint = &list(&monitor["spec"]["podMetricsEndpoints"])[0];
    assert_eq!(s(&endpoint["port"]), "admin");
    assert_eq!(s(&endpoint["path"]), "/metrics");
    let labels = &pod_template(&docs)["metadata"]["labels"];
    assert_selects(
        &monitor["spec"]["selector"]["matchLabels"],
        labels,
        "the PodMonitor",
    );
    // The alert rules select job="llmgate"; the PodMonitor's default job would be ns/llmgate.
    let relabel = &list(&endpoint["relabelings"])[0];
    assert_eq!(
        (s(&relabel["targetLabel"]), s(&relabel["replacement"])),
        ("job", "llmgate")
    );
    let rule = object(&docs, "PrometheusRule", "llmgate");
    assert_eq!(
        canonical(&rule["spec"]["groups"]),
        canonical(&yaml("deploy/prometheus/alerts.yml")["groups"]),
        "prometheusrule.yaml has drifted from deploy/prometheus/alerts.yml"
    );
}

/// YAML with map keys in sorted order (kustomize reorders them), for comparing content.
fn canonical(y: &Yaml) -> String {
    match y {
        Yaml::Hash(h) => {
            let mut pairs: Vec<_> = h
                .iter()
                .map(|(k, v)| (format!("{k:?}"), canonical(v)))
                .collect();
            pairs.sort();
            format!("{pairs:?}")
        }
        Yaml::Array(a) => format!("{:?}", a.iter().map(canonical).collect::<Vec<_>>()),
        other => format!("{other:?}"),
    }
}

#[test]
fn config_and_secrets_are_mounted_where_llmgate_reads_them() {
    let docs = K8s::new().render("base");
    let pod = pod_spec(&docs, "open-webui");
    let gate = named(&pod["containers"], "llmgate");
    let config_path = s(&env(gate, "LLMGATE_CONFIG")["value"]);
    let image_default = instructions(&dockerfile(), "ENV")
        .iter()
        .find_map(|e| e.strip_prefix("LLMGATE_CONFIG=").map(str::to_string))
        .unwrap();
    assert_eq!(config_path, image_default);
    let (config_dir, config_file) = config_path.rsplit_once('/').unwrap();
    let (keys_dir, keys_file) = KEYS_PATH.rsplit_once('/').unwrap();

    let mount = |volume: &str| {
        let m = named(&gate["volumeMounts"], volume);
        assert!(
            m["subPath"].is_badvalue(),
            "{volume}: subPath mounts never see updates"
        );
        assert_eq!(m["readOnly"].as_bool(), Some(true));
        s(&m["mountPath"]).to_string()
    };
    assert_eq!(mount("llmgate-config"), config_dir);
    assert_eq!(mount("llmgate-keys"), keys_dir);

    let cm = object(&docs, "ConfigMap", "llmgate-config");
    let cm_volume = named(&pod["volumes"], "llmgate-config");
    assert_eq!(
        s(&cm_volume["configMap"]["name"]),
        s(&cm["metadata"]["name"])
    );
    assert!(
        !cm["data"][config_file].is_badvalue(),
        "the ConfigMap has no {config_file}"
    );

    let secret = object(&docs, "Secret", "llmgate-secrets");
    let keys_volume = &named(&pod["volumes"], "llmgate-keys")["secret"];
    assert_eq!(
        s(&keys_volume["secretName"]),
        s(&secret["metadata"]["name"])
    );
    let item = &list(&keys_volume["items"])[0];
    assert!(!secret["data"][s(&item["key"])].is_badvalue());
    assert_eq!(s(&item["path"]), keys_file);
    for container in ["llmgate", "open-webui"] {
        let r = &env(named(&pod["containers"], container), "WEBUI_SECRET_KEY")["valueFrom"]
            ["secretKeyRef"];
        assert_eq!(s(&r["name"]), s(&secret["metadata"]["name"]));
        assert!(!secret["data"][s(&r["key"])].is_badvalue());
    }
}

#[test]
fn termination_grace_outlasts_prestop_plus_drain() {
    let docs = K8s::new().render("base");
    let cfg = sidecar_config();
    let pod = pod_spec(&docs, "open-webui");
    let gate = named(&pod["containers"], "llmgate");
    let pre_stop = int(&gate["lifecycle"]["preStop"]["sleep"]["seconds"]) as u64;
    let grace = int(&pod["terminationGracePeriodSeconds"]) as u64;
    let drain = cfg.server.drain_timeout.0.as_secs();
    assert!(
        pre_stop >= 1,
        "endpoints need a moment to drop the pod before the listener closes"
    );
    assert!(
        grace > pre_stop + drain,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + drain_timeout {drain}"
    );
    // Open WebUI stays up until llmgate has exited, so the streams being drained keep flowing.
    let owui = named(&pod["containers"], "open-webui");
    let wait = strings(&owui["lifecycle"]["preStop"]["exec"]["command"]).join(" ");
    assert!(
        wait.contains(&format!(
            "http://127.0.0.1:{}/livez",
            cfg.server.admin_listen.port()
        )),
        "{wait}"
    );
    let rollout = &object(&docs, "Deployment", "open-webui")["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(int(&rollout["maxUnavailable"]), 0);
}

#[test]
fn llmgate_container_is_locked_down_and_sized() {
    let docs = K8s::new().render("base");
    let pod = pod_spec(&docs, "open-webui");
    assert_eq!(
        s(&pod["securityContext"]["seccompProfile"]["type"]),
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    let gate = named(&pod["containers"], "llmgate");
    let sc = &gate["securityContext"];
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    let image_user = instructions(&dockerfile(), "USER")[0].clone();
    assert_eq!(
        image_user,
        format!("{}:{}", int(&sc["runAsUser"]), int(&sc["runAsGroup"]))
    );
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    // The sizes come from the measurement in deploy/README.md, which must show them.
    let readme = read("deploy/README.md");
    let res = &gate["resources"];
    for (what, value) in [
        ("requests.cpu", s(&res["requests"]["cpu"])),
        ("requests.memory", s(&res["requests"]["memory"])),
        ("limits.memory", s(&res["limits"]["memory"])),
    ] {
        assert!(
            readme.contains(&format!("`{what}: {value}`")),
            "deploy/README.md does not explain {what}: {value}"
        );
    }
}

#[test]
fn redis_component_wires_shared_state_for_several_replicas() {
    let k8s = K8s::new();
    let base = k8s.render("base");
    assert!(base
        .iter()
        .all(|d| d["metadata"]["name"].as_str() != Some("llmgate-redis")));
    let docs = k8s.render("overlays/replicated");
    assert_eq!(
        int(&object(&docs, "Deployment", "open-webui")["spec"]["replicas"]),
        2
    );
    let svc = object(&docs, "Service", "llmgate-redis");
    let port = &list(&svc["spec"]["ports"])[0];
    let redis_pod = &object(&docs, "Deployment", "llmgate-redis")["spec"]["template"];
    let redis = named(&redis_pod["spec"]["containers"], "redis");
    assert_eq!(
        int(&named(&redis["ports"], s(&port["targetPort"]))["containerPort"]),
        6379
    );
    assert_selects(
        &svc["spec"]["selector"],
        &redis_pod["metadata"]["labels"],
        "llmgate-redis",
    );
    let address = format!("redis://llmgate-redis:{}/", int(&port["port"]));
    let pod = pod_spec(&docs, "open-webui");
    let gate = named(&pod["containers"], "llmgate");
    assert!(s(&env(gate, "LLMGATE_REDIS_URL")["value"]).starts_with(&address));
    let owui = named(&pod["containers"], "open-webui");
    assert_eq!(s(&env(owui, "WEBSOCKET_MANAGER")["value"]), "redis");
    assert!(s(&env(owui, "WEBSOCKET_REDIS_URL")["value"]).starts_with(&address));
    // The strategic merge kept the base's environment.
    assert_eq!(
        s(&env(gate, "LLMGATE_CONFIG")["value"]),
        "/etc/llmgate/llmgate.toml"
    );
    let pvc = object(&docs, "PersistentVolumeClaim", "open-webui-data");
    assert_eq!(strings(&pvc["spec"]["accessModes"]), ["ReadWriteMany"]);
    let pdb = object(&docs, "PodDisruptionBudget", "open-webui");
    let labels = &pod_template(&docs)["metadata"]["labels"];
    assert_selects(
        &pdb["spec"]["selector"]["matchLabels"],
        labels,
        "the PodDisruptionBudget",
    );
}

#[test]
fn base_refuses_to_render_without_its_secrets() {
    let k8s = K8s::new();
    std::fs::remove_file(k8s.dir.path().join("base/secrets/secrets.env")).unwrap();
    let out = kustomize(&k8s.dir.path().join("base"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("secrets.env"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
