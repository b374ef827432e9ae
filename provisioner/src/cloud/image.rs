//! Service images in their registry: the `image` kind. The id is the full
//! reference `HOST/REPOSITORY@sha256:...`; creating one pushes an image
//! built in this run. Images are content-addressed, so nothing about one
//! changes in place: a new build is a new image.
//!
//! Deleting an image is a no-op: the previous revision of a service may
//! still be running or be what a rollback returns to. Old images expire
//! by the repository's lifecycle policy and go with the repository on
//! destroy.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;

use super::resource::{ResourceKind, Update};
use super::support::{from_props, to_props};
use super::{Cloud, CloudError, Observed, Result};
use crate::engine::Progress;
use crate::image;
use crate::image::registry::Registry;
use crate::model::Props;

/// The images this run built, and where to push them.
#[derive(Clone, Default)]
pub struct Images {
    /// The blueprint's `images.registry`; ECR's own endpoint when `None`.
    registry_url: Option<String>,
    /// Built images by digest.
    built: Arc<BTreeMap<String, image::Image>>,
    /// Where push progress goes (`ADDRESS: ...` lines).
    progress: Option<Progress>,
    registry: Arc<OnceCell<Registry>>,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images")
            .field("registry_url", &self.registry_url)
            .field("built", &self.built.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Images {
    /// None built yet; they go to `registry_url` (or ECR's own endpoint).
    pub fn new(registry_url: Option<String>) -> Self {
        Self {
            registry_url,
            ..Self::default()
        }
    }

    /// The same registry, with `built` to push and `progress` for the lines.
    pub fn with_built(
        self,
        built: impl IntoIterator<Item = image::Image>,
        progress: Option<Progress>,
    ) -> Self {
        let built = built
            .into_iter()
            .map(|i| (i.digest().to_string(), i))
            .collect();
        Self {
            built: Arc::new(built),
            progress,
            ..self
        }
    }
}

/// The registry images go to, with ECR's credentials (fetched once per run).
pub async fn registry(cloud: &Cloud) -> Result<&Registry> {
    cloud
        .images
        .registry
        .get_or_try_init(|| Registry::connect(&cloud.ecr, cloud.images.registry_url.as_deref()))
        .await
}

/// `HOST/REPOSITORY@DIGEST` split into its parts.
fn parse_id(id: &str) -> Result<(&str, &str, &str)> {
    let bad = || CloudError::invalid("image", format!("`{id}` is not HOST/REPOSITORY@DIGEST"));
    let (name, digest) = id.split_once('@').ok_or_else(bad)?;
    let (host, repository) = name.split_once('/').ok_or_else(bad)?;
    Ok((host, repository, digest))
}

/// An image's attributes, in the order a plan lists them: what it is and
/// where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageProps {
    /// `sha256:...` of the image's manifest.
    pub digest: String,
    /// The registry's host.
    pub registry: String,
    /// The repository in it.
    pub repository: String,
}

impl ImageProps {
    /// The full reference `HOST/REPOSITORY@DIGEST`, the image's id.
    fn reference(&self) -> String {
        image::reference(&self.registry, &self.repository, &self.digest)
    }
}

/// A service image in the registry, by digest.
pub struct Image;

#[async_trait]
impl ResourceKind for Image {
    fn updatable(&self) -> &'static [&'static str] {
        &[]
    }

    // Found again by its reference, which is its content.
    fn tagged(&self) -> bool {
        false
    }

    // With the task definitions that pin it, before its repository.
    fn destroy_rank(&self) -> u8 {
        1
    }

    async fn find(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<Option<String>> {
        let id = from_props::<ImageProps>(props)?.reference();
        Ok(self.read(cloud, &id).await?.map(|_| id))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let (host, repository, digest) = parse_id(id)?;
        let registry = registry(cloud).await?;
        // An image in another registry than the one we push to is not ours to serve from.
        if registry.host() != host || !registry.has_manifest(repository, digest).await? {
            return Ok(None);
        }
        let props = to_props(&ImageProps {
            registry: host.to_string(),
            repository: repository.to_string(),
            digest: digest.to_string(),
        });
        let outputs = Props::from([
            ("uri".to_string(), json!(id)),
            ("digest".to_string(), json!(digest)),
        ]);
        Ok(Some(Observed { props, outputs }))
    }

    /// Pushes the image built for `digest`.
    async fn create(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<String> {
        let p: ImageProps = from_props(props)?;
        let registry = registry(cloud).await?;
        let (host, digest) = (&p.registry, &p.digest);
        if host != registry.host() {
            return Err(CloudError::invalid(
                "PushImage",
                format!(
                    "{address} is for registry {host}, but this run pushes to {}",
                    registry.host()
                ),
            ));
        }
        let image = cloud.images.built.get(digest).ok_or_else(|| {
            CloudError::invalid(
                "PushImage",
                format!("{address}: no image {digest} was built in this run"),
            )
        })?;
        let line = |text: &str| {
            if let Some(progress) = &cloud.images.progress {
                progress.line(&format!("{address}: {text}"));
            }
        };
        registry.push(&p.repository, image, &line).await?;
        Ok(p.reference())
    }

    /// Nothing changes in place.
    async fn update(&self, _cloud: &Cloud, change: Update<'_>) -> Result<()> {
        Err(CloudError::invalid(
            "PushImage",
            format!(
                "an image cannot change in place ({})",
                change.changed.join(", ")
            ),
        ))
    }

    /// Images stay (see the module docs).
    async fn delete(&self, _cloud: &Cloud, _id: &str) -> Result<()> {
        Ok(())
    }
}
