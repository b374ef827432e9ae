//! `provision`: runs the Event Platform on this machine (`provision dev`) and
//! mints development tokens (`provision token`).
//!
//! - [`cli`]: one clap module per subcommand.
//! - [`dev`]: the whole platform in one process: an embedded Kafka-protocol
//!   broker on loopback and the services behind one port with the load
//!   balancer's path rules.

pub mod blueprint;
pub mod cli;
pub mod cloud;
pub mod dev;
pub mod desired;
pub mod engine;
pub mod image;
pub mod local;
pub mod model;
pub mod plan;
pub mod stack;
pub mod state;
