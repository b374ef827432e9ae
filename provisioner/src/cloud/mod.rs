//! The executor's side of a resource: what each kind of resource is
//! ([`resource::ResourceKind`], one file per kind, listed in [`registry`]),
//! the SDK clients they call through ([`Cloud`]), and how the walks treat
//! AWS's errors ([`CloudError`]).

pub mod alb;
pub mod bucket;
pub mod ecr;
pub mod ecs;
pub mod iam;
pub mod image;
pub mod logs;
pub mod monitoring;
pub mod network;
pub mod registry;
pub mod resource;
pub mod secret;
pub mod support;
pub mod table;

use std::fmt;

use aws_config::SdkConfig;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use crate::model::{Kind, Props};
use resource::Update;
use support::Poll;

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
    /// CloudWatch (alarms).
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// SNS (the alarms' topic).
    pub sns: aws_sdk_sns::Client,
    /// SSM Parameter Store.
    pub ssm: aws_sdk_ssm::Client,
    /// The images this run built and the registry they go to.
    pub images: image::Images,
    /// How waits inside an operation poll (the walk sets its own).
    pub poll: Poll,
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
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            images: image::Images::default(),
            poll: Poll::default(),
        }
    }

    /// The same clients, pushing `images` when an `image` resource is created.
    pub fn with_images(mut self, images: image::Images) -> Self {
        self.images = images;
        self
    }

    /// The same clients, polling waits inside operations by `poll`.
    pub fn polling(mut self, poll: Poll) -> Self {
        self.poll = poll;
        self
    }

    /// The resource this stack created at `address`, if any.
    pub async fn find(&self, kind: Kind, address: &str, props: &Props) -> Result<Option<String>> {
        kind.implementation().find(self, address, props).await
    }

    /// The resource as the cloud has it, `None` when it is gone.
    pub async fn read(&self, kind: Kind, id: &str) -> Result<Option<Observed>> {
        kind.implementation().read(self, id).await
    }

    /// Reads every resource of `ids` of one kind, in their order.
    pub async fn read_each(&self, kind: Kind, ids: &[String]) -> Result<Vec<Option<Observed>>> {
        kind.implementation().read_each(self, ids).await
    }

    /// Creates the resource; returns its id.
    pub async fn create(&self, kind: Kind, address: &str, props: &Props) -> Result<String> {
        kind.implementation().create(self, address, props).await
    }

    /// Changes `changed` attributes in place.
    pub async fn update(
        &self,
        kind: Kind,
        id: &str,
        props: &Props,
        changed: &[String],
    ) -> Result<()> {
        let change = Update { id, props, changed };
        kind.implementation().update(self, change).await
    }

    /// Deletes the resource; `Ok` when it is already gone.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        kind.implementation().delete(self, id).await
    }

    /// Everything carrying this stack's tag, of every kind.
    pub async fn list_tagged(&self) -> Result<Vec<(Kind, String)>> {
        let mut found = Vec::new();
        for &kind in Kind::ALL {
            let ids = kind.implementation().list_tagged(self).await?;
            found.extend(ids.into_iter().map(|id| (kind, id)));
        }
        Ok(found)
    }
}

/// A resource as read from the cloud.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
