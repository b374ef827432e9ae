//! The executor: refreshes the stack from the cloud, then walks the plan's
//! graph with bounded parallelism, retrying what AWS asks to retry and
//! recording every single operation in the state file.

// An operation error carries AWS's whole answer and the advice; it is rare
// and reported once, so its size does not matter.
#![allow(clippy::result_large_err)]

mod destroy;
mod refresh;
mod walk;

pub use destroy::{destroy, DestroyReport};
pub use refresh::refresh;
pub use walk::apply_plan;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::cloud::{CloudError, ErrorClass};

/// How the executor behaves.
#[derive(Clone)]
pub struct Options {
    /// Operations in flight at once.
    pub parallelism: usize,
    /// Retry bounds.
    pub retry: RetryPolicy,
    /// Wait for instances, the load balancer, services and targets.
    pub waits: bool,
    /// How long each wait may take.
    pub wait_timeout: Duration,
    /// Where progress lines go.
    pub progress: Progress,
    /// Let apply replace or delete the table or the bucket (and their data).
    pub allow_data_loss: bool,
}

impl Options {
    /// Defaults for a real account.
    pub fn new(waits: bool) -> Self {
        Self {
            parallelism: 8,
            retry: RetryPolicy::default(),
            waits,
            wait_timeout: Duration::from_secs(15 * 60),
            progress: Progress::stdout(),
            allow_data_loss: false,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("parallelism", &self.parallelism)
            .field("retry", &self.retry)
            .field("waits", &self.waits)
            .finish()
    }
}

/// A sink for progress lines.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&str) + Send + Sync>);

impl Progress {
    /// Prints to stdout.
    pub fn stdout() -> Self {
        Self(Arc::new(|line| println!("{line}")))
    }

    /// Sends lines to `f` (tests collect them).
    pub fn to(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Reports one line.
    pub fn line(&self, line: &str) {
        (self.0)(line)
    }
}

/// Bounds for retrying what AWS says may succeed later.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts for throttling, transient failures and eventual consistency.
    pub attempts: u32,
    /// Attempts for deletes blocked by something still in use
    /// (DependencyViolation while ENIs drain).
    pub in_use_attempts: u32,
    /// First backoff; it doubles up to `max_delay`.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 10,
            in_use_attempts: 40,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// Short delays for tests against an emulator.
    pub fn fast() -> Self {
        Self {
            attempts: 6,
            in_use_attempts: 8,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
        }
    }

    fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(16));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    fn bound(&self, class: ErrorClass) -> u32 {
        match class {
            ErrorClass::Transient | ErrorClass::NotYetConsistent => self.attempts,
            ErrorClass::InUse => self.in_use_attempts,
            ErrorClass::Permanent => 1,
        }
    }
}

/// A resource operation that failed for good.
#[derive(Debug, Clone)]
pub struct OperationError {
    /// The resource.
    pub address: String,
    /// What was being done (`create`, `delete`, `wait`).
    pub action: String,
    /// What AWS said last.
    pub cause: CloudError,
    /// Attempts made.
    pub attempts: u32,
    /// What the user can do.
    pub advice: String,
}

impl fmt::Display for OperationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tries = if self.attempts > 1 {
            format!(" after {} attempts", self.attempts)
        } else {
            String::new()
        };
        write!(
            f,
            "{}: {} failed{tries}. AWS said: {}. {}",
            self.address, self.action, self.cause, self.advice
        )
    }
}

impl std::error::Error for OperationError {}

/// Everything that failed in one walk.
#[derive(Debug)]
pub struct WalkError(pub Vec<OperationError>);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        write!(
            f,
            "\nThe state file holds everything done so far; run the command again to resume."
        )
    }
}

impl std::error::Error for WalkError {}

fn advice(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Transient => {
            "AWS kept throttling or failing: run the command again later (it resumes where it stopped), or lower --parallelism"
        }
        ErrorClass::NotYetConsistent => {
            "AWS has not made a just-created resource (often an IAM role) visible everywhere yet: wait a minute and run the command again"
        }
        ErrorClass::InUse => {
            "Something still uses it: remove or detach that (see above), then run the command again"
        }
        ErrorClass::Permanent => {
            "Fix the cause AWS names (blueprint value, permission or quota), then run the command again"
        }
    }
}

/// Runs `op` until it succeeds, retrying by error class within `policy`.
pub(crate) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    address: &str,
    action: &str,
    mut op: F,
) -> Result<T, OperationError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::cloud::Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                let class = error.class();
                if attempt >= policy.bound(class) {
                    return Err(OperationError {
                        address: address.to_string(),
                        action: action.to_string(),
                        advice: advice(class).to_string(),
                        cause: error,
                        attempts: attempt,
                    });
                }
                tracing::debug!(address, action, %error, attempt, "retrying");
                tokio::time::sleep(policy.delay(attempt - 1)).await;
            }
        }
    }
}
