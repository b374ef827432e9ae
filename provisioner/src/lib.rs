//! `provision`: provisions the Event Platform on AWS from a blueprint
//! (`check`, `plan`, `apply`, `destroy`), runs a deployed stack on this
//! machine (`run-local`), and starts the platform in one process (`dev`,
//! from the `devstack` crate).
//!
//! - [`cli`]: one clap module per subcommand.
//! - [`blueprint`] -> [`desired`] resources -> [`plan`] (pure) ->
//!   [`engine`] (refresh and walks) -> [`cloud`] (one file per resource
//!   kind), with the [`state`] file; [`stack`] ties them together.
//! - [`image`]: service images built from binaries and pushed to a registry.
//! - [`local`]: the deployed stack on this machine (`run-local`).
//!
//! - [`import`]: historical events through the ingest API.
//! - [`status`], [`logs`]: how a deployed stack is doing, and what it says.
//!
//! All but `dev`, `token` and `import` need the `aws` feature (on by default).

#[cfg(feature = "aws")]
pub mod blueprint;
pub mod cli;
#[cfg(feature = "aws")]
pub mod cloud;
#[cfg(feature = "aws")]
pub mod cost;
#[cfg(feature = "aws")]
pub mod desired;
#[cfg(feature = "aws")]
pub mod engine;
#[cfg(feature = "aws")]
pub mod image;
pub mod import;
#[cfg(feature = "aws")]
pub mod local;
#[cfg(feature = "aws")]
pub mod logs;
#[cfg(feature = "aws")]
pub mod model;
#[cfg(feature = "aws")]
pub mod plan;
#[cfg(feature = "aws")]
pub mod stack;
#[cfg(feature = "aws")]
pub mod state;
#[cfg(feature = "aws")]
pub mod status;
