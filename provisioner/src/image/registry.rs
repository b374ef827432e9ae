//! Pushing images to ECR, or to any OCI registry a blueprint names, by
//! digest, through `oci-client`. Credentials come from ECR's
//! `GetAuthorizationToken` (Basic `AWS:<password>`) in both cases, so an
//! emulator's registry can check what ECR would hand out.
//!
//! Blobs go up in one request each (ECR refuses chunks under 5 MiB), and
//! only those the registry lacks; the manifest goes up as the exact bytes
//! whose sha256 is the digest, under each of the image's tags.

use std::sync::Arc;

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;

use super::{Image, MANIFEST_MEDIA_TYPE};
use crate::cloud::CloudError;

/// A registry with the credentials to push to it.
#[derive(Clone)]
pub struct Registry {
    host: String,
    client: Arc<oci_client::Client>,
    auth: RegistryAuth,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .finish()
    }
}

impl Registry {
    /// ECR's registry of this account, or `url` (`http://127.0.0.1:5001`)
    /// when the blueprint names one; either way with ECR's credentials.
    pub async fn connect(ecr: &aws_sdk_ecr::Client, url: Option<&str>) -> Result<Self, CloudError> {
        let out = ecr
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("GetAuthorizationToken", e))?;
        let data = out.authorization_data().first().ok_or_else(|| {
            CloudError::invalid(
                "GetAuthorizationToken",
                "no authorization data in the answer",
            )
        })?;
        let token = data.authorization_token().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                CloudError::invalid(
                    "GetAuthorizationToken",
                    "the token is not base64 of user:password",
                )
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            CloudError::invalid("GetAuthorizationToken", "the token is not user:password")
        })?;
        let endpoint = match url {
            Some(url) => url.to_string(),
            None => data.proxy_endpoint().unwrap_or_default().to_string(),
        };
        Self::new(&endpoint, RegistryAuth::Basic(user.into(), password.into()))
    }

    /// A registry at `endpoint` (`http://host:port` or `https://host`).
    pub fn new(endpoint: &str, auth: RegistryAuth) -> Result<Self, CloudError> {
        let (plain_http, host) = parse_endpoint(endpoint).ok_or_else(|| {
            CloudError::invalid(
                "registry",
                format!("{endpoint}: expected http(s)://HOST[:PORT]"),
            )
        })?;
        let host = host.to_string();
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![host.clone()])
            } else {
                ClientProtocol::Https
            },
            // ECR wants chunks of at least 5 MiB; one PUT per blob always works.
            use_monolithic_push: true,
            ..Default::default()
        };
        let client = oci_client::Client::try_from(config)
            .map_err(|e| CloudError::invalid("registry", e.to_string()))?;
        Ok(Self {
            host,
            client: Arc::new(client),
            auth,
        })
    }

    /// `HOST[:PORT]`, as image references name it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether `repository` holds the manifest `digest`.
    pub async fn has_manifest(&self, repository: &str, digest: &str) -> Result<bool, CloudError> {
        let reference = self.by_digest(repository, digest);
        match self
            .client
            .fetch_manifest_digest(&reference, &self.auth)
            .await
        {
            Ok(found) => Ok(found == digest),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.error("HeadManifest", repository, e)),
        }
    }

    /// Pushes `image` to `repository`: missing blobs, then the manifest under
    /// each tag; then reads the digest back. `progress` gets a line per blob.
    pub async fn push(
        &self,
        repository: &str,
        image: &Image,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), CloudError> {
        self.client
            .store_auth_if_needed(&self.host, &self.auth)
            .await;
        let by_digest = self.by_digest(repository, image.digest());
        let total = image.compressed_size();
        let mut done = image.manifest.data.len() as u64;
        for blob in image.blobs() {
            let present = self
                .client
                .blob_exists(&by_digest, &blob.digest)
                .await
                .map_err(|e| self.error("HeadBlob", repository, e))?;
            let size = blob.data.len() as u64;
            done += size;
            let verb = if present {
                "already there"
            } else {
                self.client
                    .push_blob(&by_digest, blob.data.clone(), &blob.digest)
                    .await
                    .map_err(|e| self.error("PushBlob", repository, e))?;
                "uploaded"
            };
            progress(&format!(
                "{} {verb} ({}), {} of {}",
                short(&blob.digest),
                megabytes(size),
                megabytes(done),
                megabytes(total)
            ));
        }
        let media_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        for tag in &image.tags {
            self.client
                .push_manifest_raw(
                    &Reference::with_tag(self.host.clone(), repository.into(), tag.into()),
                    image.manifest.data.clone(),
                    media_type.clone(),
                )
                .await
                .map_err(|e| self.error("PutManifest", repository, e))?;
        }
        if !self.has_manifest(repository, image.digest()).await? {
            return Err(CloudError::invalid(
                "PutManifest",
                format!(
                    "{}/{repository}: the manifest was accepted but {} is not there",
                    self.host,
                    image.digest()
                ),
            ));
        }
        Ok(())
    }

    /// The image `repository@digest`: its config and its layers, each
    /// checked against the digest that names it.
    pub async fn pull(&self, repository: &str, digest: &str) -> Result<Pulled, CloudError> {
        let reference = self.by_digest(repository, digest);
        let (manifest, _) = self
            .client
            .pull_manifest_raw(&reference, &self.auth, &[MANIFEST_MEDIA_TYPE])
            .await
            .map_err(|e| self.error("GetManifest", repository, e))?;
        let mismatch = |what: &str, want: &str| {
            CloudError::invalid(
                "GetBlob",
                format!(
                    "{}/{repository}: the {what} served for {want} has another digest",
                    self.host
                ),
            )
        };
        if super::sha256(&manifest) != digest {
            return Err(mismatch("manifest", digest));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&manifest)
            .map_err(|e| CloudError::invalid("GetManifest", format!("{digest}: not JSON: {e}")))?;
        let descriptor_digest = |d: &serde_json::Value| d["digest"].as_str().map(str::to_string);
        let config_digest = descriptor_digest(&parsed["config"])
            .ok_or_else(|| CloudError::invalid("GetManifest", format!("{digest}: no config")))?;
        let layer_digests: Vec<String> = parsed["layers"]
            .as_array()
            .map(|l| l.iter().filter_map(descriptor_digest).collect())
            .unwrap_or_default();
        let mut blobs = Vec::new();
        for blob in std::iter::once(&config_digest).chain(&layer_digests) {
            let mut data = Vec::new();
            self.client
                .pull_blob(&reference, blob.as_str(), &mut data)
                .await
                .map_err(|e| self.error("GetBlob", repository, e))?;
            if &super::sha256(&data) != blob {
                return Err(mismatch("blob", blob));
            }
            blobs.push(data);
        }
        let config = serde_json::from_slice(&blobs.remove(0)).map_err(|e| {
            CloudError::invalid(
                "GetBlob",
                format!("{config_digest}: config is not JSON: {e}"),
            )
        })?;
        Ok(Pulled {
            config,
            layers: blobs,
        })
    }

    fn by_digest(&self, repository: &str, digest: &str) -> Reference {
        Reference::with_digest(self.host.clone(), repository.into(), digest.into())
    }

    /// A registry failure as the walks classify errors: refused credentials
    /// are permanent and say what to check; server errors and transport
    /// failures are transient.
    fn error(&self, operation: &str, repository: &str, e: OciDistributionError) -> CloudError {
        let place = format!("registry {}/{repository}", self.host);
        let status = match &e {
            OciDistributionError::ServerError { code, .. } => Some(*code),
            OciDistributionError::RequestError(e) => e.status().map(|s| s.as_u16()),
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => Some(401),
            _ => None,
        };
        let (code, message) = match (status, &e) {
            (Some(401 | 403), _) => (
                "RegistryUnauthorized",
                format!(
                    "{place} refused the credentials from ECR's GetAuthorizationToken ({e}). \
                     Check `images.registry` in the blueprint and that this registry accepts \
                     user AWS with ECR's token; on AWS, check that you may call \
                     ecr:GetAuthorizationToken and push to the repository"
                ),
            ),
            (Some(code), _) if code >= 500 || code == 429 => {
                ("ServiceUnavailable", format!("{place}: {e}"))
            }
            (None, OciDistributionError::RequestError(_)) => {
                ("", format!("{place} unreachable: {e}"))
            }
            _ => ("Registry", format!("{place}: {e}")),
        };
        CloudError {
            operation: operation.into(),
            code: code.into(),
            message,
        }
    }
}

/// An image as pulled: its config (OCI image config JSON) and its layers
/// (gzip tar), base first.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image config.
    pub config: serde_json::Value,
    /// The compressed layers, in order.
    pub layers: Vec<Vec<u8>>,
}

/// `http(s)://HOST[:PORT]` as (plain HTTP, `HOST[:PORT]`); `None` for
/// anything else (another scheme, a path). The blueprint's check and the
/// desired resources read `images.registry` through this too.
pub fn parse_endpoint(url: &str) -> Option<(bool, &str)> {
    let (plain_http, rest) = match url.strip_prefix("http://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("https://")?),
    };
    let host = rest.trim_end_matches('/');
    (!host.is_empty() && !host.contains('/')).then_some((plain_http, host))
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_)
        | OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
