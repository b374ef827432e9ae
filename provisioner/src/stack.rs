//! One stack's operations as the CLI and the tests use them: plan, apply,
//! destroy and outputs, over a blueprint, a state folder and the cloud.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_config::SdkConfig;
use serde::Serialize;
use serde_json::Value;

use crate::blueprint::Blueprint;
use crate::cloud::image::Images;
use crate::cloud::{Cloud, CloudError};
use crate::cost;
use crate::desired::{self, ImagePin, ImagePins};
use crate::engine::{self, DestroyReport, Options, Progress};
use crate::image::Image;
use crate::model::{Kind, Resource};
use crate::plan::{plan, Current, Plan, UNKNOWN};
use crate::state::{State, StateFile};

/// A blueprint bound to its state folder and the cloud.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The blueprint.
    pub blueprint: Blueprint,
    /// The AWS account the stack lives in (names the bucket).
    pub account: String,
    /// What it asks for.
    pub desired: Vec<Resource>,
    /// Where state files live.
    pub state_dir: PathBuf,
    /// The SDK clients.
    pub cloud: Cloud,
    /// The SDK configuration they were made from.
    pub sdk: SdkConfig,
}

impl Stack {
    /// Binds `blueprint` to `state_dir` and the clients built from `config`,
    /// with no image built (enough for destroy, outputs and state, and for
    /// blueprints that name every service's image). Asks AWS which account
    /// the credentials belong to.
    pub async fn new(
        blueprint: Blueprint,
        state_dir: &Path,
        config: &SdkConfig,
    ) -> anyhow::Result<Self> {
        let identity = aws_sdk_sts::Client::new(config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("GetCallerIdentity", e))
            .context("finding the AWS account of these credentials")?;
        let account = identity
            .account()
            .context("GetCallerIdentity answered no account")?
            .to_string();
        let registry = blueprint.spec.images.registry.clone();
        let cloud = Cloud::new(config, blueprint.stack()).with_images(Images::new(registry));
        Ok(Self {
            desired: desired::resources(&blueprint, &account, &ImagePins::new()),
            account,
            blueprint,
            state_dir: state_dir.to_path_buf(),
            cloud,
            sdk: config.clone(),
        })
    }

    /// Pins the task definitions to `images` and pushes them as part of
    /// apply; push progress goes to `progress`.
    pub fn with_images(mut self, images: Vec<Image>, progress: Option<Progress>) -> Self {
        let pins: ImagePins = images
            .iter()
            .map(|i| {
                (
                    i.service.clone(),
                    ImagePin {
                        digest: i.digest().to_string(),
                        architecture: i.architecture,
                    },
                )
            })
            .collect();
        self.desired = desired::resources(&self.blueprint, &self.account, &pins);
        let built = self.cloud.images.clone().with_built(images, progress);
        self.cloud = self.cloud.with_images(built);
        self
    }

    /// The services whose image provision builds (those the blueprint
    /// gives no `image`).
    pub fn services_to_build(&self) -> Vec<&'static str> {
        self.blueprint
            .services()
            .iter()
            .filter(|s| s.image.is_none())
            .map(|s| s.name)
            .collect()
    }

    /// Plan and apply need every image pinned.
    fn ensure_pinned(&self) -> anyhow::Result<()> {
        let unpinned: Vec<&str> = self
            .desired
            .iter()
            .filter(|r| r.kind == Kind::Image)
            .filter(|r| r.props.get("digest").and_then(Value::as_str) == Some(UNKNOWN))
            .map(|r| r.address.as_str())
            .collect();
        anyhow::ensure!(
            unpinned.is_empty(),
            "{} not built: let provision build them (cargo build --release), pass --binaries DIR, or set the services' `image` in the blueprint",
            unpinned.join(", ")
        );
        Ok(())
    }

    /// The SDK configuration for a blueprint: its region, and its endpoint
    /// (or `AWS_ENDPOINT_URL`) with test credentials when none are set.
    pub async fn sdk_config(blueprint: &Blueprint) -> SdkConfig {
        let endpoint = blueprint
            .spec
            .stack
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        let has_credentials =
            std::env::var("AWS_ACCESS_KEY_ID").is_ok() || std::env::var("AWS_PROFILE").is_ok();
        let settings = event_store::aws::AwsSettings {
            region: blueprint.spec.stack.region.clone(),
            static_credentials: (endpoint.is_some() && !has_credentials)
                .then(|| ("test".to_string(), "test".to_string())),
            endpoint_url: endpoint,
        };
        event_store::aws::sdk_config(&settings).await
    }

    /// What the blueprint asks for, given what `state` holds.
    fn desired(&self, state: &State) -> Vec<Resource> {
        let mut desired = self.desired.clone();
        desired::keep_recorded_data_names(&self.blueprint, &mut desired, state);
        desired
    }

    /// Refreshes and plans, changing nothing.
    pub async fn plan(&self, options: &Options) -> anyhow::Result<Plan> {
        self.ensure_pinned()?;
        let state = StateFile::read(&self.state_dir, self.blueprint.stack())?;
        self.refreshed_plan(&state.state, options).await
    }

    /// Refreshes what `state` records and plans against it.
    async fn refreshed_plan(&self, state: &State, options: &Options) -> anyhow::Result<Plan> {
        Ok(self.refresh(state, options).await?.plan)
    }

    /// The desired resources, the refresh of what `state` records, and the
    /// plan between them.
    async fn refresh(&self, state: &State, options: &Options) -> anyhow::Result<Refreshed> {
        let desired = self.desired(state);
        let current = engine::refresh(&self.cloud, &desired, state, options).await?;
        let plan = plan(&desired, state, &current);
        Ok(Refreshed {
            desired,
            current,
            plan,
        })
    }

    /// [`Stack::plan`], and what the stack costs a month once it is
    /// applied against what it costs as refreshed now. Prices from the
    /// Price List API, cached in the state folder, or the shipped table.
    pub async fn plan_with_cost(
        &self,
        options: &Options,
    ) -> anyhow::Result<(Plan, cost::Estimate)> {
        self.ensure_pinned()?;
        let state = StateFile::read(&self.state_dir, self.blueprint.stack())?.state;
        let Refreshed {
            desired,
            current,
            plan,
        } = self.refresh(&state, options).await?;
        let after: Vec<cost::Priced<'_>> = desired
            .iter()
            .map(|r| (r.kind, name_in(&r.address), &r.props))
            .collect();
        let before: Vec<cost::Priced<'_>> = current
            .iter()
            .filter_map(|(address, now)| {
                let kind = state.resources.get(address).map(|r| r.kind).or_else(|| {
                    desired
                        .iter()
                        .find(|r| &r.address == address)
                        .map(|r| r.kind)
                })?;
                Some((kind, name_in(address), &now.observed.as_ref()?.props))
            })
            .collect();
        let spec = &self.blueprint.spec;
        let region = &spec.stack.region;
        // An emulator's stack is priced from the table: no traffic leaves it.
        let ask_api = !self.blueprint.on_emulator();
        let (prices, source) = cost::prices_for(
            &self.sdk,
            region,
            &spec.broker.instance_type,
            &self.state_dir,
            ask_api,
        )
        .await;
        let estimate = cost::estimate(region, &prices, source, &before, &after);
        Ok((plan, estimate))
    }

    /// Refreshes, plans, asks `approve`, and applies. Returns the plan and
    /// whether it was applied.
    pub async fn apply(
        &self,
        options: &Options,
        approve: impl FnOnce(&Plan) -> bool,
    ) -> anyhow::Result<(Plan, bool)> {
        self.ensure_pinned()?;
        let state = StateFile::lock(&self.state_dir, self.blueprint.stack())?;
        let plan = self.refreshed_plan(&state.state, options).await?;
        if !plan.has_changes() && plan.adopted.is_empty() {
            return Ok((plan, false));
        }
        refuse_data_loss(&plan, options)?;
        if plan.has_changes() && !approve(&plan) {
            return Ok((plan, false));
        }
        self.execute(&plan, state, options).await?;
        Ok((plan, true))
    }

    /// Applies a plan saved by `plan --out`, refusing it when anything it
    /// was made from has changed: the state, the cloud as the refresh reads
    /// it, the blueprint or the built images.
    pub async fn apply_saved(&self, saved: &Plan, options: &Options) -> anyhow::Result<()> {
        self.ensure_pinned()?;
        let state = StateFile::lock(&self.state_dir, self.blueprint.stack())?;
        let fresh = self.refreshed_plan(&state.state, options).await?;
        if let Some(why) = saved.stale_against(&fresh) {
            anyhow::bail!(
                "refused: the saved plan is stale: {why}. Make a new one with `provision plan --out FILE`; nothing was changed"
            );
        }
        refuse_data_loss(saved, options)?;
        self.execute(saved, state, options).await
    }

    /// Runs `plan` over the locked `state`.
    async fn execute(
        &self,
        plan: &Plan,
        mut state: StateFile,
        options: &Options,
    ) -> anyhow::Result<()> {
        if !state.existed {
            // Before the first create: from now on a crash leaves a state
            // file, and the next run looks for what it did not record.
            state.write()?;
        }
        engine::apply_plan(&self.cloud, plan, state, options).await?;
        Ok(())
    }

    /// Deletes everything of the stack (after `approve` sees what is recorded).
    pub async fn destroy(
        &self,
        options: &Options,
        approve: impl FnOnce(&State) -> bool,
    ) -> anyhow::Result<Option<DestroyReport>> {
        let state = StateFile::lock(&self.state_dir, self.blueprint.stack())?;
        if !approve(&state.state) {
            return Ok(None);
        }
        Ok(Some(
            engine::destroy(&self.cloud, &self.desired, state, options).await?,
        ))
    }

    /// The recorded state (no lock).
    pub fn state(&self) -> anyhow::Result<State> {
        Ok(StateFile::read(&self.state_dir, self.blueprint.stack())
            .with_context(|| format!("reading the state of `{}`", self.blueprint.stack()))?
            .state
            .clone())
    }
}

/// Apply refuses to delete data unless told to.
fn refuse_data_loss(plan: &Plan, options: &Options) -> anyhow::Result<()> {
    let losing = plan.data_loss();
    anyhow::ensure!(
        losing.is_empty() || options.allow_data_loss,
        "{}\nrefused: {} would delete all of its data (every item, object version, or event on the broker not consumed yet). Change the blueprint back, or run apply with --allow-data-loss if losing it is intended; nothing was changed",
        plan.render(),
        losing.join(", ")
    );
    Ok(())
}

/// What one refresh gives the planner.
struct Refreshed {
    desired: Vec<Resource>,
    current: BTreeMap<String, Current>,
    plan: Plan,
}

/// The NAME of the address `KIND.NAME`.
fn name_in(address: &str) -> &str {
    address.split_once('.').map_or("", |(_, name)| name)
}

/// What users need after an apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outputs {
    /// The load balancer's DNS name.
    pub alb_dns_name: Option<String>,
    /// Where clients send events.
    pub ingest_url: Option<String>,
    /// The GraphQL endpoint.
    pub graphql_url: Option<String>,
    /// The dashboard.
    pub dashboard_url: Option<String>,
    /// The broker's `host:port` inside the VPC.
    pub broker_address: Option<String>,
}

impl Outputs {
    /// Outputs from a state.
    pub fn of(state: &State) -> Self {
        let output = |address: &str, name: &str| -> Option<String> {
            state
                .resources
                .get(address)?
                .outputs
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let dns = output("load_balancer.main", "dns_name");
        let scheme = if state.resources.contains_key("listener.https") {
            "https"
        } else {
            "http"
        };
        let url = |path: &str| dns.as_ref().map(|d| format!("{scheme}://{d}{path}"));
        Self {
            ingest_url: url("/events"),
            graphql_url: url("/graphql"),
            dashboard_url: url("/"),
            broker_address: output("instance.broker", "private_ip")
                .map(|ip| format!("{ip}:{}", desired::KAFKA_PORT)),
            alb_dns_name: dns,
        }
    }

    /// As `name = value` lines.
    pub fn render(&self) -> String {
        [
            ("alb_dns_name", &self.alb_dns_name),
            ("broker_address", &self.broker_address),
            ("dashboard_url", &self.dashboard_url),
            ("graphql_url", &self.graphql_url),
            ("ingest_url", &self.ingest_url),
        ]
        .iter()
        .map(|(name, value)| format!("{name} = {}\n", value.as_deref().unwrap_or("(not created)")))
        .collect()
    }
}
