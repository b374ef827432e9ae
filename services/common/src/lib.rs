//! What the Event Platform services share: the event contract ([`event`]),
//! problem responses ([`problem`]), JWT auth ([`auth`]), configuration from
//! the environment ([`config`]), logs and metrics ([`telemetry`]), traces
//! ([`traces`]), health
//! and shutdown plumbing ([`lifecycle`]), and the topics and path rules
//! that wire the services together ([`platform`]).

pub mod auth;
pub mod config;
pub mod event;
pub mod lifecycle;
pub mod platform;
pub mod problem;
pub mod telemetry;
pub mod traces;
