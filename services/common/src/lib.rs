//! What the Event Platform services share: the event contract ([`event`]),
//! problem responses ([`problem`]), JWT auth ([`auth`]), configuration from
//! the environment ([`config`]), logs and metrics ([`telemetry`]), and health
//! and shutdown plumbing ([`lifecycle`]).

pub mod auth;
pub mod config;
pub mod event;
pub mod lifecycle;
pub mod problem;
pub mod telemetry;
