//! `provision token`: mints a JWT the services accept.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use event_common::auth::{self, JwtConfig, DEV_JWT_SECRET};
use event_common::config::Env;

/// Options of `provision token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The `sub` claim: who the token speaks for (rate limits are per subject).
    #[arg(long, default_value = "dev-user")]
    subject: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// Sign with the key of this `kid` from JWT_KEYS instead of JWT_SECRET_KEY.
    #[arg(long)]
    kid: Option<String>,
}

impl TokenArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        // Reads JWT_SECRET_KEY, JWT_ALGORITHM, JWT_AUDIENCE and JWT_KEYS like the services.
        let env = Env::from_process();
        let config = JwtConfig::from_env(&env, true).context("reading JWT settings")?;
        if config.secret == DEV_JWT_SECRET && self.kid.is_none() {
            eprintln!(
                "note: signed with the development secret (set JWT_SECRET_KEY for a real one)"
            );
        }
        let token = auth::mint(
            &config,
            &self.subject,
            Duration::from_secs(self.ttl_secs),
            self.kid.as_deref(),
        )?;
        println!("{token}");
        Ok(())
    }
}
