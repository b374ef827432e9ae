//! An ECS cluster, with Container Insights on or off. Its id and `arn`
//! output are its ARN; it also outputs its `name`.

use async_trait::async_trait;
use aws_sdk_ecs::types::{self, ClusterField, ClusterSetting, ClusterSettingName};
use serde_json::Value;

use super::{active_clusters, ecs_tags, opt_str, prop_ecs_tags, retag, GONE};
use crate::cloud::resource::ResourceKind;
use crate::cloud::support::{gone_ok, in_stack, ours, prop_bool, prop_str, tags_value};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

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
        Ok(describe_cluster(cloud, prop_str(props, "name")?)
            .await?
            .filter(|c| ours(cloud, &ecs_tags(c.tags()), address))
            .and_then(|c| c.cluster_arn().map(str::to_string)))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let Some(cluster) = describe_cluster(cloud, id).await? else {
            return Ok(None);
        };
        let insights = cluster.settings().iter().any(|s| {
            s.name() == Some(&ClusterSettingName::ContainerInsights)
                && matches!(s.value(), Some("enabled" | "enhanced"))
        });
        let name = opt_str(cluster.cluster_name());
        let props = Props::from([
            ("name".into(), name.clone()),
            ("container_insights".into(), Value::Bool(insights)),
            ("tags".into(), tags_value(ecs_tags(cluster.tags()))),
        ]);
        let outputs = Props::from([
            ("arn".into(), opt_str(cluster.cluster_arn())),
            ("name".into(), name),
        ]);
        Ok(Some(Observed { props, outputs }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let tags = Some(prop_ecs_tags(props)?);
        let out = cloud
            .ecs
            .create_cluster()
            .cluster_name(prop_str(props, "name")?)
            .settings(insights(prop_bool(props, "container_insights")?))
            .set_tags(tags)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("CreateCluster", e))?;
        out.cluster()
            .and_then(|c| c.cluster_arn())
            .map(str::to_string)
            .ok_or_else(|| CloudError::invalid("CreateCluster", "no cluster ARN"))
    }

    async fn update(
        &self,
        cloud: &Cloud,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        let has = |name: &str| changed.iter().any(|c| c == name);
        if has("container_insights") {
            // UpdateCluster takes the same settings as UpdateClusterSettings,
            // which moto does not implement.
            cloud
                .ecs
                .update_cluster()
                .cluster(id)
                .settings(insights(prop_bool(props, "container_insights")?))
                .send()
                .await
                .map_err(|e| CloudError::from_sdk("UpdateCluster", e))?;
        }
        if has("tags") {
            let current = describe_cluster(cloud, id)
                .await?
                .map(|c| ecs_tags(c.tags()))
                .unwrap_or_default();
            retag(cloud, id, current, props).await?;
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        let deleted = cloud
            .ecs
            .delete_cluster()
            .cluster(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| CloudError::from_sdk("DeleteCluster", e));
        gone_ok(deleted, GONE)
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        Ok(active_clusters(cloud)
            .await?
            .iter()
            .filter(|c| in_stack(cloud, &ecs_tags(c.tags())))
            .filter_map(|c| c.cluster_arn().map(str::to_string))
            .collect())
    }
}

/// The cluster by name or ARN; `None` when missing or inactive.
async fn describe_cluster(cloud: &Cloud, cluster: &str) -> Result<Option<types::Cluster>> {
    let out = cloud
        .ecs
        .describe_clusters()
        .clusters(cluster)
        .include(ClusterField::Tags)
        .include(ClusterField::Settings)
        .send()
        .await
        .map_err(|e| CloudError::from_sdk("DescribeClusters", e))?;
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
