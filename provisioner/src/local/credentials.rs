//! Each task's AWS credentials, as ECS gives them: `run-local` assumes the
//! service's task role (STS `AssumeRole`), keeps the credentials fresh, and
//! serves them on loopback in the ECS container-credentials format. A task
//! finds them through `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`, which every AWS SDK's default chain
//! reads, and refreshes them itself before they expire.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use aws_config::SdkConfig;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::cloud::iam::{parse_policy, trusts_account};

/// How long assumed credentials last (IAM's default maximum session).
const SESSION: Duration = Duration::from_secs(3600);
/// Renew this long before they expire (the SDKs refresh 5 minutes before).
const RENEW_BEFORE: Duration = Duration::from_secs(15 * 60);

/// The blueprint setting that lets the account's principals assume the roles.
pub const TRUST_SETTING: &str = "stack.allow_run_local";

/// Temporary credentials of one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: String,
    /// When they expire.
    pub expiration: DateTime<Utc>,
}

impl Credentials {
    /// An SDK configuration like `base` (region, endpoint) acting with these.
    pub fn sdk_config(&self, base: &SdkConfig) -> SdkConfig {
        let provider = aws_sdk_sts::config::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            Some(self.session_token.clone()),
            None,
            "run-local-assumed-role",
        );
        base.to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build()
    }

    /// How long after `now` they should be renewed (zero: now).
    fn renew_in(&self, now: DateTime<Utc>) -> Duration {
        let left = (self.expiration - now).to_std().unwrap_or_default();
        left.saturating_sub(RENEW_BEFORE)
    }
}

/// Assumes roles with the caller's own credentials.
#[derive(Debug, Clone)]
pub struct Assumer {
    sts: aws_sdk_sts::Client,
    iam: aws_sdk_iam::Client,
}

impl Assumer {
    /// Clients from the caller's configuration.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            sts: aws_sdk_sts::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
        }
    }

    /// Fails, naming [`TRUST_SETTING`], unless the trust policy of `role_arn`
    /// lets principals of its own account assume it. IAM would refuse the
    /// `AssumeRole` anyway; emulators do not check trust policies.
    pub async fn ensure_trusted(&self, role_arn: &str) -> anyhow::Result<()> {
        let name = role_name(role_arn);
        let account = role_arn.split(':').nth(4).unwrap_or_default();
        let out = self
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .with_context(|| format!("iam GetRole {name}"))?;
        let document = out
            .role()
            .and_then(|r| r.assume_role_policy_document())
            .unwrap_or_default();
        let policy = parse_policy(document).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        if !trusts_account(&policy, account) {
            bail!(
                "role {name} trusts only its service, so run-local cannot take its credentials. \
                 Set `allow_run_local = true` under [stack] in the blueprint ({TRUST_SETTING}) \
                 and apply: the stack's task and execution roles then also trust this account's \
                 own principals (anyone here allowed sts:AssumeRole on them)"
            );
        }
        Ok(())
    }

    /// Credentials of `role_arn`, for a session named `session`.
    pub async fn assume(&self, role_arn: &str, session: &str) -> anyhow::Result<Credentials> {
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            .duration_seconds(SESSION.as_secs() as i32)
            .send()
            .await
            .with_context(|| format!("sts AssumeRole {role_arn}"))?;
        let c = out
            .credentials()
            .with_context(|| format!("sts AssumeRole {role_arn}: no credentials"))?;
        let expiration = DateTime::from_timestamp(c.expiration().secs(), 0)
            .context("sts AssumeRole: expiration out of range")?;
        Ok(Credentials {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            session_token: c.session_token().to_string(),
            expiration,
        })
    }
}

/// The role's name in its ARN, which keys its credentials.
pub fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// One role's current credentials, renewed in the background.
type Held = Arc<RwLock<Credentials>>;

/// The loopback credentials endpoint and the roles it serves.
#[derive(Debug, Clone)]
pub struct CredentialServer {
    url: String,
    token: String,
    roles: Arc<BTreeMap<String, Held>>,
}

impl CredentialServer {
    /// Assumes every role of `roles` (ARNs, keyed by [`role_name`]), serves
    /// the credentials on `127.0.0.1`, and renews each before it expires.
    pub async fn start<'a>(
        assumer: &Assumer,
        roles: impl IntoIterator<Item = &'a String>,
    ) -> anyhow::Result<Self> {
        let mut held = BTreeMap::new();
        for arn in roles {
            let id = role_name(arn).to_string();
            let session = format!("run-local-{id}");
            let entry: Held = Arc::new(RwLock::new(assumer.assume(arn, &session).await?));
            tokio::spawn(renew(assumer.clone(), arn.clone(), session, entry.clone()));
            held.insert(id, entry);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the credentials endpoint")?;
        let server = Self {
            url: format!("http://{}", listener.local_addr()?),
            token: uuid::Uuid::new_v4().simple().to_string(),
            roles: Arc::new(held),
        };
        let app = Router::new()
            .route("/v2/credentials/{id}", get(serve))
            .with_state(server.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("credentials endpoint stopped: {e}");
            }
        });
        Ok(server)
    }

    /// The environment that points a task at the credentials of role `id`.
    pub fn env_for(&self, id: &str) -> Vec<(String, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                format!("{}/v2/credentials/{id}", self.url),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
                self.token.clone(),
            ),
        ]
    }

    /// The credentials of role `id` right now.
    pub fn current(&self, id: &str) -> Option<Credentials> {
        let held = self.roles.get(id)?;
        held.read().ok().map(|c| c.clone())
    }
}

async fn serve(
    State(server): State<CredentialServer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(server.token.as_str());
    if !authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match server.current(&id) {
        Some(c) => Json(json!({
            "AccessKeyId": c.access_key_id,
            "SecretAccessKey": c.secret_access_key,
            "Token": c.session_token,
            "Expiration": c.expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Renews `held` before it expires; after a failure, tries again every
/// 30 s (the task keeps the old credentials until they run out).
async fn renew(assumer: Assumer, arn: String, session: String, held: Held) {
    loop {
        let wait = held
            .read()
            .map(|c| c.renew_in(Utc::now()))
            .unwrap_or_default();
        tokio::time::sleep(wait.max(Duration::from_secs(30))).await;
        match assumer.assume(&arn, &session).await {
            Ok(fresh) => {
                if let Ok(mut current) = held.write() {
                    *current = fresh;
                }
            }
            Err(e) => tracing::warn!("renewing the credentials of {arn}: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_renewed_a_quarter_hour_before_they_expire() {
        let now = Utc::now();
        let c = |minutes: i64| Credentials {
            access_key_id: "A".into(),
            secret_access_key: "S".into(),
            session_token: "T".into(),
            expiration: now + chrono::Duration::minutes(minutes),
        };
        let due = |c: Credentials| c.renew_in(now).is_zero();
        assert!(!due(c(60)));
        assert!(!due(c(16)));
        assert!(due(c(15)));
        assert!(due(c(-1)));
    }
}
