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

pub mod blueprint;
pub mod cli;
pub mod cloud;
pub mod desired;
pub mod engine;
pub mod image;
pub mod local;
pub mod model;
pub mod plan;
pub mod stack;
pub mod state;
