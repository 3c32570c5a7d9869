//! The make-target table of `docs/development.md` against the Makefile: every target a rule
//! defines is a row, and every row is a target.

use std::collections::BTreeSet;

use crate::markdown::{code, tables};
use crate::repository_file;

const TABLE_DOCUMENT: &str = "docs/development.md";

/// The targets a Makefile's rules define (`name:` or `a b:` at the start of a line), without
/// special targets (`.PHONY`), pattern rules and variable assignments (`X ?= 1`, `X := 1`).
fn makefile_targets(makefile: &str) -> BTreeSet<String> {
    let mut targets = BTreeSet::new();
    for line in makefile.lines() {
        if line.starts_with(['\t', ' ', '#']) {
            continue;
        }
        let Some((names, rest)) = line.split_once(':') else {
            continue;
        };
        if rest.starts_with('=') || names.contains('=') || names.contains('%') {
            continue;
        }
        targets.extend(
            names
                .split_whitespace()
                .filter(|n| !n.starts_with('.') && !n.contains('$'))
                .map(str::to_owned),
        );
    }
    targets
}

/// The targets the table names: its first cell, `` `make NAME` `` (or `` `make` `` for the
/// default goal, which the Makefile calls `run`).
fn documented_targets(document: &str) -> Result<BTreeSet<String>, String> {
    let table = tables(document)
        .into_iter()
        .find(|t| t.header.first().is_some_and(|h| h == "make target"))
        .ok_or("no table whose first column is `make target`")?;
    let mut targets = BTreeSet::new();
    for row in &table.rows {
        let cell = code(&row.cells[0])
            .ok_or_else(|| format!("line {}: `{}` is not one code span", row.line, row.cells[0]))?;
        let name = match cell {
            "make" => "run",
            other => other
                .strip_prefix("make ")
                .ok_or_else(|| format!("line {}: `{cell}` is not `make TARGET`", row.line))?,
        };
        if !targets.insert(name.to_owned()) {
            return Err(format!("line {}: make {name} is listed twice", row.line));
        }
    }
    Ok(targets)
}

fn differences(makefile: &str, document: &str) -> Vec<String> {
    let defined = makefile_targets(makefile);
    let documented = match documented_targets(document) {
        Ok(documented) => documented,
        Err(e) => return vec![format!("{TABLE_DOCUMENT}: {e}")],
    };
    let missing = defined
        .difference(&documented)
        .map(|t| format!("make {t} is missing from the table in {TABLE_DOCUMENT}"));
    let stale = documented
        .difference(&defined)
        .map(|t| format!("{TABLE_DOCUMENT} lists make {t}, which the Makefile does not define"));
    missing.chain(stale).collect()
}

#[test]
fn every_make_target_is_in_the_table_and_the_table_lists_no_other() {
    let differences = differences(
        &repository_file("Makefile"),
        &repository_file(TABLE_DOCUMENT),
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn a_target_missing_from_the_table_and_one_the_makefile_lacks_are_both_reported() {
    let makefile = ".PHONY: run a\nFUZZ_SECONDS ?= 60\nX := 1\nrun: build\n\tcmd\nbuild:\n\tcargo build\na b:\n\techo $(X): x\n";
    assert_eq!(
        makefile_targets(makefile),
        ["a", "b", "build", "run"].map(String::from).into()
    );
    let document = "| make target | what it does |\n| --- | --- |\n| `make` | all |\n| `make build` | b |\n| `make a` | a |\n| `make gone` | g |\n";
    let found = differences(makefile, document).join("\n");
    assert!(found.contains("make b is missing"), "{found}");
    assert!(found.contains("lists make gone"), "{found}");
    assert!(
        !found.contains("make run"),
        "`make` stands for run: {found}"
    );
}
