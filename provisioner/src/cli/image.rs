//! `provision image build|push`: the service images without Docker.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::stack::{BinariesArgs, StackArgs};
use crate::cloud::image::registry;
use crate::desired::repository_name;
use crate::image::{reference, SERVICES};

/// Arguments of `provision image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build OCI image layouts, one per service, under `--out DIR/<service>/`.
    Build(BuildArgs),
    /// Build and push the blueprint's images to its registry (ECR by default).
    Push(PushArgs),
}

/// Arguments of `provision image build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Only this service (ingest, processor or graphql).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(SERVICES.map(|(name, _)| name)))]
    service: Option<String>,
    /// Folder to write the image layouts to.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    binaries: BinariesArgs,
}

/// Arguments of `provision image push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    binaries: BinariesArgs,
}

impl ImageArgs {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            ImageCommand::Build(args) => {
                let services: Vec<&str> = args.service.as_deref().into_iter().collect();
                for image in args.binaries.build(&services)? {
                    image.write_layout(&args.out.join(&image.service))?;
                    println!(
                        "{} {} {}",
                        image.service,
                        image.digest(),
                        image.compressed_size()
                    );
                }
                Ok(())
            }
            ImageCommand::Push(args) => {
                let stack = args.stack.open().await?;
                let services = stack.services_to_build();
                anyhow::ensure!(
                    !services.is_empty(),
                    "every service of the blueprint names its own image: nothing to push"
                );
                let images = args.binaries.build(&services)?;
                let registry = registry(&stack.cloud).await?;
                for image in &images {
                    let repository = repository_name(stack.blueprint.stack(), &image.service);
                    let progress = |line: &str| eprintln!("{}: {line}", image.service);
                    registry.push(&repository, image, &progress).await?;
                    let pushed = reference(registry.host(), &repository, image.digest());
                    println!("{} {pushed}", image.service);
                }
                Ok(())
            }
        }
    }
}
