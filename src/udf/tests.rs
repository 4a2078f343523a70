//! The registry against the SQL scripts that install and remove it: a
//! function declared in Rust but missing from a script (or the reverse), or
//! declared with another return kind, fails here.

use super::{Returns, REGISTRY};
use std::collections::BTreeMap;

fn script(name: &str) -> String {
    std::fs::read_to_string(format!("{}/sql/{name}", env!("CARGO_MANIFEST_DIR"))).expect("sql script")
}

/// `CREATE FUNCTION <name> RETURNS <kind> SONAME …` statements of a script.
fn created(sql: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in sql.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["CREATE", "FUNCTION", name, "RETURNS", kind, "SONAME", ..] = words[..] {
            assert!(out.insert(name.to_string(), kind.to_string()).is_none(), "{name} created twice");
        }
    }
    out
}

/// `DROP FUNCTION IF EXISTS <name>;` statements for loadable functions
/// (not the `dj_udf.` stored functions).
fn dropped(sql: &str) -> Vec<String> {
    sql.lines()
        .filter_map(|l| l.trim().strip_prefix("DROP FUNCTION IF EXISTS "))
        .map(|rest| rest.trim_end_matches([';', ' ', '$']).to_string())
        .filter(|n| !n.contains('.'))
        .collect()
}

fn registry() -> BTreeMap<String, String> {
    REGISTRY.iter().map(|d| (d.name.to_string(), d.returns.sql().to_string())).collect()
}

#[test]
fn install_script_creates_exactly_the_registry() {
    assert_eq!(created(&script("install.sql")), registry());
}

#[test]
fn both_scripts_drop_exactly_the_registry() {
    let want: Vec<String> = registry().into_keys().collect();
    for name in ["install.sql", "uninstall.sql"] {
        let mut got = dropped(&script(name));
        got.sort();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn declarations_are_consistent() {
    for d in REGISTRY {
        assert!(d.name.starts_with("dj_"), "{}", d.name);
        assert!(d.optional <= d.params.len(), "{}", d.name);
        assert!(d.max_length > 0, "{}", d.name);
        if d.returns == Returns::Integer {
            assert_eq!(d.max_length, 21, "{}", d.name);
        }
        let stores = d.params.iter().any(|(_, k)| *k == super::Kind::Store);
        assert!(!stores || d.needs_config, "{}: a Store argument is checked against the config", d.name);
    }
    let mut names: Vec<&str> = REGISTRY.iter().map(|d| d.name).collect();
    names.dedup();
    assert_eq!(names.len(), REGISTRY.len());
}

/// `CREATE PROCEDURE|FUNCTION dj_udf.<name>` (or `DROP … IF EXISTS`) lines.
fn routines(sql: &str, verb: &str) -> Vec<String> {
    let mut out: Vec<String> = sql
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match (verb, &words[..]) {
                ("CREATE", ["CREATE", kind @ ("PROCEDURE" | "FUNCTION"), name, ..]) if name.starts_with("dj_udf.") => {
                    Some(format!("{kind} {}", name.split('(').next().unwrap_or(name)))
                }
                ("DROP", ["DROP", kind @ ("PROCEDURE" | "FUNCTION"), "IF", "EXISTS", name, ..]) if name.starts_with("dj_udf.") => {
                    Some(format!("{kind} {}", name.trim_end_matches([';', '$'])))
                }
                _ => None,
            }
        })
        .collect();
    out.sort();
    out
}

/// Routines of earlier versions that install.sql drops on an upgrade (and
/// uninstall.sql with the rest), created no more.
const RETIRED: &[&str] = &["PROCEDURE dj_udf.claim_next", "PROCEDURE dj_udf.delete_if_untracked", "PROCEDURE dj_udf.remove_object"];

#[test]
fn uninstall_drops_every_routine_install_creates() {
    let install = script("install.sql");
    let created = routines(&install, "CREATE");
    assert!(created.len() > 20, "{created:?}");
    let mut dropped = created.clone();
    dropped.extend(RETIRED.iter().map(|r| r.to_string()));
    dropped.sort();
    assert_eq!(routines(&install, "DROP"), dropped, "install.sql drops each routine before creating it, and the retired ones");
    assert_eq!(routines(&script("uninstall.sql"), "DROP"), dropped, "uninstall.sql");
}
