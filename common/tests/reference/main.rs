//! The reference documents held to what they describe: the configuration reference
//! (`docs/configuration.md`) to the config structs, the shipped `config.yaml` and
//! `db_init_script.sh`; the make-target table (`docs/development.md`) to the Makefile.
//! Each fails when the code gains, loses or changes something the document does not say.

mod configuration;
mod make_targets;
mod markdown;

use std::path::Path;

/// A file of the repository, by its path from the root.
fn repository_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}
