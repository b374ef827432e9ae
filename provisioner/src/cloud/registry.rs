//! Every kind of resource a stack can hold, each with its name (the address
//! prefix, `security_group.alb`) and the [`ResourceKind`] that implements it.
//! Adding a kind is one file implementing the trait and one line here.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::resource::ResourceKind;
use super::{alb, bucket, ecr, ecs, iam, image, logs, monitoring, network, secret, table};

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $implementation:expr, )*) => {
        /// Every kind of resource a stack can hold. The serialized name is
        /// the address prefix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Kind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The address prefix, e.g. `security_group`.
            pub fn prefix(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// What this kind is and does.
            pub fn implementation(self) -> &'static dyn ResourceKind {
                match self {
                    $(Kind::$variant => &$implementation,)*
                }
            }
        }
    };
}

registry! {
    /// EC2 VPC.
    Vpc = "vpc" => network::Vpc,
    /// EC2 subnet.
    Subnet = "subnet" => network::Subnet,
    /// Internet gateway, attached to the VPC.
    InternetGateway = "internet_gateway" => network::InternetGateway,
    /// Route table.
    RouteTable = "route_table" => network::RouteTable,
    /// One route in a route table (id `rtb-…|CIDR`).
    Route = "route" => network::Route,
    /// A subnet's association with a route table.
    RouteTableAssociation = "route_table_association" => network::RouteTableAssociation,
    /// Security group with its ingress rules.
    SecurityGroup = "security_group" => network::SecurityGroup,
    /// EC2 instance (the broker).
    Instance = "instance" => network::Instance,
    /// ECR repository.
    EcrRepository = "ecr_repository" => ecr::EcrRepository,
    /// A service image in its registry, by digest.
    Image = "image" => image::Image,
    /// DynamoDB table.
    DynamodbTable = "dynamodb_table" => table::DynamodbTable,
    /// S3 bucket with its configuration.
    S3Bucket = "s3_bucket" => bucket::S3Bucket,
    /// IAM role with its policies.
    IamRole = "iam_role" => iam::IamRole,
    /// SSM SecureString parameter with a generated value.
    SsmParameter = "ssm_parameter" => secret::SsmParameter,
    /// CloudWatch Logs log group.
    LogGroup = "log_group" => logs::LogGroup,
    /// Application load balancer.
    LoadBalancer = "load_balancer" => alb::LoadBalancer,
    /// ALB target group.
    TargetGroup = "target_group" => alb::TargetGroup,
    /// ALB listener.
    Listener = "listener" => alb::Listener,
    /// ALB listener rule.
    ListenerRule = "listener_rule" => alb::ListenerRule,
    /// ECS cluster.
    EcsCluster = "ecs_cluster" => ecs::EcsCluster,
    /// ECS task definition (one revision).
    TaskDefinition = "task_definition" => ecs::TaskDefinition,
    /// ECS service.
    EcsService = "ecs_service" => ecs::EcsService,
    /// SNS topic the alarms notify, with its e-mail subscriptions.
    SnsTopic = "sns_topic" => monitoring::SnsTopic,
    /// CloudWatch metric alarm.
    Alarm = "alarm" => monitoring::Alarm,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}
