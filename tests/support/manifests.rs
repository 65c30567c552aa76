//! Reading the manifests in `kubernetes/`: the files, their YAML documents,
//! the pod template's parts and the service's duration grammar, shared by
//! `tests/kubernetes_manifests.rs` (the documents) and
//! `tests/kubernetes_termination.rs` (the process, run with their values).

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

/// The repository's `kubernetes/` directory.
pub fn kubernetes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kubernetes")
}

/// The text of `kubernetes/FILE`; panics if it cannot be read.
pub fn read(file: &str) -> String {
    let path = kubernetes_dir().join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Parses `kubernetes/FILE`, which must hold exactly one YAML document of
/// the given kind.
pub fn load_one(file: &str, kind: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(file))
        .unwrap_or_else(|err| panic!("kubernetes/{file} is not valid YAML: {err}"));
    assert_eq!(
        docs.len(),
        1,
        "kubernetes/{file} must hold exactly one document"
    );
    let doc = docs.remove(0);
    assert_eq!(
        doc["kind"].as_str(),
        Some(kind),
        "kubernetes/{file} must be a {kind}"
    );
    doc
}

/// The items of a YAML sequence; none when `yaml` is missing or not a
/// sequence.
pub fn items(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

/// A Deployment's pod spec, `spec.template.spec`.
pub fn pod_spec(deployment: &Yaml) -> &Yaml {
    &deployment["spec"]["template"]["spec"]
}

/// The container `api`, which serves the requests.
pub fn api_container(deployment: &Yaml) -> Option<&Yaml> {
    items(&pod_spec(deployment)["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some("api"))
}

/// Parses a duration the way the service parses its configuration: `30s`, `250ms`, `2m`, or a
/// bare integer meaning seconds. Anything else (`1h`, `1.5s`, `30 s`, `-1s`) is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (digits, unit_ms) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1_000)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60_000)
    } else {
        (text, 1_000)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a duration (expected e.g. \"30s\", \"250ms\", \"2m\" or \"30\")"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too large a duration"))
}
