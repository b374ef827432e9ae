//! AWS SDK configuration for the adapters: region, an optional endpoint
//! (LocalStack, moto) and, with an endpoint, static test credentials when
//! none are configured. Without the `aws` feature the settings remain (the
//! services read them from their environment as always) but no SDK
//! configuration can be made, and the stores refuse the AWS adapters.

#[cfg(feature = "aws")]
pub use aws_config::SdkConfig;
#[cfg(feature = "aws")]
use aws_config::{BehaviorVersion, Region};

/// The SDK's configuration in a build without AWS support: none can exist.
#[cfg(not(feature = "aws"))]
#[derive(Debug)]
pub enum SdkConfig {}

/// Whether this build has the AWS adapters (the `aws` feature).
pub const SUPPORTED: bool = cfg!(feature = "aws");

/// Where the AWS adapters connect.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// `AWS_REGION` (default `us-east-1`).
    pub region: String,
    /// `AWS_ENDPOINT_URL`: an emulator's URL; `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// Static credentials (access key, secret); `None` uses the standard chain.
    pub static_credentials: Option<(String, String)>,
}

impl AwsSettings {
    /// Settings for an emulator at `endpoint` with dummy credentials.
    pub fn emulator(endpoint: &str) -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint.into()),
            static_credentials: Some(("test".into(), "test".into())),
        }
    }
}

/// The SDK configuration for `settings` when an adapter `needs` it; `None`
/// otherwise, and always in a build without AWS support.
pub async fn sdk_config_when(needs: bool, settings: &AwsSettings) -> Option<SdkConfig> {
    #[cfg(feature = "aws")]
    if needs {
        return Some(sdk_config(settings).await);
    }
    let _ = (needs, settings);
    None
}

/// Loads the SDK configuration for `settings`.
#[cfg(feature = "aws")]
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()));
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some((key, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            key.clone(),
            secret.clone(),
            None,
            None,
            "event-platform-static",
        ));
    }
    loader.load().await
}
