//! `provision check`: validates and lints a blueprint without any AWS call.

use std::path::PathBuf;

use clap::Args;

use crate::blueprint::{Blueprint, Severity};

/// Arguments of `provision check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The blueprint (TOML).
    #[arg(short = 'b', long, env = "PROVISION_BLUEPRINT")]
    blueprint: PathBuf,
}

impl CheckArgs {
    /// Prints every finding; fails when one is an error.
    pub fn run(self) -> anyhow::Result<()> {
        let blueprint = Blueprint::load(&self.blueprint)?;
        let findings = blueprint.check();
        for finding in &findings {
            println!("{finding}");
        }
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        if errors > 0 {
            anyhow::bail!("{}: {errors} error(s)", self.blueprint.display());
        }
        println!(
            "{}: stack `{}` is valid ({} resources, {} warning(s))",
            self.blueprint.display(),
            blueprint.stack(),
            crate::desired::resources(&blueprint, "000000000000", &Default::default()).len(),
            findings.len()
        );
        Ok(())
    }
}
