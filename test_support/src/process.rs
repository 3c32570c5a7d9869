//! Running one of the programs the harness needs and turning its failure into an error that
//! carries what it printed.

use std::process::{Command, Output};

use crate::error::HarnessError;

/// Runs `cmd` to completion; its output is returned, or carried by the error when it fails.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<Output, HarnessError> {
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        program: what.to_owned(),
        source,
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(HarnessError::Failed {
            what: what.to_owned(),
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}
