//! The binary's `--help` and README.md's configuration table say the same
//! thing: the same flags, each with the same environment variable and the
//! same default.

use std::collections::BTreeMap;
use std::process::Command;

/// One setting as a document shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    env: String,
    /// The default as written (`16`, `2m`, `false`), or `None` when unset.
    default: Option<String>,
}

/// The settings `gremlins-api --help` lists, by flag (without `--help`
/// and `--version`).
fn from_help() -> BTreeMap<String, Setting> {
    let output = Command::new(env!("CARGO_BIN_EXE_gremlins-api"))
        .arg("--help")
        .output()
        .expect("run gremlins-api --help");
    assert!(output.status.success(), "--help failed: {output:?}");
    let text = String::from_utf8(output.stdout).expect("--help is UTF-8");
    let mut settings = BTreeMap::new();
    let mut current: Option<(String, Setting)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(flag) = line.strip_prefix("--") {
            if let Some((flag, setting)) = current.take() {
                settings.insert(flag, setting);
            }
            let flag = flag.split_whitespace().next().unwrap_or_default();
            let setting = Setting {
                env: String::new(),
                default: None,
            };
            current = Some((format!("--{flag}"), setting));
        } else if line.starts_with("-h, --help") {
            if let Some((flag, setting)) = current.take() {
                settings.insert(flag, setting);
            }
        } else if let Some((_, setting)) = &mut current {
            if let Some(env) = line.strip_prefix("[env: ") {
                setting.env = env.trim_end_matches(']').trim_end_matches('=').to_owned();
            } else if let Some(default) = line.strip_prefix("[default: ") {
                setting.default = Some(default.trim_end_matches(']').to_owned());
            }
        }
    }
    settings
}

/// The settings README.md's configuration table lists, by flag.
fn from_readme() -> BTreeMap<String, Setting> {
    let readme = include_str!("../README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README.md has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_owned();
            let default = match cells[3] {
                "unset" => None,
                "off" => Some("false".to_owned()),
                value => Some(unquote(value)),
            };
            (
                unquote(cells[1]),
                Setting {
                    env: unquote(cells[2]),
                    default,
                },
            )
        })
        .collect()
}

#[test]
fn readme_configuration_table_matches_help() {
    let help = from_help();
    let readme = from_readme();
    assert!(
        help.len() > 20,
        "too few settings parsed from --help: {help:?}"
    );
    let flags = |settings: &BTreeMap<String, Setting>| settings.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        flags(&readme),
        flags(&help),
        "README.md's table and --help list different flags"
    );
    for (flag, in_help) in &help {
        assert_eq!(
            &readme[flag], in_help,
            "{flag}: README.md's table says one thing and --help another"
        );
    }
}
