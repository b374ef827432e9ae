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
use serde_json::{Map, Value};

use super::{describe_task_definition, opt_str, prop_ecs_tags, prop_i32};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::{in_stack, ours, prop_i64, prop_str, prop_strings, tags_value};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

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
        // Newest first: the first one carrying our tags is the one.
        for arn in active_revisions(cloud, prop_str(props, "family")?).await? {
            if let Some((_, tags)) = describe_task_definition(cloud, &arn).await? {
                if ours(cloud, &tags, address) {
                    return Ok(Some(arn));
                }
            }
        }
        Ok(None)
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some((task, tags)) = describe_task_definition(cloud, id).await? else {
            return Ok(None);
        };
        let number = |text: Option<&str>| {
            text.and_then(|t| t.parse::<i64>().ok())
                .map_or(Value::Null, Value::from)
        };
        let container = match task.container_definitions().first() {
            Some(c) => container_value(c),
            None => Value::Null,
        };
        let props = Props::from([
            ("family".into(), opt_str(task.family())),
            ("cpu".into(), number(task.cpu())),
            ("memory".into(), number(task.memory())),
            (
                "execution_role_arn".into(),
                opt_str(task.execution_role_arn()),
            ),
            ("task_role_arn".into(), opt_str(task.task_role_arn())),
            (
                "cpu_architecture".into(),
                opt_str(
                    task.runtime_platform()
                        .and_then(|p| p.cpu_architecture())
                        .map(|a| a.as_str()),
                ),
            ),
            ("container".into(), container),
            ("tags".into(), tags_value(tags)),
        ]);
        let outputs = Props::from([("arn".into(), opt_str(task.task_definition_arn()))]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let tags = Some(prop_ecs_tags(props)?);
        let out = cloud
            .ecs
            .register_task_definition()
            .family(prop_str(props, "family")?)
            .cpu(prop_i64(props, "cpu")?.to_string())
            .memory(prop_i64(props, "memory")?.to_string())
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .runtime_platform(
                RuntimePlatform::builder()
                    .operating_system_family(OsFamily::Linux)
                    .cpu_architecture(CpuArchitecture::from(prop_str(props, "cpu_architecture")?))
                    .build(),
            )
            .execution_role_arn(prop_str(props, "execution_role_arn")?)
            .task_role_arn(prop_str(props, "task_role_arn")?)
            .container_definitions(container_definition(props)?)
            .set_tags(tags)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("RegisterTaskDefinition", e))?;
        out.task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_string)
            .ok_or_else(|| CloudError::invalid("RegisterTaskDefinition", "no task definition ARN"))
    }

    async fn update(
        &self,
        _cloud: &Cloud,
        _id: &str,
        _props: &Props,
        _changed: &[String],
    ) -> Result<()> {
        Err(CloudError::invalid(
            "update",
            "a task definition is never changed in place",
        ))
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        if describe_task_definition(cloud, id).await?.is_none() {
            return Ok(());
        }
        cloud
            .ecs
            .deregister_task_definition()
            .task_definition(id)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DeregisterTaskDefinition", e))?;
        Ok(())
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        // Task definition families are named after the stack.
        let mut families = cloud
            .ecs
            .list_task_definition_families()
            .family_prefix(&cloud.stack)
            .status(TaskDefinitionFamilyStatus::Active)
            .into_paginator()
            .items()
            .send();
        let mut family_names = Vec::new();
        while let Some(family) = families.next().await {
            family_names
                .push(family.map_err(|e| CloudError::from_sdk("ListTaskDefinitionFamilies", e))?);
        }
        let mut found = Vec::new();
        for family in family_names {
            for arn in active_revisions(cloud, &family).await? {
                if let Some((_, tags)) = describe_task_definition(cloud, &arn).await? {
                    if in_stack(cloud, &tags) {
                        found.push(arn);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The family's active revisions, newest first.
async fn active_revisions(cloud: &Cloud, family: &str) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut pages = cloud
        .ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc)
        .into_paginator()
        .items()
        .send();
    while let Some(arn) = pages.next().await {
        arns.push(arn.map_err(|e| CloudError::from_sdk("ListTaskDefinitions", e))?);
    }
    // moto ignores `sort`, so order by revision here.
    let revision = |arn: &String| {
        arn.rsplit_once(':')
            .and_then(|(_, r)| r.parse::<u64>().ok())
            .unwrap_or(0)
    };
    arns.sort_by_key(|arn| std::cmp::Reverse(revision(arn)));
    Ok(arns)
}

fn container_definition(props: &Props) -> Result<ContainerDefinition> {
    let container = match props.get("container") {
        Some(Value::Object(map)) => map.clone().into_iter().collect::<Props>(),
        _ => {
            return Err(CloudError::invalid(
                "container",
                "property `container` must be a table",
            ))
        }
    };
    let name = prop_str(&container, "name")?;
    let port = match container.get("port") {
        None | Some(Value::Null) => None,
        Some(_) => Some(prop_i32(&container, "port")?),
    };
    let mut definition = ContainerDefinition::builder()
        .name(name)
        .image(prop_str(&container, "image")?)
        .essential(true);
    if let Some(port) = port {
        definition = definition.port_mappings(
            PortMapping::builder()
                .container_port(port)
                .protocol(TransportProtocol::Tcp)
                .build(),
        );
    }
    for (key, value) in string_map(&container, "environment")? {
        definition = definition.environment(KeyValuePair::builder().name(key).value(value).build());
    }
    for (key, arn) in string_map(&container, "secrets")? {
        let secret = Secret::builder()
            .name(key)
            .value_from(arn)
            .build()
            .map_err(|e| CloudError::invalid("secrets", e.to_string()))?;
        definition = definition.secrets(secret);
    }
    let logs = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", prop_str(&container, "log_group")?)
        .options("awslogs-region", prop_str(&container, "log_region")?)
        .options("awslogs-stream-prefix", name)
        .build()
        .map_err(|e| CloudError::invalid("log_group", e.to_string()))?;
    definition = definition.log_configuration(logs);
    let command = prop_strings(&container, "health_check")?;
    if !command.is_empty() {
        let check = HealthCheck::builder()
            .set_command(Some(command))
            .interval(10)
            .retries(3)
            .start_period(15)
            .build()
            .map_err(|e| CloudError::invalid("health_check", e.to_string()))?;
        definition = definition.health_check(check);
    }
    Ok(definition.build())
}

/// The container as the `container` property.
fn container_value(c: &ContainerDefinition) -> Value {
    let port = c
        .port_mappings()
        .first()
        .and_then(|p| p.container_port())
        .map_or(Value::Null, Value::from);
    let environment: Map<String, Value> = c
        .environment()
        .iter()
        .filter_map(|kv| {
            Some((
                kv.name()?.to_string(),
                Value::String(kv.value()?.to_string()),
            ))
        })
        .collect();
    let secrets: Map<String, Value> = c
        .secrets()
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                Value::String(s.value_from().to_string()),
            )
        })
        .collect();
    let options = c.log_configuration().and_then(|l| l.options());
    let option = |key: &str| opt_str(options.and_then(|o| o.get(key)).map(String::as_str));
    let health = c.health_check().map_or(Value::Null, |h| {
        Value::Array(
            h.command()
                .iter()
                .map(|c| Value::from(c.as_str()))
                .collect(),
        )
    });
    let mut map = Map::new();
    map.insert("name".into(), opt_str(c.name()));
    map.insert("image".into(), opt_str(c.image()));
    map.insert("port".into(), port);
    map.insert("environment".into(), Value::Object(environment));
    map.insert("secrets".into(), Value::Object(secrets));
    map.insert("log_group".into(), option("awslogs-group"));
    map.insert("log_region".into(), option("awslogs-region"));
    map.insert("health_check".into(), health);
    Value::Object(map)
}

fn string_map(props: &Props, name: &str) -> Result<BTreeMap<String, String>> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .ok_or_else(|| {
                        CloudError::invalid(name, format!("`{name}.{k}` must be a string"))
                    })
            })
            .collect(),
        Some(_) => Err(CloudError::invalid(
            name,
            format!("property `{name}` must be a table"),
        )),
    }
}
