//! SEMANTICS.md promises that every row names the tests that prove it: this checks that each
//! row names at least one test, and that every test it names exists (a `fn` of that name in
//! tests/ or src/; `leveldb::NAME` and `ceph::NAME` are the per-backend instances of `NAME`,
//! and `prefix_*` stands for every test starting with `prefix_`). That the tests pass is what the
//! rest of the run shows.

use std::collections::BTreeSet;
use std::path::Path;

/// Every function name defined in the .rs files under `dir`.
fn fn_names(dir: &Path, names: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fn_names(&path, names);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for rest in text.split("fn ").skip(1) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        }
    }
}

/// The backticked words of `cell`.
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

#[test]
fn every_row_names_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("SEMANTICS.md")).unwrap();
    let mut names = BTreeSet::new();
    fn_names(&root.join("tests"), &mut names);
    fn_names(&root.join("src"), &mut names);
    let mut rows = 0;
    let mut problems = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') || line.starts_with("|---") || line.starts_with("| Guarantee") {
            continue;
        }
        rows += 1;
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        let tests = cells.last().copied().unwrap_or("");
        let named = backticked(tests);
        if named.is_empty() {
            problems.push(format!("line {}: the row names no test: {line}", i + 1));
        }
        for test in named {
            let bare = test.rsplit("::").next().unwrap_or(test);
            let found = match bare.strip_suffix('*') {
                Some(prefix) => names.iter().any(|n| n.starts_with(prefix)),
                None => names.contains(bare),
            };
            if !found {
                problems.push(format!("line {}: no test named `{test}`", i + 1));
            }
        }
    }
    assert!(
        rows >= 20,
        "only {rows} rows found: is SEMANTICS.md's table format unchanged?"
    );
    assert!(
        problems.is_empty(),
        "SEMANTICS.md:\n{}",
        problems.join("\n")
    );
}
