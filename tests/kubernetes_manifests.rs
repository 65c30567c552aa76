//! The manifests in `kubernetes/` keep the promise that a rolling update or a node drain loses
//! no request.
//!
//! Each rule is a `check_*` function that takes parsed documents and returns the violations it
//! found, worded for whoever edits the manifests. The first group of tests runs every check on
//! the real files and expects none; the second group mutates the real files in memory and
//! expects the right violation, which proves that each check can fail.
//!
//! Schema validity (field names, types) is checked by `.ci/kubernetes-check`; this file checks
//! what a schema cannot: the shutdown budget, and that the files agree with each other and with
//! the service (routes, port, environment variables, the Dockerfile's user).

mod support;

use std::time::Duration;

use support::manifests::{
    api_container, items, kubernetes_dir, load_one, parse_duration, pod_spec, read,
};
use yaml_rust2::{Yaml, YamlLoader};

/// Routes and port of the service, as its configuration and router define them.
const READINESS_PATH: &str = "/readyz";
const LIVENESS_PATH: &str = "/healthz";
const SERVICE_PORT: i64 = 8080;
/// The admin listener's port (`ADMIN_LISTEN`), and its drain endpoint.
const ADMIN_PORT: i64 = 9091;
const DRAIN_PATH: &str = "/drain";

/// What the pod must still have once the drain, shutdown and cleanup took their maximum.
const GRACE_MARGIN: Duration = Duration::from_secs(2);

/// Manifests that `kubectl apply -k kubernetes/` must apply. `secret.example.yaml` is
/// deliberately not one of them.
const APPLIED_MANIFESTS: &[&str] = &[
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "pdb.yaml",
    "hpa.yaml",
    "networkpolicy.yaml",
];
const EXAMPLE_SECRET: &str = "secret.example.yaml";
/// The namespace, applied once by the operator and never by the kustomization (`kubectl delete
/// -k` would take the Secret with it).
const NAMESPACE: &str = "namespace.yaml";

/// The container port that the network may reach, by name; every other port (the kubelet's
/// `admin` port) stays closed to it.
const HTTP_PORT_NAME: &str = "http";
/// Where the pod may connect: PostgreSQL, Redis, and DNS (the only rule with a destination).
const EGRESS_PORTS: &[(i64, &str)] = &[(5432, "TCP"), (6379, "TCP"), (53, "UDP"), (53, "TCP")];
const DNS_PORT: i64 = 53;

/// The connection URLs, read from files of the Secret volume, and whether the Secret may lack
/// the key (Redis is optional: without it the service runs without a cache).
const URL_FILES: &[(&str, &str, bool)] = &[
    ("DATABASE_URL", "DATABASE_URL_FILE", false),
    ("REDIS_URL", "REDIS_URL_FILE", true),
];

/// What a check found wrong; empty when the manifests keep the rule.
type Violations = Vec<String>;

/// Every file of `kubernetes/`, parsed.
#[derive(Clone)]
struct Manifests {
    deployment: Yaml,
    service: Yaml,
    pdb: Yaml,
    hpa: Yaml,
    network_policy: Yaml,
    namespace: Yaml,
    configmap: Yaml,
    secret_example: Yaml,
    kustomization: Yaml,
    dockerfile: String,
}

fn load() -> Manifests {
    Manifests {
        deployment: load_one("deployment.yaml", "Deployment"),
        service: load_one("service.yaml", "Service"),
        pdb: load_one("pdb.yaml", "PodDisruptionBudget"),
        hpa: load_one("hpa.yaml", "HorizontalPodAutoscaler"),
        network_policy: load_one("networkpolicy.yaml", "NetworkPolicy"),
        namespace: load_one(NAMESPACE, "Namespace"),
        configmap: load_one("configmap.yaml", "ConfigMap"),
        secret_example: load_one(EXAMPLE_SECRET, "Secret"),
        kustomization: load_one("kustomization.yaml", "Kustomization"),
        dockerfile: read("Dockerfile"),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the documents
// ---------------------------------------------------------------------------------------------

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A scalar as it reads in the manifest (`"/healthz"`, `9090`), for violation messages.
fn show(yaml: &Yaml) -> String {
    match yaml {
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".to_owned(),
        Yaml::BadValue => "(missing)".to_owned(),
        other => format!("{other:?}"),
    }
}

fn containers(deployment: &Yaml) -> impl Iterator<Item = &Yaml> {
    let spec = pod_spec(deployment);
    items(&spec["initContainers"])
        .iter()
        .chain(items(&spec["containers"]))
}

fn name_of(doc: &Yaml) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("<unnamed>")
}

fn grace_period_seconds(deployment: &Yaml) -> Option<i64> {
    pod_spec(deployment)["terminationGracePeriodSeconds"].as_i64()
}

/// Where a container's environment variable gets its value, with `env` taking precedence over
/// `envFrom` and a later `envFrom` source over an earlier one, as in Kubernetes.
#[derive(Debug, PartialEq)]
enum EnvSource {
    Literal(String),
    ConfigMap {
        name: String,
        key: String,
    },
    Secret {
        name: String,
        key: String,
        optional: bool,
    },
    Other,
    Unset,
}

impl std::fmt::Display for EnvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvSource::Literal(value) => write!(f, "the literal value {value:?}"),
            EnvSource::ConfigMap { name, key } => write!(f, "ConfigMap {name} key {key}"),
            EnvSource::Secret { name, key, .. } => write!(f, "Secret {name} key {key}"),
            EnvSource::Other => f.write_str("another valueFrom source"),
            EnvSource::Unset => f.write_str("nowhere (it is unset)"),
        }
    }
}

fn env_source(container: &Yaml, var: &str, m: &Manifests) -> EnvSource {
    if let Some(entry) = items(&container["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some(var))
    {
        if let Some(value) = entry["value"].as_str() {
            return EnvSource::Literal(value.to_owned());
        }
        let from = &entry["valueFrom"];
        let reference = |r: &Yaml| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["key"].as_str().unwrap_or_default().to_owned(),
                r["optional"].as_bool().unwrap_or(false),
            )
        };
        if from["configMapKeyRef"].is_hash() {
            let (name, key, _) = reference(&from["configMapKeyRef"]);
            return EnvSource::ConfigMap { name, key };
        }
        if from["secretKeyRef"].is_hash() {
            let (name, key, optional) = reference(&from["secretKeyRef"]);
            return EnvSource::Secret {
                name,
                key,
                optional,
            };
        }
        return EnvSource::Other;
    }
    // envFrom can only name keys of the documents we have: the ConfigMap and the example Secret.
    for source in items(&container["envFrom"]).iter().rev() {
        let prefix = source["prefix"].as_str().unwrap_or_default();
        let Some(key) = var.strip_prefix(prefix) else {
            continue;
        };
        for (field, doc, data) in [
            ("configMapRef", &m.configmap, "data"),
            ("secretRef", &m.secret_example, "stringData"),
            ("secretRef", &m.secret_example, "data"),
        ] {
            let r = &source[field];
            let name = r["name"].as_str().unwrap_or_default();
            if r.is_hash() && name == name_of(doc) && !doc[data][key].is_badvalue() {
                let (name, key) = (name.to_owned(), key.to_owned());
                return if field == "configMapRef" {
                    EnvSource::ConfigMap { name, key }
                } else {
                    let optional = r["optional"].as_bool().unwrap_or(false);
                    EnvSource::Secret {
                        name,
                        key,
                        optional,
                    }
                };
            }
        }
    }
    EnvSource::Unset
}

/// The value of `var` in the container, from a literal or from the ConfigMap.
fn env_value(container: &Yaml, var: &str, m: &Manifests) -> Result<String, String> {
    match env_source(container, var, m) {
        EnvSource::Literal(value) => Ok(value),
        EnvSource::ConfigMap { name, key } if name == name_of(&m.configmap) => {
            let value = &m.configmap["data"][key.as_str()];
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{var}: ConfigMap {name} has no string key {key}"))
        }
        other => Err(format!(
            "{var} has no value known here: it comes from {other}"
        )),
    }
}

/// Resolves a probe's or Service's port (a number or a port name) to the container port number.
fn resolve_port(container: &Yaml, port: &Yaml) -> Option<i64> {
    let ports = items(&container["ports"]);
    match port {
        Yaml::Integer(n) => ports
            .iter()
            .find_map(|p| p["containerPort"].as_i64().filter(|c| c == n)),
        Yaml::String(name) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name.as_str()))
            .and_then(|p| p["containerPort"].as_i64()),
        _ => None,
    }
}

/// Whether every label of `selector` is on the pod template with the same value.
fn selects_pod_template(selector: &Yaml, deployment: &Yaml) -> Result<(), String> {
    let Some(selector) = selector.as_hash().filter(|s| !s.is_empty()) else {
        return Err("selects nothing (empty or missing selector)".to_owned());
    };
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector {
        let key = key.as_str().unwrap_or("<non-string key>");
        if labels[key] != *value {
            return Err(format!(
                "selects {key}={} but the pod template has {key}={}",
                show(value),
                show(&labels[key])
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// `terminationGracePeriodSeconds` is a pod field. On a container it is an unknown field:
/// `kubectl` rejects it, a client that skips validation has it dropped, and either way the pod
/// runs with the default of 30 s.
fn check_grace_period_on_pod_spec(deployment: &Yaml) -> Violations {
    let mut v = Violations::new();
    for c in containers(deployment) {
        if !c["terminationGracePeriodSeconds"].is_badvalue() {
            v.push(format!(
                "terminationGracePeriodSeconds is set on container `{}`, which has no such field: \
                 move it to the pod spec (spec.template.spec)",
                c["name"].as_str().unwrap_or("?")
            ));
        }
    }
    match grace_period_seconds(deployment) {
        Some(s) if s > 0 => {}
        Some(s) => v.push(format!(
            "terminationGracePeriodSeconds is {s}: it must be positive"
        )),
        None => v.push(
            "spec.template.spec.terminationGracePeriodSeconds is missing (an integer of seconds)"
                .to_owned(),
        ),
    }
    v
}

/// The preStop hook is an HTTP GET of the drain endpoint on the admin port, so the image needs
/// no shell and the hook lasts as long as the drain; the admin port is not the one the Service
/// sends clients to.
fn check_pre_stop_drain(m: &Manifests) -> Violations {
    let Some(api) = api_container(&m.deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let get = &api["lifecycle"]["preStop"]["httpGet"];
    if !get.is_hash() {
        return vec![
            "container `api` needs lifecycle.preStop.httpGet (the drain endpoint)".to_owned(),
        ];
    }
    let mut v = Violations::new();
    if get["path"].as_str() != Some(DRAIN_PATH) {
        v.push(format!(
            "preStop.httpGet.path is {}, expected {DRAIN_PATH:?}",
            show(&get["path"])
        ));
    }
    if resolve_port(api, &get["port"]) != Some(ADMIN_PORT) {
        v.push(format!(
            "preStop.httpGet.port {} is not the admin port {ADMIN_PORT}",
            show(&get["port"])
        ));
    }
    if !matches!(get["scheme"].as_str(), None | Some("HTTP")) {
        v.push("preStop.httpGet must use plain HTTP".to_owned());
    }
    for port in items(&m.service["spec"]["ports"]) {
        if resolve_port(api, &port["targetPort"]) == Some(ADMIN_PORT) {
            v.push(format!(
                "Service port {} sends clients to the admin port {ADMIN_PORT}: anyone could \
                 drain a pod through it",
                show(&port["port"])
            ));
        }
    }
    v
}

/// terminationGracePeriodSeconds >= the longest drain + SHUTDOWN_TIMEOUT + CLEANUP_TIMEOUT +
/// margin, so the kubelet never SIGKILLs a pod that is still draining. The drain starts with
/// the preStop hook, when the grace period does; its longest is DRAIN_MAX with the adaptive
/// drain (DRAIN_QUIET set), DRAIN_DELAY without.
fn check_grace_budget(m: &Manifests) -> Violations {
    let Some(api) = api_container(&m.deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let Some(grace) = grace_period_seconds(&m.deployment) else {
        return vec!["spec.template.spec.terminationGracePeriodSeconds is missing".to_owned()];
    };
    let grace = Duration::from_secs(grace.max(0).unsigned_abs());
    let adaptive = env_value(api, "DRAIN_QUIET", m)
        .and_then(|text| parse_duration(&text))
        .is_ok_and(|quiet| !quiet.is_zero());
    let drain = if adaptive { "DRAIN_MAX" } else { "DRAIN_DELAY" };
    let mut v = Violations::new();
    let mut parts = Vec::new();
    for var in [drain, "SHUTDOWN_TIMEOUT", "CLEANUP_TIMEOUT"] {
        match env_value(api, var, m).and_then(|text| parse_duration(&text)) {
            Ok(d) => parts.push((var, d)),
            // No fixed drain delay is none.
            Err(_) if var == "DRAIN_DELAY" => parts.push((var, Duration::ZERO)),
            Err(err) => v.push(format!("cannot compute the shutdown budget: {err}")),
        }
    }
    if !v.is_empty() {
        return v;
    }
    parts.push(("margin", GRACE_MARGIN));
    let budget: Duration = parts.iter().map(|(_, d)| *d).sum();
    if grace < budget {
        let sum: Vec<String> = parts
            .iter()
            .map(|(n, d)| format!("{n} {}", seconds(*d)))
            .collect();
        v.push(format!(
            "terminationGracePeriodSeconds {} is shorter than the shutdown budget {} = {}: \
             the kubelet would SIGKILL a pod that is still draining",
            seconds(grace),
            seconds(budget),
            sum.join(" + ")
        ));
    }
    v
}

/// The service is told its grace period, so it can warn when its own budget does not fit.
fn check_grace_period_env(m: &Manifests) -> Violations {
    let Some(api) = api_container(&m.deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let grace = grace_period_seconds(&m.deployment);
    match env_value(api, "GRACE_PERIOD_SECONDS", m) {
        Ok(value) if value.parse::<i64>().ok() == grace && grace.is_some() => vec![],
        Ok(value) => vec![format!(
            "GRACE_PERIOD_SECONDS is {value:?} but terminationGracePeriodSeconds is {}",
            show(&pod_spec(&m.deployment)["terminationGracePeriodSeconds"])
        )],
        Err(err) => vec![err],
    }
}

/// Readiness on /readyz (503 while draining), liveness and startup on /healthz, all on the
/// admin port, whose connections do not count as traffic that keeps the drain open.
fn check_probes(deployment: &Yaml) -> Violations {
    let Some(api) = api_container(deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let mut v = Violations::new();
    for (probe, path) in [
        ("readinessProbe", READINESS_PATH),
        ("livenessProbe", LIVENESS_PATH),
        ("startupProbe", LIVENESS_PATH),
    ] {
        let get = &api[probe]["httpGet"];
        if !get.is_hash() {
            v.push(format!("container `api` has no {probe}.httpGet"));
            continue;
        }
        if get["path"].as_str() != Some(path) {
            v.push(format!(
                "{probe} checks {}, expected {path:?}",
                show(&get["path"])
            ));
        }
        if resolve_port(api, &get["port"]) != Some(ADMIN_PORT) {
            v.push(format!(
                "{probe} port {} is not the admin port {ADMIN_PORT}",
                show(&get["port"])
            ));
        }
        if !matches!(get["scheme"].as_str(), None | Some("HTTP")) {
            v.push(format!("{probe} must use plain HTTP"));
        }
    }
    v
}

/// The Deployment, the Service and the PodDisruptionBudget all select the pod template, and the
/// Service sends traffic to the container port.
fn check_selectors(m: &Manifests) -> Violations {
    let mut v = Violations::new();
    let d = &m.deployment;
    let selectors = [
        (
            "Deployment spec.selector.matchLabels",
            &d["spec"]["selector"]["matchLabels"],
        ),
        ("Service spec.selector", &m.service["spec"]["selector"]),
        (
            "PodDisruptionBudget spec.selector.matchLabels",
            &m.pdb["spec"]["selector"]["matchLabels"],
        ),
    ];
    for (what, selector) in selectors {
        if let Err(err) = selects_pod_template(selector, d) {
            v.push(format!("{what} {err}"));
        }
    }
    if !m.pdb["spec"]["selector"]["matchExpressions"].is_badvalue() {
        v.push("PodDisruptionBudget: use matchLabels only, so this check can follow it".to_owned());
    }
    if let Some(api) = api_container(d) {
        for port in items(&m.service["spec"]["ports"]) {
            let target = &port["targetPort"];
            if resolve_port(api, target) != Some(SERVICE_PORT) {
                v.push(format!(
                    "Service targetPort {} is not the container port {SERVICE_PORT}",
                    show(target)
                ));
            }
        }
    }
    v
}

/// The budget lets a drain evict one pod at a time and never the last one.
fn check_disruption_budget(m: &Manifests) -> Violations {
    let replicas = m.deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let fewest = m.hpa["spec"]["minReplicas"]
        .as_i64()
        .map_or(replicas, |min| min.min(replicas));
    let spec = &m.pdb["spec"];
    let allowed = match (
        spec["maxUnavailable"].as_i64(),
        spec["minAvailable"].as_i64(),
    ) {
        (Some(max_unavailable), None) => max_unavailable.min(fewest - 1),
        (None, Some(min_available)) => fewest - min_available,
        _ => {
            return vec![
                "PodDisruptionBudget needs an integer maxUnavailable or minAvailable".to_owned(),
            ];
        }
    };
    if allowed < 1 {
        return vec![format!(
            "with {fewest} replicas the PodDisruptionBudget allows {allowed} evictions: \
             a drain would either block or take the last pod"
        )];
    }
    vec![]
}

/// Non-root, numeric uid, read-only root, no capabilities, no privilege escalation, the
/// runtime's default seccomp profile, and no service-account token.
fn check_security_context(deployment: &Yaml) -> Violations {
    let Some(api) = api_container(deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let pod = pod_spec(deployment);
    // A container setting overrides the pod's for the fields both have.
    let effective = |field: &str| {
        let own = &api["securityContext"][field];
        if own.is_badvalue() {
            &pod["securityContext"][field]
        } else {
            own
        }
    };
    let mut v = Violations::new();
    if effective("runAsNonRoot").as_bool() != Some(true) {
        v.push("runAsNonRoot must be true".to_owned());
    }
    if effective("runAsUser").as_i64().is_none_or(|uid| uid <= 0) {
        v.push("runAsUser must be a numeric non-root uid".to_owned());
    }
    if effective("seccompProfile")["type"].as_str() != Some("RuntimeDefault") {
        v.push("seccompProfile.type must be RuntimeDefault".to_owned());
    }
    let own = &api["securityContext"];
    if own["readOnlyRootFilesystem"].as_bool() != Some(true) {
        v.push("container `api`: readOnlyRootFilesystem must be true".to_owned());
    }
    if own["allowPrivilegeEscalation"].as_bool() != Some(false) {
        v.push("container `api`: allowPrivilegeEscalation must be false".to_owned());
    }
    if own["privileged"].as_bool() == Some(true) {
        v.push("container `api` must not be privileged".to_owned());
    }
    if !items(&own["capabilities"]["drop"])
        .iter()
        .any(|c| c.as_str() == Some("ALL"))
    {
        v.push("container `api`: capabilities.drop must contain ALL".to_owned());
    }
    if !items(&own["capabilities"]["add"]).is_empty() {
        v.push("container `api` must add no capabilities".to_owned());
    }
    if pod["automountServiceAccountToken"].as_bool() != Some(false) {
        v.push("automountServiceAccountToken must be false on the pod spec".to_owned());
    }
    v
}

/// With a read-only root, TMPDIR must point at a mounted emptyDir.
fn check_temp_dir(m: &Manifests) -> Violations {
    let Some(api) = api_container(&m.deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let tmpdir = match env_value(api, "TMPDIR", m) {
        Ok(dir) => dir,
        Err(err) => return vec![err],
    };
    let mount = items(&api["volumeMounts"])
        .iter()
        .find(|mount| mount["mountPath"].as_str() == Some(tmpdir.trim_end_matches('/')));
    let Some(mount) = mount else {
        return vec![format!("TMPDIR is {tmpdir:?} but nothing is mounted there")];
    };
    let volume = items(&pod_spec(&m.deployment)["volumes"])
        .iter()
        .find(|vol| vol["name"] == mount["name"]);
    match volume {
        Some(vol) if vol["emptyDir"].is_hash() && mount["readOnly"].as_bool() != Some(true) => {
            vec![]
        }
        _ => vec![format!(
            "TMPDIR {tmpdir:?} must be a writable emptyDir volume"
        )],
    }
}

/// The service listens on every address of the pod, on the container port.
fn check_listen_addr(m: &Manifests) -> Violations {
    let Some(api) = api_container(&m.deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let expected = format!("0.0.0.0:{SERVICE_PORT}");
    let mut v = Violations::new();
    match env_value(api, "LISTEN_ADDR", m) {
        Ok(addr) if addr == expected => {}
        Ok(addr) => v.push(format!("LISTEN_ADDR is {addr:?}, expected {expected:?}")),
        Err(err) => v.push(err),
    }
    let admin = format!("0.0.0.0:{ADMIN_PORT}");
    match env_value(api, "ADMIN_LISTEN", m) {
        Ok(addr) if addr == admin => {}
        Ok(addr) => v.push(format!("ADMIN_LISTEN is {addr:?}, expected {admin:?}")),
        Err(err) => v.push(err),
    }
    for port in [SERVICE_PORT, ADMIN_PORT] {
        if resolve_port(api, &Yaml::Integer(port)).is_none() {
            v.push(format!("container `api` declares no containerPort {port}"));
        }
    }
    v
}

/// The shutdown durations come from the ConfigMap and parse as durations.
fn check_durations_from_configmap(m: &Manifests) -> Violations {
    let Some(api) = api_container(&m.deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let mut v = Violations::new();
    for var in [
        "DRAIN_QUIET",
        "DRAIN_MIN",
        "DRAIN_MAX",
        "SHUTDOWN_TIMEOUT",
        "CLEANUP_TIMEOUT",
    ] {
        match env_source(api, var, m) {
            EnvSource::ConfigMap { name, .. } if name == name_of(&m.configmap) => {
                if let Err(err) = env_value(api, var, m).and_then(|text| parse_duration(&text)) {
                    v.push(format!("{var}: {err}"));
                }
            }
            other => v.push(format!(
                "{var} must come from ConfigMap {}, not from {other}",
                name_of(&m.configmap)
            )),
        }
    }
    v
}

/// The connection URLs, which hold passwords, reach the service as files of a read-only volume
/// of the Secret, never as environment variables: `DATABASE_URL_FILE` and `REDIS_URL_FILE` name
/// files where the volume puts the Secret's keys, the database key is required, and the files
/// are readable by the pod's user and by nobody else.
fn check_urls_from_secret(m: &Manifests) -> Violations {
    let Some(api) = api_container(&m.deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let secret = name_of(&m.secret_example);
    let pod = pod_spec(&m.deployment);
    let mut v = Violations::new();
    for entry in items(&api["env"]) {
        if entry["valueFrom"]["secretKeyRef"].is_hash() {
            v.push(format!(
                "{} comes from a secretKeyRef: secrets reach the service as files, not as \
                 environment variables",
                show(&entry["name"])
            ));
        }
    }
    if items(&api["envFrom"])
        .iter()
        .any(|source| source["secretRef"].is_hash())
    {
        v.push("envFrom names a secretRef: secrets reach the service as files".to_owned());
    }
    for &(key, var, may_be_optional) in URL_FILES {
        let url_var = key;
        if env_source(api, url_var, m) != EnvSource::Unset {
            v.push(format!(
                "{url_var} is set in the environment: set {var} to the file of the Secret volume \
                 instead (the service refuses both)"
            ));
        }
        let path = match env_source(api, var, m) {
            EnvSource::Literal(path) => path,
            other => {
                v.push(format!(
                    "{var} must be the literal path of a file of the Secret volume, not {other}"
                ));
                continue;
            }
        };
        match secret_file(api, pod, &path) {
            Err(err) => v.push(format!("{var} {path:?}: {err}")),
            Ok(file) => {
                if file.secret != secret {
                    v.push(format!(
                        "{var} {path:?} comes from Secret {}, expected {secret}",
                        file.secret
                    ));
                }
                if file.key != key {
                    v.push(format!(
                        "{var} {path:?} holds the Secret's key {}, expected {key}",
                        file.key
                    ));
                }
                if file.optional && !may_be_optional {
                    v.push(format!(
                        "{var}: the Secret's key {key} must not be optional: the service needs it"
                    ));
                }
                if !file.read_only {
                    v.push(format!("{var}: the Secret volume must be mounted readOnly"));
                }
                readable_by_the_pod_only(pod, file.mode, var, &mut v);
            }
        }
        let example = &m.secret_example;
        if example["stringData"][key].is_badvalue() && example["data"][key].is_badvalue() {
            v.push(format!(
                "{var}: key {key} is missing from kubernetes/{EXAMPLE_SECRET}"
            ));
        }
    }
    v
}

/// A file that a Secret's key becomes in a container.
struct SecretFile {
    secret: String,
    key: String,
    /// Whether the pod starts without the key (then the file is absent).
    optional: bool,
    read_only: bool,
    /// The file's mode, `None` when neither the item nor the volume says (Kubernetes: 0644).
    mode: Option<i64>,
}

/// Which Secret key the container sees at `path`, through a `secret` or `projected` volume.
fn secret_file(container: &Yaml, pod: &Yaml, path: &str) -> Result<SecretFile, String> {
    let path = std::path::Path::new(path);
    let (mount, relative) = items(&container["volumeMounts"])
        .iter()
        .find_map(|mount| {
            let relative = path.strip_prefix(mount["mountPath"].as_str()?).ok()?;
            Some((mount, relative.to_str()?.to_owned()))
        })
        .ok_or("is under no volumeMount of container `api`")?;
    let volume = items(&pod["volumes"])
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .ok_or_else(|| format!("volume {} is not defined", show(&mount["name"])))?;
    // Each Secret the volume shows, with the field naming it: a secret volume shows one, a
    // projected volume one per `secret` source.
    let (secrets, default_mode): (Vec<(&Yaml, &str)>, _) = if volume["secret"].is_hash() {
        (
            vec![(&volume["secret"], "secretName")],
            volume["secret"]["defaultMode"].as_i64(),
        )
    } else if volume["projected"].is_hash() {
        (
            items(&volume["projected"]["sources"])
                .iter()
                .map(|source| (&source["secret"], "name"))
                .collect(),
            volume["projected"]["defaultMode"].as_i64(),
        )
    } else {
        return Err(format!(
            "volume {} is neither a secret nor a projected volume",
            show(&mount["name"])
        ));
    };
    for (secret, name_field) in secrets {
        for item in items(&secret["items"]) {
            if item["path"].as_str() == Some(relative.as_str()) {
                return Ok(SecretFile {
                    secret: secret[name_field].as_str().unwrap_or_default().to_owned(),
                    key: item["key"].as_str().unwrap_or_default().to_owned(),
                    optional: secret["optional"].as_bool().unwrap_or(false),
                    read_only: mount["readOnly"].as_bool() == Some(true),
                    mode: item["mode"].as_i64().or(default_mode),
                });
            }
        }
    }
    Err(format!(
        "no Secret item of volume {} has the path {relative:?} (list the key in `items`)",
        show(&mount["name"])
    ))
}

/// The file (owned by root, its group the pod's fsGroup) is readable by the pod's user through
/// the group, and neither writable nor readable by others.
fn readable_by_the_pod_only(pod: &Yaml, mode: Option<i64>, var: &str, v: &mut Violations) {
    let context = &pod["securityContext"];
    let Some(mode) = mode else {
        v.push(format!(
            "{var}: set defaultMode (0440): the default 0644 lets every user of the container \
             read the secret"
        ));
        return;
    };
    if mode & 0o040 == 0 {
        v.push(format!(
            "{var}: mode {mode:#o} does not let the group (fsGroup) read the file"
        ));
    }
    if mode & 0o007 != 0 || mode & 0o222 != 0 {
        v.push(format!(
            "{var}: mode {mode:#o} lets others read or someone write the file; use 0440"
        ));
    }
    match (context["fsGroup"].as_i64(), context["runAsGroup"].as_i64()) {
        (Some(fs_group), Some(group)) if fs_group == group => {}
        (fs_group, group) => v.push(format!(
            "{var}: fsGroup is {} and runAsGroup {}: they must be equal, or the service \
             cannot read the root-owned file",
            fs_group.map_or("unset".to_owned(), |g| g.to_string()),
            group.map_or("unset".to_owned(), |g| g.to_string()),
        )),
    }
}

/// Only the container port named `http` is open to the network; the pod may reach PostgreSQL,
/// Redis and the cluster DNS, nothing else.
fn check_network_policy(m: &Manifests) -> Violations {
    let Some(api) = api_container(&m.deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let policy = &m.network_policy["spec"];
    let mut v = Violations::new();
    if let Err(err) = selects_pod_template(&policy["podSelector"]["matchLabels"], &m.deployment) {
        v.push(format!("NetworkPolicy spec.podSelector.matchLabels {err}"));
    }
    if !policy["podSelector"]["matchExpressions"].is_badvalue() {
        v.push("NetworkPolicy: use matchLabels only, so this check can follow it".to_owned());
    }
    for kind in ["Ingress", "Egress"] {
        if !items(&policy["policyTypes"])
            .iter()
            .any(|t| t.as_str() == Some(kind))
        {
            v.push(format!(
                "NetworkPolicy policyTypes lacks {kind}: that direction is then not restricted"
            ));
        }
    }
    let http = resolve_port(api, &Yaml::String(HTTP_PORT_NAME.to_owned()));
    if http != Some(SERVICE_PORT) {
        v.push(format!(
            "container `api` has no port named {HTTP_PORT_NAME:?} at {SERVICE_PORT}"
        ));
    }
    for (i, rule) in items(&policy["ingress"]).iter().enumerate() {
        let ports = items(&rule["ports"]);
        if ports.is_empty() {
            v.push(format!(
                "NetworkPolicy ingress rule {i} has no ports: it opens every port of the pod, \
                 the admin port too"
            ));
        }
        for port in ports {
            if !matches!(port["protocol"].as_str(), None | Some("TCP"))
                || !port["endPort"].is_badvalue()
                || resolve_port(api, &port["port"]) != http
                || http.is_none()
            {
                v.push(format!(
                    "NetworkPolicy ingress rule {i} opens port {} {}: only the port named \
                     {HTTP_PORT_NAME:?} may be reachable from the network",
                    show(&port["port"]),
                    show(&port["protocol"])
                ));
            }
        }
    }
    let mut allowed = Vec::new();
    for (i, rule) in items(&policy["egress"]).iter().enumerate() {
        let ports = items(&rule["ports"]);
        if ports.is_empty() {
            v.push(format!(
                "NetworkPolicy egress rule {i} has no ports: it allows every port"
            ));
        }
        for port in ports {
            let (Some(number), protocol) = (port["port"].as_i64(), port["protocol"].as_str())
            else {
                v.push(format!(
                    "NetworkPolicy egress rule {i}: port {} must be a number",
                    show(&port["port"])
                ));
                continue;
            };
            let protocol = protocol.unwrap_or("TCP");
            if !EGRESS_PORTS.contains(&(number, protocol)) || !port["endPort"].is_badvalue() {
                v.push(format!(
                    "NetworkPolicy egress rule {i} allows {number}/{protocol}: only PostgreSQL, \
                     Redis and DNS are expected"
                ));
            }
            if number == DNS_PORT && !is_cluster_dns(&rule["to"]) {
                v.push(format!(
                    "NetworkPolicy egress rule {i} allows port {DNS_PORT} to more than the \
                     kube-dns pods of kube-system"
                ));
            }
            allowed.push((number, protocol.to_owned()));
        }
    }
    for (number, protocol) in EGRESS_PORTS {
        if !allowed.iter().any(|(n, p)| n == number && p == protocol) {
            v.push(format!(
                "NetworkPolicy allows no egress to {number}/{protocol}"
            ));
        }
    }
    v
}

/// `to:` names exactly the kube-dns pods of kube-system.
fn is_cluster_dns(to: &Yaml) -> bool {
    let peers = items(to);
    !peers.is_empty()
        && peers.iter().all(|peer| {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str()
                == Some("kube-system")
                && peer["podSelector"]["matchLabels"]["k8s-app"].as_str() == Some("kube-dns")
                && peer["ipBlock"].is_badvalue()
        })
}

/// Every object lives in the namespace that namespace.yaml creates and the kustomization sets,
/// so that the raw files and the rendered kustomization say the same.
fn check_namespaces(m: &Manifests) -> Violations {
    let expected = name_of(&m.namespace);
    let mut v = Violations::new();
    match m.kustomization["namespace"].as_str() {
        Some(namespace) if namespace == expected => {}
        other => v.push(format!(
            "kustomization.yaml namespace is {}, expected {expected:?} (namespace.yaml)",
            other.map_or("unset".to_owned(), |n| format!("{n:?}"))
        )),
    }
    for (file, doc) in [
        ("configmap.yaml", &m.configmap),
        ("deployment.yaml", &m.deployment),
        ("service.yaml", &m.service),
        ("pdb.yaml", &m.pdb),
        ("hpa.yaml", &m.hpa),
        ("networkpolicy.yaml", &m.network_policy),
        (EXAMPLE_SECRET, &m.secret_example),
    ] {
        let namespace = &doc["metadata"]["namespace"];
        if namespace.as_str() != Some(expected) {
            v.push(format!(
                "{file}: metadata.namespace is {}, expected {expected:?}",
                show(namespace)
            ));
        }
    }
    v
}

/// A rolling update starts one new pod and waits for it to be ready before stopping an old one.
fn check_rolling_update(deployment: &Yaml) -> Violations {
    let strategy = &deployment["spec"]["strategy"];
    let mut v = Violations::new();
    if strategy["type"].as_str() != Some("RollingUpdate") {
        v.push("spec.strategy.type must be RollingUpdate".to_owned());
    }
    let rolling = &strategy["rollingUpdate"];
    if !matches!(&rolling["maxUnavailable"], Yaml::Integer(0)) {
        v.push(format!(
            "maxUnavailable is {}, expected 0",
            show(&rolling["maxUnavailable"])
        ));
    }
    if !matches!(&rolling["maxSurge"], Yaml::Integer(1)) {
        v.push(format!(
            "maxSurge is {}, expected 1",
            show(&rolling["maxSurge"])
        ));
    }
    v
}

/// Requests let the scheduler place the pod and the HPA compute utilisation; the memory limit
/// bounds a leak.
fn check_resources(deployment: &Yaml) -> Violations {
    let Some(api) = api_container(deployment) else {
        return vec!["no container named `api`".to_owned()];
    };
    let r = &api["resources"];
    let mut v = Violations::new();
    for (path, value) in [
        ("requests.cpu", &r["requests"]["cpu"]),
        ("requests.memory", &r["requests"]["memory"]),
        ("limits.memory", &r["limits"]["memory"]),
    ] {
        if value.is_badvalue() || value.is_null() {
            v.push(format!("container `api` needs resources.{path}"));
        }
    }
    v
}

/// `kubectl apply -k kubernetes/` applies every manifest but never the example Secret.
fn check_kustomization(kustomization: &Yaml) -> Violations {
    let listed: Vec<&str> = items(&kustomization["resources"])
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let mut v = Violations::new();
    for file in APPLIED_MANIFESTS {
        if !listed.contains(file) {
            v.push(format!("kustomization.yaml does not list {file}"));
        }
    }
    if listed.contains(&EXAMPLE_SECRET) {
        v.push(format!(
            "kustomization.yaml lists {EXAMPLE_SECRET}, which would apply fake credentials"
        ));
    }
    if listed.contains(&NAMESPACE) {
        v.push(format!(
            "kustomization.yaml lists {NAMESPACE}: `kubectl delete -k` would delete the namespace \
             and the Secret in it"
        ));
    }
    for file in listed {
        if !kubernetes_dir().join(file).is_file() {
            v.push(format!(
                "kustomization.yaml lists {file}, which does not exist"
            ));
        }
    }
    v
}

/// The image runs the binary as PID 1 (exec form, so it receives SIGTERM itself), as the
/// numeric uid and gid the manifest declares.
fn check_dockerfile(dockerfile: &str, deployment: &Yaml) -> Violations {
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let last = |keyword: &str| {
        instructions.iter().rev().find_map(|line| {
            let (word, rest) = line.split_once(char::is_whitespace)?;
            word.eq_ignore_ascii_case(keyword).then(|| rest.trim())
        })
    };
    let mut v = Violations::new();
    match last("ENTRYPOINT") {
        Some(r#"["/usr/local/bin/gremlins-api"]"#) => {}
        Some(other) => v.push(format!(
            "ENTRYPOINT {other} must be the exec form [\"/usr/local/bin/gremlins-api\"]: \
             the shell form makes /bin/sh PID 1, which does not pass SIGTERM on"
        )),
        None => v.push("the Dockerfile has no ENTRYPOINT".to_owned()),
    }
    let pod = &pod_spec(deployment)["securityContext"];
    let expected = match (pod["runAsUser"].as_i64(), pod["runAsGroup"].as_i64()) {
        (Some(uid), Some(gid)) => format!("{uid}:{gid}"),
        (Some(uid), None) => uid.to_string(),
        _ => return vec!["the pod securityContext has no runAsUser to compare with".to_owned()],
    };
    match last("USER") {
        Some(user) if user == expected => {}
        Some(user) => v.push(format!(
            "Dockerfile USER {user} differs from runAsUser/runAsGroup {expected} in deployment.yaml"
        )),
        None => v.push("the Dockerfile has no USER: the image would run as root".to_owned()),
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The real manifests keep every rule
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_keeps(rule: &str, violations: Violations) {
    assert!(
        violations.is_empty(),
        "{rule}:\n  - {}",
        violations.join("\n  - ")
    );
}

#[test]
fn durations_parse_like_the_service_configuration() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    for bad in [
        "",
        "s",
        "1h",
        "1.5s",
        "30 s",
        " 30s",
        "-1s",
        "+1s",
        "30sec",
        "99999999999999999999",
    ] {
        assert!(
            parse_duration(bad).is_err(),
            "{bad:?} must not parse as a duration"
        );
    }
}

#[test]
fn grace_period_is_set_on_the_pod_spec_and_not_on_the_container() {
    assert_keeps(
        "grace period placement",
        check_grace_period_on_pod_spec(&load().deployment),
    );
}

#[test]
fn pre_stop_hook_asks_for_the_drain_on_the_admin_port_which_the_service_does_not_expose() {
    assert_keeps("preStop hook", check_pre_stop_drain(&load()));
}

#[test]
fn grace_period_covers_the_longest_drain_shutdown_and_cleanup_with_a_margin() {
    assert_keeps("grace budget", check_grace_budget(&load()));
}

#[test]
fn service_is_told_its_grace_period() {
    assert_keeps("GRACE_PERIOD_SECONDS", check_grace_period_env(&load()));
}

#[test]
fn probes_check_readyz_and_healthz_on_the_admin_port() {
    assert_keeps("probes", check_probes(&load().deployment));
}

#[test]
fn service_and_disruption_budget_select_the_pod_template() {
    assert_keeps("selectors", check_selectors(&load()));
}

#[test]
fn a_drain_evicts_one_pod_at_a_time_and_never_the_last() {
    assert_keeps("disruption budget", check_disruption_budget(&load()));
}

#[test]
fn container_runs_unprivileged_on_a_read_only_root() {
    assert_keeps(
        "security context",
        check_security_context(&load().deployment),
    );
}

#[test]
fn temp_dir_is_a_writable_empty_dir() {
    assert_keeps("TMPDIR", check_temp_dir(&load()));
}

#[test]
fn service_listens_on_every_address_on_the_container_port() {
    assert_keeps("LISTEN_ADDR", check_listen_addr(&load()));
}

#[test]
fn shutdown_durations_come_from_the_config_map() {
    assert_keeps("durations", check_durations_from_configmap(&load()));
}

#[test]
fn connection_urls_are_files_of_a_read_only_secret_volume() {
    assert_keeps("connection URLs", check_urls_from_secret(&load()));
}

#[test]
fn only_the_http_port_is_open_and_only_the_database_cache_and_dns_are_reachable() {
    assert_keeps("network policy", check_network_policy(&load()));
}

#[test]
fn every_object_lives_in_the_namespace_the_kustomization_sets() {
    assert_keeps("namespaces", check_namespaces(&load()));
}

#[test]
fn rolling_update_adds_a_ready_pod_before_removing_one() {
    assert_keeps("rolling update", check_rolling_update(&load().deployment));
}

#[test]
fn container_requests_cpu_and_memory_and_limits_memory() {
    assert_keeps("resources", check_resources(&load().deployment));
}

#[test]
fn kustomization_applies_every_manifest_but_the_example_secret() {
    assert_keeps("kustomization", check_kustomization(&load().kustomization));
}

#[test]
fn image_runs_the_binary_as_pid_1_with_the_manifest_uid() {
    let m = load();
    assert_keeps("Dockerfile", check_dockerfile(&m.dockerfile, &m.deployment));
}

// ---------------------------------------------------------------------------------------------
// Each check fails on a broken copy of the real manifests
// ---------------------------------------------------------------------------------------------

/// Follows `path` through mappings (keys) and sequences (numeric segments), for mutation.
fn node_mut<'a>(yaml: &'a mut Yaml, path: &str) -> &'a mut Yaml {
    path.split('.').fold(yaml, |node, segment| match node {
        Yaml::Array(seq) => {
            let i: usize = segment.parse().expect("BUG: numeric index into a sequence");
            seq.get_mut(i)
                .unwrap_or_else(|| panic!("the manifest has no element {segment} in {path}"))
        }
        Yaml::Hash(map) => map
            .get_mut(&Yaml::String(segment.to_owned()))
            .unwrap_or_else(|| panic!("the manifest has no key {segment} in {path}")),
        _ => panic!("BUG: {segment} of {path} is not in a mapping or sequence"),
    })
}

fn set(yaml: &mut Yaml, path: &str, key: &str, value: Yaml) {
    node_mut(yaml, path)
        .as_mut_hash()
        .expect("BUG: set into a mapping")
        .insert(Yaml::String(key.to_owned()), value);
}

fn remove(yaml: &mut Yaml, path: &str, key: &str) -> Yaml {
    node_mut(yaml, path)
        .as_mut_hash()
        .expect("BUG: remove from a mapping")
        .remove(&Yaml::String(key.to_owned()))
        .unwrap_or_else(|| panic!("the manifest has no {path}.{key} for this test to change"))
}

#[track_caller]
fn assert_reports(violations: &[String], expected: &str) {
    assert!(
        violations.iter().any(|v| v.contains(expected)),
        "expected a violation containing {expected:?}, got {violations:#?}"
    );
}

const POD: &str = "spec.template.spec";
const API: &str = "spec.template.spec.containers.0";

#[test]
fn grace_period_moved_under_the_container_is_reported() {
    let mut d = load().deployment;
    let grace = remove(&mut d, POD, "terminationGracePeriodSeconds");
    set(&mut d, API, "terminationGracePeriodSeconds", grace);

    let violations = check_grace_period_on_pod_spec(&d);
    assert_reports(
        &violations,
        "terminationGracePeriodSeconds is set on container `api`",
    );
    assert_reports(
        &violations,
        "spec.template.spec.terminationGracePeriodSeconds is missing",
    );
}

#[test]
fn grace_period_shorter_than_the_shutdown_budget_is_reported() {
    let mut m = load();
    set(
        &mut m.deployment,
        POD,
        "terminationGracePeriodSeconds",
        Yaml::Integer(41),
    );

    assert_reports(
        &check_grace_budget(&m),
        "terminationGracePeriodSeconds 41s is shorter than the shutdown budget 45s = DRAIN_MAX 8s \
         + SHUTDOWN_TIMEOUT 30s + CLEANUP_TIMEOUT 5s + margin 2s",
    );
}

#[test]
fn drain_max_raised_past_the_grace_period_is_reported() {
    let mut m = load();
    set(
        &mut m.configmap,
        "data",
        "DRAIN_MAX",
        Yaml::String("20s".to_owned()),
    );

    assert_reports(
        &check_grace_budget(&m),
        "shorter than the shutdown budget 57s = DRAIN_MAX 20s",
    );
}

#[test]
fn pre_stop_drain_on_the_service_port_is_reported() {
    let mut m = load();
    set(
        &mut m.deployment,
        &format!("{API}.lifecycle.preStop.httpGet"),
        "port",
        Yaml::String("http".to_owned()),
    );

    assert_reports(
        &check_pre_stop_drain(&m),
        "preStop.httpGet.port \"http\" is not the admin port 9091",
    );
}

#[test]
fn a_service_port_onto_the_admin_port_is_reported() {
    let mut m = load();
    set(
        &mut m.service,
        "spec.ports.0",
        "targetPort",
        Yaml::String("admin".to_owned()),
    );

    assert_reports(
        &check_pre_stop_drain(&m),
        "sends clients to the admin port 9091: anyone could drain a pod through it",
    );
}

#[test]
fn shutdown_timeout_raised_past_the_grace_period_is_reported() {
    let mut m = load();
    set(
        &mut m.configmap,
        "data",
        "SHUTDOWN_TIMEOUT",
        Yaml::String("2m".to_owned()),
    );

    assert_reports(
        &check_grace_budget(&m),
        "shorter than the shutdown budget 135s",
    );
}

#[test]
fn unparsable_duration_is_reported() {
    let mut m = load();
    set(
        &mut m.configmap,
        "data",
        "CLEANUP_TIMEOUT",
        Yaml::String("5 seconds".to_owned()),
    );

    assert_reports(&check_grace_budget(&m), "\"5 seconds\" is not a duration");
    assert_reports(
        &check_durations_from_configmap(&m),
        "CLEANUP_TIMEOUT: \"5 seconds\" is not a duration",
    );
}

#[test]
fn grace_period_env_out_of_step_is_reported() {
    let mut m = load();
    set(
        &mut m.deployment,
        POD,
        "terminationGracePeriodSeconds",
        Yaml::Integer(60),
    );

    assert_reports(
        &check_grace_period_env(&m),
        "GRACE_PERIOD_SECONDS is \"45\" but terminationGracePeriodSeconds is 60",
    );
}

#[test]
fn readiness_probe_on_healthz_is_reported() {
    let mut d = load().deployment;
    set(
        &mut d,
        &format!("{API}.readinessProbe.httpGet"),
        "path",
        Yaml::String("/healthz".to_owned()),
    );

    assert_reports(
        &check_probes(&d),
        "readinessProbe checks \"/healthz\", expected \"/readyz\"",
    );
}

#[test]
fn probe_on_an_undeclared_port_is_reported() {
    let mut d = load().deployment;
    set(
        &mut d,
        &format!("{API}.livenessProbe.httpGet"),
        "port",
        Yaml::Integer(9090),
    );

    assert_reports(
        &check_probes(&d),
        "livenessProbe port 9090 is not the admin port 9091",
    );
}

#[test]
fn service_selector_that_misses_the_pods_is_reported() {
    let mut m = load();
    set(
        &mut m.service,
        "spec.selector",
        "app.kubernetes.io/name",
        Yaml::String("gremlins".to_owned()),
    );

    assert_reports(
        &check_selectors(&m),
        "Service spec.selector selects app.kubernetes.io/name=\"gremlins\" but the pod template has app.kubernetes.io/name=\"gremlins-api\"",
    );
}

#[test]
fn disruption_budget_that_blocks_drains_is_reported() {
    let mut m = load();
    remove(&mut m.pdb, "spec", "maxUnavailable");
    set(&mut m.pdb, "spec", "minAvailable", Yaml::Integer(2));

    assert_reports(&check_disruption_budget(&m), "allows 0 evictions");
}

#[test]
fn privilege_escalation_and_a_writable_root_are_reported() {
    let mut d = load().deployment;
    let sc = format!("{API}.securityContext");
    set(&mut d, &sc, "allowPrivilegeEscalation", Yaml::Boolean(true));
    remove(&mut d, &sc, "readOnlyRootFilesystem");
    remove(&mut d, POD, "automountServiceAccountToken");

    let violations = check_security_context(&d);
    assert_reports(&violations, "allowPrivilegeEscalation must be false");
    assert_reports(&violations, "readOnlyRootFilesystem must be true");
    assert_reports(&violations, "automountServiceAccountToken must be false");
}

#[test]
fn shutdown_timeout_as_a_literal_env_value_is_reported() {
    let mut m = load();
    let env = node_mut(&mut m.deployment, &format!("{API}.env"))
        .as_mut_vec()
        .expect("BUG: env is a sequence");
    env.push(
        YamlLoader::load_from_str("{name: SHUTDOWN_TIMEOUT, value: 30s}")
            .expect("BUG: YAML")
            .remove(0),
    );

    assert_reports(
        &check_durations_from_configmap(&m),
        "SHUTDOWN_TIMEOUT must come from ConfigMap gremlins-api-config, not from the literal value \"30s\"",
    );
}

/// The position of the item named `name` in the sequence at `path`.
fn position_of(yaml: &Yaml, path: &str, name: &str) -> usize {
    let mut copy = yaml.clone();
    items(node_mut(&mut copy, path))
        .iter()
        .position(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("BUG: the manifest has no {name} in {path}"))
}

/// Parses one YAML value, for mutations.
fn yaml(text: &str) -> Yaml {
    YamlLoader::load_from_str(text)
        .expect("BUG: YAML")
        .remove(0)
}

fn push(doc: &mut Yaml, path: &str, value: Yaml) {
    node_mut(doc, path)
        .as_mut_vec()
        .expect("BUG: push onto a sequence")
        .push(value);
}

#[test]
fn database_url_from_the_environment_or_optional_is_reported() {
    let mut m = load();
    let volume = position_of(&m.deployment, &format!("{POD}.volumes"), "secrets");
    set(
        &mut m.deployment,
        &format!("{POD}.volumes.{volume}.projected.sources.0.secret"),
        "optional",
        Yaml::Boolean(true),
    );
    assert_reports(
        &check_urls_from_secret(&m),
        "DATABASE_URL_FILE: the Secret's key DATABASE_URL must not be optional",
    );

    let mut m = load();
    push(
        &mut m.deployment,
        &format!("{API}.env"),
        yaml(
            "{name: DATABASE_URL, valueFrom: {secretKeyRef: {name: gremlins-api-secrets, key: DATABASE_URL}}}",
        ),
    );
    let violations = check_urls_from_secret(&m);
    assert_reports(&violations, "\"DATABASE_URL\" comes from a secretKeyRef");
    assert_reports(&violations, "DATABASE_URL is set in the environment");
}

#[test]
fn secret_files_readable_by_others_or_by_nobody_are_reported() {
    let mut m = load();
    let volume = position_of(&m.deployment, &format!("{POD}.volumes"), "secrets");
    set(
        &mut m.deployment,
        &format!("{POD}.volumes.{volume}.projected"),
        "defaultMode",
        Yaml::Integer(0o444),
    );
    remove(
        &mut m.deployment,
        &format!("{POD}.securityContext"),
        "fsGroup",
    );

    let violations = check_urls_from_secret(&m);
    assert_reports(
        &violations,
        "DATABASE_URL_FILE: mode 0o444 lets others read",
    );
    assert_reports(
        &violations,
        "REDIS_URL_FILE: fsGroup is unset and runAsGroup 10001",
    );
}

#[test]
fn a_url_file_outside_the_secret_volume_is_reported() {
    let mut m = load();
    let var = position_of(&m.deployment, &format!("{API}.env"), "DATABASE_URL_FILE");
    set(
        &mut m.deployment,
        &format!("{API}.env.{var}"),
        "value",
        Yaml::String("/tmp/DATABASE_URL".to_owned()),
    );

    assert_reports(
        &check_urls_from_secret(&m),
        "DATABASE_URL_FILE \"/tmp/DATABASE_URL\": volume \"tmp\" is neither a secret nor a projected volume",
    );
}

#[test]
fn ingress_to_the_admin_port_or_to_every_port_is_reported() {
    let mut m = load();
    push(
        &mut m.deployment,
        &format!("{API}.ports"),
        yaml("{name: admin, containerPort: 9091, protocol: TCP}"),
    );
    push(
        &mut m.network_policy,
        "spec.ingress",
        yaml("{ports: [{port: admin, protocol: TCP}]}"),
    );
    push(
        &mut m.network_policy,
        "spec.ingress",
        yaml("{from: [{podSelector: {}}]}"),
    );

    let violations = check_network_policy(&m);
    assert_reports(
        &violations,
        "NetworkPolicy ingress rule 1 opens port \"admin\" \"TCP\"",
    );
    assert_reports(
        &violations,
        "NetworkPolicy ingress rule 2 has no ports: it opens every port",
    );
}

#[test]
fn egress_beyond_the_database_cache_and_dns_is_reported() {
    let mut m = load();
    push(
        &mut m.network_policy,
        "spec.egress",
        yaml("{ports: [{port: 443, protocol: TCP}]}"),
    );
    push(
        &mut m.network_policy,
        "spec.egress",
        yaml("{ports: [{port: 53, protocol: UDP}]}"),
    );
    node_mut(&mut m.network_policy, "spec.policyTypes")
        .as_mut_vec()
        .expect("BUG: policyTypes is a sequence")
        .retain(|kind| kind.as_str() != Some("Egress"));

    let violations = check_network_policy(&m);
    assert_reports(&violations, "egress rule 3 allows 443/TCP");
    assert_reports(
        &violations,
        "egress rule 4 allows port 53 to more than the kube-dns pods",
    );
    assert_reports(&violations, "policyTypes lacks Egress");
}

#[test]
fn an_object_outside_the_namespace_is_reported() {
    let mut m = load();
    remove(&mut m.service, "metadata", "namespace");
    m.kustomization
        .as_mut_hash()
        .expect("BUG: the kustomization is a mapping")
        .insert(
            Yaml::String("namespace".to_owned()),
            Yaml::String("default".to_owned()),
        );

    let violations = check_namespaces(&m);
    assert_reports(
        &violations,
        "service.yaml: metadata.namespace is (missing), expected \"gremlins\"",
    );
    assert_reports(
        &violations,
        "kustomization.yaml namespace is \"default\", expected \"gremlins\"",
    );
}

#[test]
fn rolling_update_that_removes_a_pod_first_is_reported() {
    let mut d = load().deployment;
    set(
        &mut d,
        "spec.strategy.rollingUpdate",
        "maxUnavailable",
        Yaml::Integer(1),
    );

    assert_reports(&check_rolling_update(&d), "maxUnavailable is 1, expected 0");
}

#[test]
fn example_secret_or_namespace_in_the_kustomization_is_reported() {
    let mut k = load().kustomization;
    node_mut(&mut k, "resources")
        .as_mut_vec()
        .expect("BUG: resources is a sequence")
        .push(Yaml::String(EXAMPLE_SECRET.to_owned()));

    assert_reports(
        &check_kustomization(&k),
        "which would apply fake credentials",
    );

    let mut k = load().kustomization;
    push(&mut k, "resources", Yaml::String(NAMESPACE.to_owned()));
    assert_reports(
        &check_kustomization(&k),
        "`kubectl delete -k` would delete the namespace",
    );
}

#[test]
fn shell_form_entrypoint_and_a_foreign_uid_are_reported() {
    let m = load();
    let broken = m
        .dockerfile
        .replace(
            r#"ENTRYPOINT ["/usr/local/bin/gremlins-api"]"#,
            "ENTRYPOINT /usr/local/bin/gremlins-api",
        )
        .replace("USER 10001:10001", "USER 65532:65532");

    let violations = check_dockerfile(&broken, &m.deployment);
    assert_reports(&violations, "must be the exec form");
    assert_reports(
        &violations,
        "Dockerfile USER 65532:65532 differs from runAsUser/runAsGroup 10001:10001",
    );
}
