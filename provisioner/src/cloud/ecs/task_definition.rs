//! One revision of an ECS task definition for Fargate with one container
//! (image, port, environment, secrets, logs, health check). Never changed in
//! place: a change registers a new revision. Its id and `arn` output are the
//! revision's ARN.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, CpuArchitecture, HealthCheck, KeyValuePair,
    LogConfiguration, LogDriver, NetworkMode, OsFamily, PortMapping, RuntimePlatform, Secret,
    SortOrder, TaskDefinitionFamilyStatus, TaskDefinitionStatus, TransportProtocol,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{created, describe_task_definition, prop_ecs_tags};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{
    fit_i32, from_props, in_stack_ids, ours_id, required, sent, sent_ok, tags_value, to_props,
    unbuilt, Tags,
};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// A task definition revision's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinitionProps {
    /// Its one container; `None` when it has none.
    pub container: Option<ContainerProps>,
    /// CPU units of the task (1024 = one vCPU).
    pub cpu: Option<i64>,
    /// `X86_64` or `ARM64`, the architecture of the image.
    pub cpu_architecture: Option<String>,
    /// The role ECS pulls the image and reads the secrets with.
    pub execution_role_arn: Option<String>,
    /// The family its revisions share, named after the stack and the service.
    pub family: Option<String>,
    /// Memory of the task, in MiB.
    pub memory: Option<i64>,
    /// The role whose credentials the task gets.
    pub task_role_arn: Option<String>,
}

/// The one container of a task definition (the `container` attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerProps {
    /// Its environment variables, by name.
    pub environment: BTreeMap<String, String>,
    /// Its health check command in exec form (`["CMD", ...]`); `None` (or
    /// empty) for none.
    pub health_check: Option<Vec<String>>,
    /// The image it runs, by digest: `REGISTRY/REPOSITORY@sha256:...`.
    pub image: Option<String>,
    /// The log group the `awslogs` driver writes to.
    pub log_group: Option<String>,
    /// The region of that log group.
    pub log_region: Option<String>,
    /// The container's name, also its log streams' prefix.
    pub name: Option<String>,
    /// The TCP port it listens on; `None` for none.
    pub port: Option<i64>,
    /// Environment variables filled from SSM parameters (name -> ARN).
    pub secrets: BTreeMap<String, String>,
}

/// An ECS task definition revision.
pub struct TaskDefinition;

#[async_trait]
impl ResourceKind for TaskDefinition {
    fn updatable(&self) -> &'static [&'static str] {
        &[]
    }

    // After the services that run it.
    fn destroy_rank(&self) -> u8 {
        1
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: TaskDefinitionProps = from_props(props)?;
        // Newest first: the first one carrying our tags is the one.
        for arn in active_revisions(cloud, required(p.family.as_deref(), "family")?).await? {
            let tags = revision_tags(cloud, &arn).await?;
            if let Some(arn) = ours_id(cloud, address, tags, arn) {
                return Ok(Some(arn));
            }
        }
        Ok(None)
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some((task, tags)) = describe_task_definition(cloud, id).await? else {
            return Ok(None);
        };
        let number = |text: Option<&str>| text.and_then(|t| t.parse().ok());
        let owned = |text: Option<&str>| text.map(str::to_string);
        let architecture = task.runtime_platform().and_then(|p| p.cpu_architecture());
        let mut props = to_props(&TaskDefinitionProps {
            container: task.container_definitions().first().map(ContainerProps::of),
            cpu: number(task.cpu()),
            cpu_architecture: owned(architecture.map(|a| a.as_str())),
            execution_role_arn: owned(task.execution_role_arn()),
            family: owned(task.family()),
            memory: number(task.memory()),
            task_role_arn: owned(task.task_role_arn()),
        });
        props.insert("tags".into(), tags_value(tags));
        let outputs = Props::from([("arn".into(), json!(task.task_definition_arn()))]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: TaskDefinitionProps = from_props(props)?;
        let tags = prop_ecs_tags(props)?;
        let architecture = required(p.cpu_architecture.as_deref(), "cpu_architecture")?;
        let platform = RuntimePlatform::builder()
            .operating_system_family(OsFamily::Linux)
            .cpu_architecture(CpuArchitecture::from(architecture))
            .build();
        let request = cloud
            .ecs
            .register_task_definition()
            .family(required(p.family, "family")?)
            .cpu(required(p.cpu, "cpu")?.to_string())
            .memory(required(p.memory, "memory")?.to_string())
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .runtime_platform(platform)
            .execution_role_arn(required(p.execution_role_arn, "execution_role_arn")?)
            .task_role_arn(required(p.task_role_arn, "task_role_arn")?)
            .container_definitions(required(p.container, "container")?.definition()?)
            .set_tags(Some(tags));
        let out = sent("RegisterTaskDefinition", request.send()).await?;
        created(
            "RegisterTaskDefinition",
            "task definition",
            out.task_definition().and_then(|t| t.task_definition_arn()),
        )
    }

    async fn update(&self, _cloud: &Cloud, _change: Update<'_>) -> Result<()> {
        Err(CloudError::invalid(
            "update",
            "a task definition is never changed in place",
        ))
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        if describe_task_definition(cloud, id).await?.is_none() {
            return Ok(());
        }
        let request = cloud.ecs.deregister_task_definition().task_definition(id);
        sent_ok("DeregisterTaskDefinition", request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        // Task definition families are named after the stack.
        let request = cloud.ecs.list_task_definition_families();
        let request = request
            .family_prefix(&cloud.stack)
            .status(TaskDefinitionFamilyStatus::Active);
        let families = request.into_paginator().items().send().try_collect();
        let families = sent("ListTaskDefinitionFamilies", families).await?;
        let mut found = Vec::new();
        for family in families {
            let revisions = active_revisions(cloud, &family).await?;
            let candidates = revisions.into_iter().map(|arn| (arn.clone(), arn));
            let tags_of = |arn: String| async move { revision_tags(cloud, &arn).await };
            found.extend(in_stack_ids(cloud, candidates, tags_of).await?);
        }
        Ok(found)
    }
}

/// The tags of the active revision `arn`, `None` when it is not active.
async fn revision_tags(cloud: &Cloud, arn: &str) -> Result<Option<Tags>> {
    Ok(describe_task_definition(cloud, arn)
        .await?
        .map(|(_, tags)| tags))
}

/// The family's active revisions, newest first.
async fn active_revisions(cloud: &Cloud, family: &str) -> Result<Vec<String>> {
    let request = cloud.ecs.list_task_definitions().family_prefix(family);
    let request = request
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc);
    let pages = request.into_paginator().items().send().try_collect();
    let mut arns = sent("ListTaskDefinitions", pages).await?;
    // moto ignores `sort`, so order by revision here.
    let revision = |arn: &String| {
        arn.rsplit_once(':')
            .and_then(|(_, r)| r.parse::<u64>().ok())
            .unwrap_or(0)
    };
    arns.sort_by_key(|arn| std::cmp::Reverse(revision(arn)));
    Ok(arns)
}

impl ContainerProps {
    /// The container as ECS describes it.
    fn of(c: &ContainerDefinition) -> Self {
        let options = c.log_configuration().and_then(|l| l.options());
        let option = |key: &str| options.and_then(|o| o.get(key)).cloned();
        Self {
            environment: c
                .environment()
                .iter()
                .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
                .collect(),
            health_check: c.health_check().map(|h| h.command().to_vec()),
            image: c.image().map(str::to_string),
            log_group: option("awslogs-group"),
            log_region: option("awslogs-region"),
            name: c.name().map(str::to_string),
            port: c
                .port_mappings()
                .first()
                .and_then(|p| p.container_port())
                .map(i64::from),
            secrets: c
                .secrets()
                .iter()
                .map(|s| (s.name().to_string(), s.value_from().to_string()))
                .collect(),
        }
    }

    /// The container as RegisterTaskDefinition takes it: essential, logging
    /// to its log group with its name as the stream prefix.
    fn definition(self) -> Result<ContainerDefinition> {
        let name = required(self.name, "name")?;
        let mut definition = ContainerDefinition::builder()
            .name(&name)
            .image(required(self.image, "image")?)
            .essential(true);
        if let Some(port) = self.port {
            let mapping = PortMapping::builder()
                .container_port(fit_i32(port, "port")?)
                .protocol(TransportProtocol::Tcp);
            definition = definition.port_mappings(mapping.build());
        }
        for (key, value) in self.environment {
            let variable = KeyValuePair::builder().name(key).value(value);
            definition = definition.environment(variable.build());
        }
        for (key, arn) in self.secrets {
            let secret = Secret::builder().name(key).value_from(arn);
            definition = definition.secrets(secret.build().map_err(unbuilt("secrets"))?);
        }
        let logs = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", required(self.log_group, "log_group")?)
            .options("awslogs-region", required(self.log_region, "log_region")?)
            .options("awslogs-stream-prefix", name)
            .build()
            .map_err(unbuilt("log_group"))?;
        definition = definition.log_configuration(logs);
        if let Some(command) = self.health_check.filter(|c| !c.is_empty()) {
            let check = HealthCheck::builder()
                .set_command(Some(command))
                .interval(10)
                .retries(3)
                .start_period(15)
                .build()
                .map_err(unbuilt("health_check"))?;
            definition = definition.health_check(check);
        }
        Ok(definition.build())
    }
}
