//! The executor's side of a resource: one module per AWS resource family,
//! each with the same five operations, called through [`Cloud`].
//!
//! Every operation is one idempotent attempt; retries, waits and ordering
//! belong to the apply and destroy walks. Contract for each family module:
//! - `find(cloud, kind, address, props) -> Option<id>`: the resource this
//!   stack created at `address` (by its tags `event-platform:stack` and
//!   `event-platform:address`, or for untagged kinds by its deterministic
//!   key), so a crashed run's creations are adopted instead of duplicated.
//! - `read(cloud, kind, id) -> Option<Observed>`: the resource as the cloud
//!   has it, with exactly the property names the planner produces
//!   ([`crate::graph`]), `None` when it is gone.
//! - `create(cloud, kind, address, props) -> id`: creates it with `props`
//!   (references already resolved) and its tags.
//! - `update(cloud, kind, id, props, changed)`: changes the `changed`
//!   attributes in place: those in [`Kind::updatable`], and every attribute
//!   `create` sets after its first call, so that a create that failed half
//!   way and is found again by its retry can be completed.
//! - `delete(cloud, kind, id)`: deletes it; `Ok` when it is already gone.
//! - `list_tagged(cloud) -> Vec<(Kind, id)>`: everything carrying this
//!   stack's tag, for destroy's final check and the tests.

pub mod alb;
pub mod bucket;
pub mod ecr;
pub mod ecs;
pub mod iam;
pub mod image;
pub mod logs;
pub mod network;
pub mod secret;
pub mod table;

use std::fmt;

use aws_config::SdkConfig;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::Value;

use crate::model::{Kind, Props, BROKER_SETUP_TAG};

/// The SDK clients for one stack, and the stack's name.
#[derive(Debug, Clone)]
pub struct Cloud {
    /// The stack's name (value of the `event-platform:stack` tag).
    pub stack: String,
    /// Region the stack lives in.
    pub region: String,
    /// EC2 (network, security groups, the broker instance).
    pub ec2: aws_sdk_ec2::Client,
    /// ECS.
    pub ecs: aws_sdk_ecs::Client,
    /// ECR.
    pub ecr: aws_sdk_ecr::Client,
    /// Elastic Load Balancing v2.
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// SSM Parameter Store.
    pub ssm: aws_sdk_ssm::Client,
    /// The images this run built and the registry they go to.
    pub images: image::Images,
}

impl Cloud {
    /// Clients for `stack` from one SDK configuration.
    pub fn new(config: &SdkConfig, stack: &str) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            // Emulators serve buckets by path, not by virtual host.
            .force_path_style(true)
            .build();
        Self {
            stack: stack.to_string(),
            region: config
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            ec2: aws_sdk_ec2::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            ecr: aws_sdk_ecr::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            images: image::Images::default(),
        }
    }

    /// The same clients, pushing `images` when an `image` resource is created.
    pub fn with_images(mut self, images: image::Images) -> Self {
        self.images = images;
        self
    }

    /// The resource this stack created at `address`, if any.
    pub async fn find(&self, kind: Kind, address: &str, props: &Props) -> Result<Option<String>> {
        by_family!(kind, find(self, kind, address, props))
    }

    /// The resource as the cloud has it, `None` when it is gone.
    pub async fn read(&self, kind: Kind, id: &str) -> Result<Option<Observed>> {
        by_family!(kind, read(self, kind, id))
    }

    /// Creates the resource; returns its id.
    pub async fn create(&self, kind: Kind, address: &str, props: &Props) -> Result<String> {
        by_family!(kind, create(self, kind, address, props))
    }

    /// Changes `changed` attributes in place.
    pub async fn update(
        &self,
        kind: Kind,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        by_family!(kind, update(self, kind, id, props, changed))
    }

    /// Deletes the resource; `Ok` when it is already gone.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        by_family!(kind, delete(self, kind, id))
    }

    /// Everything carrying this stack's tag, in every family.
    pub async fn list_tagged(&self) -> Result<Vec<(Kind, String)>> {
        let mut found = network::list_tagged(self).await?;
        found.extend(ecr::list_tagged(self).await?);
        found.extend(table::list_tagged(self).await?);
        found.extend(bucket::list_tagged(self).await?);
        found.extend(iam::list_tagged(self).await?);
        found.extend(secret::list_tagged(self).await?);
        found.extend(logs::list_tagged(self).await?);
        found.extend(alb::list_tagged(self).await?);
        found.extend(ecs::list_tagged(self).await?);
        Ok(found)
    }
}

/// Calls the family module of `kind` with the same function and arguments.
macro_rules! by_family {
    ($kind:expr, $function:ident($($arg:expr),*)) => {
        match family($kind) {
            Family::Network => network::$function($($arg),*).await,
            Family::Ecr => ecr::$function($($arg),*).await,
            Family::Table => table::$function($($arg),*).await,
            Family::Bucket => bucket::$function($($arg),*).await,
            Family::Iam => iam::$function($($arg),*).await,
            Family::Secret => secret::$function($($arg),*).await,
            Family::Logs => logs::$function($($arg),*).await,
            Family::Alb => alb::$function($($arg),*).await,
            Family::Ecs => ecs::$function($($arg),*).await,
            Family::Image => image::$function($($arg),*).await,
        }
    };
}
use by_family;

enum Family {
    Network,
    Ecr,
    Table,
    Bucket,
    Iam,
    Secret,
    Logs,
    Alb,
    Ecs,
    Image,
}

fn family(kind: Kind) -> Family {
    match kind {
        Kind::Vpc
        | Kind::Subnet
        | Kind::InternetGateway
        | Kind::RouteTable
        | Kind::Route
        | Kind::RouteTableAssociation
        | Kind::SecurityGroup
        | Kind::Instance => Family::Network,
        Kind::EcrRepository => Family::Ecr,
        Kind::DynamodbTable => Family::Table,
        Kind::S3Bucket => Family::Bucket,
        Kind::IamRole => Family::Iam,
        Kind::SsmParameter => Family::Secret,
        Kind::LogGroup => Family::Logs,
        Kind::LoadBalancer | Kind::TargetGroup | Kind::Listener | Kind::ListenerRule => Family::Alb,
        Kind::EcsCluster | Kind::TaskDefinition | Kind::EcsService => Family::Ecs,
        Kind::Image => Family::Image,
    }
}

/// A resource as read from the cloud.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Its properties, named as the planner names them.
    pub props: Props,
    /// Values other resources reference (`id`, `arn`, `dns_name`, ...).
    pub outputs: Props,
}

/// The result of one cloud call.
pub type Result<T> = std::result::Result<T, CloudError>;

/// What AWS answered when a call failed.
#[derive(Debug, Clone)]
pub struct CloudError {
    /// The API operation, e.g. `DeleteSecurityGroup`.
    pub operation: String,
    /// AWS's error code (`DependencyViolation`, `ThrottlingException`, ...),
    /// empty when the call did not reach AWS.
    pub code: String,
    /// AWS's message, or the transport error.
    pub message: String,
}

/// How the walks treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttled or a transient service/transport failure: retry with backoff.
    Transient,
    /// Eventual consistency (IAM role not yet assumable, just-created
    /// resource not yet visible): retry with backoff.
    NotYetConsistent,
    /// Still in use by something else (DependencyViolation, ResourceInUse):
    /// retry while it drains.
    InUse,
    /// Anything else: stop and report.
    Permanent,
}

impl CloudError {
    /// An error from an SDK call to `operation`.
    pub fn from_sdk<E>(operation: &str, error: E) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error,
    {
        let code = error.code().unwrap_or_default().to_string();
        let message = match error.message() {
            Some(m) => m.to_string(),
            None => {
                // Transport errors carry no metadata; their chain says what happened.
                let mut text = error.to_string();
                let mut source = error.source();
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                text
            }
        };
        Self {
            operation: operation.to_string(),
            code,
            message,
        }
    }

    /// An error found by our own code about `operation` (a missing field in
    /// an answer, a property of the wrong type).
    pub fn invalid(operation: &str, message: impl Into<String>) -> Self {
        Self {
            operation: operation.to_string(),
            code: "Invalid".into(),
            message: message.into(),
        }
    }

    /// A name the stack wants that something else already has: permanent,
    /// and the message names the blueprint key that picks another.
    pub fn name_taken(operation: &str, what: &str, key: &str) -> Self {
        Self {
            operation: operation.to_string(),
            code: "NameTaken".into(),
            message: format!("{what}; set `{key}` in the blueprint to a name of its own"),
        }
    }

    /// How the walks should treat this error.
    pub fn class(&self) -> ErrorClass {
        let code = self.code.as_str();
        let message = self.message.to_ascii_lowercase();
        match code {
            "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "SlowDown"
            | "ServiceUnavailable"
            | "InternalError"
            | "InternalFailure"
            | "ProvisionedThroughputExceededException" => ErrorClass::Transient,
            "" => ErrorClass::Transient,
            "DependencyViolation"
            | "ResourceInUse"
            | "ResourceInUseException"
            | "DeleteConflict"
            | "BucketNotEmpty" => ErrorClass::InUse,
            // RunInstances right after the instance profile was created.
            "InvalidParameterValue" if message.contains("invalid iam instance profile") => {
                ErrorClass::NotYetConsistent
            }
            _ if message.contains("unable to assume")
                || message.contains("cannot be assumed")
                || message.contains("role is not valid") =>
            {
                ErrorClass::NotYetConsistent
            }
            // Right after a create, AWS may not know the new resource yet
            // (EC2, IAM and S3 are eventually consistent), and a table's
            // continuous backups take a while after it turns active. Reads
            // and deletes map a genuine "not found" before it gets here.
            // A managed policy that does not exist is not going to appear.
            "NoSuchEntity" if message.contains("not attachable") => ErrorClass::Permanent,
            "NoSuchEntity"
            | "NoSuchBucket"
            | "ResourceNotFoundException"
            | "RepositoryNotFoundException"
            | "TargetGroupNotFound"
            | "LoadBalancerNotFound"
            | "ListenerNotFound"
            | "ContinuousBackupsUnavailableException" => ErrorClass::NotYetConsistent,
            _ if code.ends_with(".NotFound") => ErrorClass::NotYetConsistent,
            _ => ErrorClass::Permanent,
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code.is_empty() {
            write!(f, "{}: {}", self.operation, self.message)
        } else {
            write!(f, "{}: {} ({})", self.operation, self.message, self.code)
        }
    }
}

impl std::error::Error for CloudError {}

/// `props[name]` as a string.
pub fn prop_str<'a>(props: &'a Props, name: &str) -> Result<&'a str> {
    props
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| CloudError::invalid(name, format!("property `{name}` must be a string")))
}

/// `props[name]` as an integer.
pub fn prop_i64(props: &Props, name: &str) -> Result<i64> {
    props
        .get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| CloudError::invalid(name, format!("property `{name}` must be an integer")))
}

/// `props[name]` as a bool.
pub fn prop_bool(props: &Props, name: &str) -> Result<bool> {
    props.get(name).and_then(Value::as_bool).ok_or_else(|| {
        CloudError::invalid(name, format!("property `{name}` must be true or false"))
    })
}

/// `props[name]` as a list of strings (absent = empty).
pub fn prop_strings(props: &Props, name: &str) -> Result<Vec<String>> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    CloudError::invalid(name, format!("property `{name}` must list strings"))
                })
            })
            .collect(),
        Some(_) => Err(CloudError::invalid(
            name,
            format!("property `{name}` must be a list"),
        )),
    }
}

/// `props["tags"]` as key/value pairs, sorted by key.
pub fn prop_tags(props: &Props) -> Result<Vec<(String, String)>> {
    match props.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .ok_or_else(|| {
                        CloudError::invalid("tags", format!("tag `{k}` must be a string"))
                    })
            })
            .collect(),
        Some(_) => Err(CloudError::invalid(
            "tags",
            "property `tags` must be a table",
        )),
    }
}

/// The tag keys a resource has that its desired `tags` do not, to remove.
/// AWS's own `aws:` tags cannot be removed and are left alone.
pub fn stale_tag_keys<K: AsRef<str>>(
    current: impl IntoIterator<Item = K>,
    props: &Props,
) -> Result<Vec<String>> {
    let desired = prop_tags(props)?;
    Ok(current
        .into_iter()
        .map(|k| k.as_ref().to_string())
        .filter(|k| {
            !k.starts_with("aws:") && k != BROKER_SETUP_TAG && !desired.iter().any(|(d, _)| d == k)
        })
        .collect())
}

/// Tags as the `tags` property value.
pub fn tags_value<I, K, V>(tags: I) -> Value
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    Value::Object(
        tags.into_iter()
            .map(|(k, v)| (k.into(), Value::String(v.into())))
            .collect(),
    )
}
