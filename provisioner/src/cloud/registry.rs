//! Every kind of resource a stack can hold, each with its name (the address
//! prefix, `security_group.alb`) and the [`ResourceKind`] that implements it.
//! Adding a kind is one file implementing the trait and one line here.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::resource::ResourceKind;
use super::{alb, bucket, ecr, ecs, iam, image, logs, network, secret, table};

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
    Vpc = "vpc" => network::Legacy(Kind::Vpc),
    /// EC2 subnet.
    Subnet = "subnet" => network::Legacy(Kind::Subnet),
    /// Internet gateway, attached to the VPC.
    InternetGateway = "internet_gateway" => network::Legacy(Kind::InternetGateway),
    /// Route table.
    RouteTable = "route_table" => network::Legacy(Kind::RouteTable),
    /// One route in a route table (id `rtb-…|CIDR`).
    Route = "route" => network::Legacy(Kind::Route),
    /// A subnet's association with a route table.
    RouteTableAssociation = "route_table_association" => network::Legacy(Kind::RouteTableAssociation),
    /// Security group with its ingress rules.
    SecurityGroup = "security_group" => network::Legacy(Kind::SecurityGroup),
    /// EC2 instance (the broker).
    Instance = "instance" => network::Legacy(Kind::Instance),
    /// ECR repository.
    EcrRepository = "ecr_repository" => ecr::Legacy(Kind::EcrRepository),
    /// A service image in its registry, by digest.
    Image = "image" => image::Legacy(Kind::Image),
    /// DynamoDB table.
    DynamodbTable = "dynamodb_table" => table::Legacy(Kind::DynamodbTable),
    /// S3 bucket with its configuration.
    S3Bucket = "s3_bucket" => bucket::Legacy(Kind::S3Bucket),
    /// IAM role with its policies.
    IamRole = "iam_role" => iam::Legacy(Kind::IamRole),
    /// SSM SecureString parameter with a generated value.
    SsmParameter = "ssm_parameter" => secret::Legacy(Kind::SsmParameter),
    /// CloudWatch Logs log group.
    LogGroup = "log_group" => logs::LogGroup,
    /// Application load balancer.
    LoadBalancer = "load_balancer" => alb::Legacy(Kind::LoadBalancer),
    /// ALB target group.
    TargetGroup = "target_group" => alb::Legacy(Kind::TargetGroup),
    /// ALB listener.
    Listener = "listener" => alb::Legacy(Kind::Listener),
    /// ALB listener rule.
    ListenerRule = "listener_rule" => alb::Legacy(Kind::ListenerRule),
    /// ECS cluster.
    EcsCluster = "ecs_cluster" => ecs::Legacy(Kind::EcsCluster),
    /// ECS task definition (one revision).
    TaskDefinition = "task_definition" => ecs::Legacy(Kind::TaskDefinition),
    /// ECS service.
    EcsService = "ecs_service" => ecs::Legacy(Kind::EcsService),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}
