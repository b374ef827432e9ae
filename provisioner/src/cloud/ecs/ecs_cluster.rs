//! An ECS cluster, with Container Insights on or off. Its id and `arn`
//! output are its ARN; it also outputs its `name`.

use async_trait::async_trait;
use aws_sdk_ecs::types::{self, ClusterField, ClusterSetting, ClusterSettingName};
use serde::{Deserialize, Serialize};

use super::{
    active_clusters, created, in_stack_arns, observed, ours_arn, prop_ecs_tags, retag, GONE,
};
use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{deleted, from_props, not_in_place, required, sent, sent_ok};
use crate::cloud::{Cloud, Observed, Result};
use crate::model::Props;

/// A cluster's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsClusterProps {
    /// Whether Container Insights is on (`enabled` or `enhanced`).
    pub container_insights: bool,
    /// The cluster's name; `None` when ECS does not say.
    pub name: Option<String>,
}

/// An ECS cluster.
pub struct EcsCluster;

#[async_trait]
impl ResourceKind for EcsCluster {
    fn updatable(&self) -> &'static [&'static str] {
        &["container_insights", "tags"]
    }

    // After its services.
    fn destroy_rank(&self) -> u8 {
        2
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: EcsClusterProps = from_props(props)?;
        let cluster = describe_cluster(cloud, required(p.name.as_deref(), "name")?).await?;
        Ok(ours_arn(cloud, address, cluster))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(cluster) = describe_cluster(cloud, id).await? else {
            return Ok(None);
        };
        let container_insights = cluster.settings().iter().any(|s| {
            s.name() == Some(&ClusterSettingName::ContainerInsights)
                && matches!(s.value(), Some("enabled" | "enhanced"))
        });
        let typed = EcsClusterProps {
            container_insights,
            name: cluster.cluster_name().map(str::to_string),
        };
        Ok(Some(observed(&cluster, &typed)))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: EcsClusterProps = from_props(props)?;
        let tags = prop_ecs_tags(props)?;
        let name = required(p.name, "name")?;
        let request = cloud.ecs.create_cluster().cluster_name(name);
        let request = request.settings(insights(p.container_insights));
        let out = sent("CreateCluster", request.set_tags(Some(tags)).send()).await?;
        created(
            "CreateCluster",
            "cluster",
            out.cluster().and_then(|c| c.cluster_arn()),
        )
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: EcsClusterProps = from_props(props)?;
        for attribute in changed {
            match attribute.as_str() {
                // UpdateCluster takes the same settings as
                // UpdateClusterSettings, which moto does not implement.
                "container_insights" => {
                    let request = cloud.ecs.update_cluster().cluster(id);
                    let request = request.settings(insights(p.container_insights));
                    sent_ok("UpdateCluster", request.send()).await?
                }
                "tags" => retag(cloud, id, describe_cluster(cloud, id).await?, props).await?,
                other => return Err(not_in_place("UpdateCluster", other)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let request = cloud.ecs.delete_cluster().cluster(id);
        deleted("DeleteCluster", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        Ok(in_stack_arns(cloud, &active_clusters(cloud).await?))
    }
}

/// The cluster by name or ARN; `None` when missing or inactive.
async fn describe_cluster(cloud: &Cloud, cluster: &str) -> Result<Option<types::Cluster>> {
    let request = cloud.ecs.describe_clusters().clusters(cluster);
    let request = request
        .include(ClusterField::Tags)
        .include(ClusterField::Settings);
    let out = sent("DescribeClusters", request.send()).await?;
    Ok(out
        .clusters()
        .iter()
        .find(|c| c.status() != Some("INACTIVE"))
        .cloned())
}

fn insights(enabled: bool) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(if enabled { "enabled" } else { "disabled" })
        .build()
}
