//! What makes a blueprint invalid (errors) or suspect (warnings), each
//! named by file, line and key; no AWS call.

use std::fmt;

use super::cidr::{contains, overlaps, parse_cidr};
use super::{instance_architecture, line_of, Blueprint};
use crate::image::registry::parse_endpoint;

/// A problem found in a blueprint.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Error (the blueprint cannot be used) or warning (a lint).
    pub severity: Severity,
    /// `file:line`.
    pub location: String,
    /// The dotted key, e.g. `network.subnets[1].cidr`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The blueprint cannot be used.
    Error,
    /// Allowed, but probably not meant.
    Warning,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}: {level}: `{}`: {}",
            self.location, self.key, self.message
        )
    }
}

impl Blueprint {
    /// Validates and lints; no AWS call.
    pub fn check(&self) -> Vec<Finding> {
        let mut out = Findings {
            blueprint: self,
            found: Vec::new(),
        };
        let spec = &self.spec;
        let name = &spec.stack.name;
        // ALB and target group names (`STACK-graphql`) may have 32 characters.
        if name.is_empty()
            || name.len() > 20
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || name.starts_with('-')
            || name.ends_with('-')
        {
            out.error(
                "stack.name",
                "must be 1 to 20 characters of a-z, 0-9 and inner `-` (it prefixes every resource name)",
            );
        }
        if spec.stack.region.is_empty() {
            out.error("stack.region", "must name a region, e.g. `eu-west-1`");
        }
        if instance_architecture(&spec.broker.instance_type).is_none() {
            out.error(
                "broker.instance_type",
                "is not an EC2 instance type such as `t3.medium` (x86_64) or `t4g.medium` (Graviton, arm64)",
            );
        }
        if !spec.broker.repository_setup_url.starts_with("https://") {
            out.error(
                "broker.repository_setup_url",
                "must be an https:// URL (the instance runs what it downloads as root)",
            );
        }
        if let Some(url) = &spec.images.registry {
            if parse_endpoint(url).is_none() {
                out.error(
                    "images.registry",
                    "must be http(s)://HOST[:PORT] (the registry's root, no path)",
                );
            }
        }
        if let Some(endpoint) = &spec.stack.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                out.error("stack.endpoint", "must be an http:// or https:// URL");
            }
            if endpoint.starts_with("http://") && spec.bucket.tls_only {
                out.warning(
                    "bucket.tls_only",
                    "the bucket will refuse every request not made over TLS, and this endpoint is \
                     plain HTTP: the processor's archive writes will be refused (set `tls_only = false`)",
                );
            }
        }
        if let Some(endpoint) = &spec.telemetry.otlp_endpoint {
            if parse_endpoint(endpoint).is_none() || !endpoint.starts_with("http://") {
                out.error(
                    "telemetry.otlp_endpoint",
                    "must be http://HOST[:PORT] (the services send OTLP over plain HTTP, to a \
                     collector inside the VPC such as ADOT, which forwards over TLS)",
                );
            }
        }
        if let Some(ratio) = spec.telemetry.sample_ratio {
            if !(0.0..=1.0).contains(&ratio) {
                out.error("telemetry.sample_ratio", "must be between 0 and 1");
            }
            if spec.telemetry.otlp_endpoint.is_none() {
                out.warning(
                    "telemetry.sample_ratio",
                    "has no effect without `otlp_endpoint`: no traces are sent",
                );
            }
        }
        if let Some(email) = &spec.alarms.email {
            if !is_email_address(email) {
                out.error(
                    "alarms.email",
                    "must be one e-mail address (NAME@DOMAIN), which SNS notifies of alarms",
                );
            }
        }
        self.check_network(&mut out);
        self.check_services(&mut out);
        let bucket = &spec.bucket;
        if bucket.archive_after_days == 0 || bucket.archive_after_days >= bucket.expire_after_days {
            out.error(
                "bucket.archive_after_days",
                "must be at least 1 and less than `expire_after_days`",
            );
        }
        // Account ids have 12 digits; `check` makes no AWS call to learn it.
        let bucket_name = self.bucket_name("000000000000");
        if bucket_name.len() < 3
            || bucket_name.len() > 63
            || !bucket_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            out.error(
                "bucket.name",
                "must be 3 to 63 characters of a-z, 0-9, `-` and `.`",
            );
        }
        let table_name = self.table_name();
        if table_name.len() < 3
            || table_name.len() > 255
            || !table_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            out.error(
                "table.name",
                "must be 3 to 255 characters of a-z, A-Z, 0-9, `_`, `-` and `.`",
            );
        }
        if spec.table.ttl_days == 0 {
            out.error("table.ttl_days", "must be at least 1");
        }
        if !spec.table.point_in_time_recovery {
            out.warning(
                "table.point_in_time_recovery",
                "is off: a bad write cannot be rolled back",
            );
        }
        if !RETENTION_DAYS.contains(&spec.logs.retention_days) {
            out.error(
                "logs.retention_days",
                &format!("must be one of CloudWatch's values: {RETENTION_DAYS:?}"),
            );
        }
        if spec.broker.disk_gib < 10 {
            out.error("broker.disk_gib", "must be at least 10");
        }
        for (i, cidr) in spec.load_balancer.ingress_cidrs.iter().enumerate() {
            if parse_cidr(cidr).is_none() {
                out.error(
                    &format!("load_balancer.ingress_cidrs[{i}]"),
                    "is not an IPv4 CIDR such as 0.0.0.0/0",
                );
            }
        }
        if let Some(arn) = &spec.load_balancer.certificate_arn {
            match arn.strip_prefix("arn:aws:acm:") {
                None => out.error(
                    "load_balancer.certificate_arn",
                    "must be an ACM certificate ARN (arn:aws:acm:...)",
                ),
                // A load balancer takes certificates from its own region only.
                Some(rest) => {
                    let region = rest.split(':').next().unwrap_or_default();
                    if region != spec.stack.region {
                        out.error(
                            "load_balancer.certificate_arn",
                            &format!(
                                "the certificate is in {region}, the stack in {}: request or import it in ACM in {}",
                                spec.stack.region, spec.stack.region
                            ),
                        );
                    }
                }
            }
        }
        out.found
    }

    fn check_network(&self, out: &mut Findings<'_>) {
        let network = &self.spec.network;
        let vpc = parse_cidr(&network.vpc_cidr);
        match vpc {
            None => out.error(
                "network.vpc_cidr",
                "is not an IPv4 CIDR such as 10.0.0.0/16",
            ),
            Some((_, prefix)) if !(16..=24).contains(&prefix) => {
                out.error("network.vpc_cidr", "must have a prefix between /16 and /24")
            }
            _ => {}
        }
        let mut zones: Vec<&str> = Vec::new();
        let mut seen: Vec<(usize, (u32, u8))> = Vec::new();
        for (i, subnet) in network.subnets.iter().enumerate() {
            let key = format!("network.subnets[{i}]");
            if network.subnets[..i].iter().any(|s| s.name == subnet.name) {
                out.error(&format!("{key}.name"), "repeats another subnet's name");
            }
            if !subnet.zone.starts_with(&self.spec.stack.region) {
                out.error(
                    &format!("{key}.zone"),
                    &format!("is not a zone of region `{}`", self.spec.stack.region),
                );
            }
            if !zones.contains(&subnet.zone.as_str()) {
                zones.push(&subnet.zone);
            }
            let Some(cidr) = parse_cidr(&subnet.cidr) else {
                out.error(
                    &format!("{key}.cidr"),
                    "is not an IPv4 CIDR such as 10.0.1.0/24",
                );
                continue;
            };
            if !(16..=28).contains(&cidr.1) {
                out.error(
                    &format!("{key}.cidr"),
                    "must have a prefix between /16 and /28",
                );
            }
            if let Some(vpc) = vpc {
                if !contains(vpc, cidr) {
                    out.error(
                        &format!("{key}.cidr"),
                        &format!("{} is outside the VPC's {}", subnet.cidr, network.vpc_cidr),
                    );
                }
            }
            for (j, other) in &seen {
                if overlaps(*other, cidr) {
                    out.error(
                        &format!("{key}.cidr"),
                        &format!(
                            "overlaps network.subnets[{j}] ({})",
                            network.subnets[*j].cidr
                        ),
                    );
                }
            }
            seen.push((i, cidr));
        }
        if network.subnets.len() < 2 || zones.len() < 2 {
            out.error(
                "network.subnets",
                "needs at least two subnets in two availability zones (the load balancer requires it)",
            );
        }
    }

    fn check_services(&self, out: &mut Findings<'_>) {
        let services = self.services();
        let mut patterns: Vec<(&str, &str)> = Vec::new();
        for service in &services {
            let key = format!("services.{}", service.name);
            if !fargate_size_ok(service.cpu, service.memory) {
                out.error(
                    &format!("{key}.memory"),
                    &format!(
                        "{} MiB is not a Fargate size for {} CPU units (256: 512-2048, 512: 1024-4096, 1024: 2048-8192, 2048: 4096-16384, 4096: 8192-30720, in steps of 1024 above 512)",
                        service.memory, service.cpu
                    ),
                );
            }
            if service.desired_count > 100 {
                out.error(&format!("{key}.desired_count"), "must be at most 100");
            }
            if service.desired_count == 0 {
                out.warning(
                    &format!("{key}.desired_count"),
                    "is 0: the service runs no task",
                );
            }
            if !service.health_path.starts_with('/') {
                out.error(&format!("{key}.health_path"), "must start with `/`");
            }
            if service.port == Some(0) {
                out.error(&format!("{key}.port"), "must be between 1 and 65535");
            }
            match (service.port, service.path_patterns.is_empty()) {
                (None, false) => out.error(
                    &format!("{key}.path_patterns"),
                    &format!(
                        "routes requests to `{}`, which answers no HTTP (it has no port)",
                        service.name
                    ),
                ),
                (Some(_), true) if service.name != "processor" => out.warning(
                    &format!("{key}.path_patterns"),
                    "is empty: the load balancer sends this service nothing",
                ),
                _ => {}
            }
            for (i, pattern) in service.path_patterns.iter().enumerate() {
                if !pattern.starts_with('/') {
                    out.error(&format!("{key}.path_patterns[{i}]"), "must start with `/`");
                }
                if let Some((owner, _)) = patterns.iter().find(|(_, p)| *p == pattern.as_str()) {
                    out.error(
                        &format!("{key}.path_patterns[{i}]"),
                        &format!("`{pattern}` is already routed to `{owner}`"),
                    );
                }
                patterns.push((service.name, pattern));
            }
            for name in service.env.keys() {
                if MANAGED_ENV.contains(&name.as_str()) {
                    out.error(
                        &format!("{key}.env.{name}"),
                        "is set by provision from the stack's own resources",
                    );
                }
            }
        }
        if self.spec.services.processor.port.is_some() {
            out.error(
                "services.processor.port",
                "the processor serves no HTTP traffic",
            );
        }
    }

    /// The 1-based line where `key` (dotted, with `[i]` for array items) is
    /// written, or where the closest enclosing table is.
    fn line_of_key(&self, key: &str) -> usize {
        let Ok(table) = toml::de::DeTable::parse(&self.source) else {
            return 1;
        };
        let span = table.span();
        let root = toml::Spanned::new(span, toml::de::DeValue::Table(table.into_inner()));
        let mut node = &root;
        let mut line = 1;
        for part in key.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let Some(next) = node.get_ref().get(name) else {
                break;
            };
            node = next;
            line = line_of(&self.source, node.span().start);
            if let Some(i) = index {
                let Some(item) = node.get_ref().get(i) else {
                    break;
                };
                node = item;
                line = line_of(&self.source, node.span().start);
            }
        }
        line
    }
}

/// Environment provision sets itself from the stack's resources.
const MANAGED_ENV: [&str; 6] = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "JWT_SECRET_KEY",
    "DYNAMODB_TABLE",
    "S3_BUCKET",
    "AWS_REGION",
    "PORT",
];

/// CloudWatch Logs' allowed retention values (days).
const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

struct Findings<'a> {
    blueprint: &'a Blueprint,
    found: Vec<Finding>,
}

impl Findings<'_> {
    fn push(&mut self, severity: Severity, key: &str, message: &str) {
        let line = self.blueprint.line_of_key(key);
        self.found.push(Finding {
            severity,
            location: format!("{}:{line}", self.blueprint.path.display()),
            key: key.to_string(),
            message: message.to_string(),
        });
    }

    fn error(&mut self, key: &str, message: &str) {
        self.push(Severity::Error, key, message);
    }

    fn warning(&mut self, key: &str, message: &str) {
        self.push(Severity::Warning, key, message);
    }
}

fn fargate_size_ok(cpu: u32, memory: u32) -> bool {
    match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => (1024..=4096).contains(&memory) && memory.is_multiple_of(1024),
        1024 => (2048..=8192).contains(&memory) && memory.is_multiple_of(1024),
        2048 => (4096..=16384).contains(&memory) && memory.is_multiple_of(1024),
        4096 => (8192..=30720).contains(&memory) && memory.is_multiple_of(1024),
        _ => false,
    }
}

/// Whether `text` is one plausible e-mail address: a local part, an `@`,
/// and a dotted domain, no spaces (SNS itself accepts what it can mail).
fn is_email_address(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
    !local.is_empty()
        && labels_ok
        && !domain.contains('@')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::blueprint::BlueprintError;

    const GOOD: &str = r#"
[stack]
name = "ep-test"
region = "us-east-1"

[network]
vpc_cidr = "10.40.0.0/16"
subnets = [
  { name = "a", cidr = "10.40.0.0/24", zone = "us-east-1a" },
  { name = "b", cidr = "10.40.1.0/24", zone = "us-east-1b" },
]
"#;

    fn parse(text: &str) -> Result<Blueprint, BlueprintError> {
        Blueprint::parse(Path::new("bp.toml"), text.to_string())
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(b) => b
                .check()
                .into_iter()
                .filter(|f| f.severity == Severity::Error)
                .map(|f| f.to_string())
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn a_minimal_blueprint_is_valid_with_secure_defaults() -> Result<(), BlueprintError> {
        let b = parse(GOOD)?;
        assert_eq!(b.check(), vec![]);
        assert!(b.spec.table.point_in_time_recovery);
        assert_eq!(
            b.bucket_name("123456789012"),
            "ep-test-raw-events-123456789012-us-east-1"
        );
        assert_eq!(b.table_name(), "ep-test-events-hot");
        assert_eq!(
            b.services()[0].path_patterns,
            vec!["/events*", "/v1/events*", "/openapi.json"]
        );
        Ok(())
    }

    #[test]
    fn unknown_keys_are_rejected_with_file_line_and_key() {
        let text = GOOD.replace(
            "region = \"us-east-1\"",
            "region = \"us-east-1\"\nregoin = \"x\"",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("bp.toml:5: unknown field `regoin`"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_telemetry_endpoint_must_be_plain_http_and_a_ratio_a_share() {
        let with = |section: &str| format!("{GOOD}\n[telemetry]\n{section}\n");
        assert_eq!(
            errors(&with(
                "otlp_endpoint = \"http://collector.internal:4318\"\nsample_ratio = 0.5"
            )),
            Vec::<String>::new()
        );
        let https = errors(&with("otlp_endpoint = \"https://otlp.example.com\""));
        assert_eq!(https.len(), 1, "{https:?}");
        assert!(
            https[0].contains("`telemetry.otlp_endpoint`: must be http://HOST[:PORT]"),
            "{https:?}"
        );
        let ratio = errors(&with(
            "otlp_endpoint = \"http://c:4318\"\nsample_ratio = 1.5",
        ));
        assert_eq!(ratio.len(), 1, "{ratio:?}");
        assert!(
            ratio[0].contains("`telemetry.sample_ratio`: must be between 0 and 1"),
            "{ratio:?}"
        );
        let unknown = errors(&with("endpoint = \"http://c:4318\""));
        assert!(
            unknown.iter().any(|e| e.contains("endpoint")),
            "{unknown:?}"
        );
    }

    #[test]
    fn the_alarm_email_must_be_one_address() {
        let with = |email: &str| format!("{GOOD}\n[alarms]\nemail = \"{email}\"\n");
        assert_eq!(errors(&with("oncall@example.com")), Vec::<String>::new());
        for bad in [
            "oncall",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@b@example.com",
            "a@example..com",
        ] {
            let found = errors(&with(bad));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert!(
                found[0].contains("`alarms.email`: must be one e-mail address"),
                "{found:?}"
            );
        }
    }

    #[test]
    fn subnets_outside_the_vpc_or_overlapping_are_errors_at_their_line() {
        let text = GOOD.replace("10.40.1.0/24", "10.41.0.0/24").replace(
            "  { name = \"b\"",
            "  { name = \"c\", cidr = \"10.40.0.128/25\", zone = \"us-east-1a\" },\n  { name = \"b\"",
        );
        let errs = errors(&text);
        assert_eq!(
            errs,
            vec![
                "bp.toml:10: error: `network.subnets[1].cidr`: overlaps network.subnets[0] (10.40.0.0/24)",
                "bp.toml:11: error: `network.subnets[2].cidr`: 10.41.0.0/24 is outside the VPC's 10.40.0.0/16",
            ]
        );
    }

    #[test]
    fn a_tls_only_bucket_behind_a_plain_http_endpoint_is_warned_about() -> Result<(), BlueprintError>
    {
        let on_http = GOOD.replace(
            "region = \"us-east-1\"",
            "region = \"us-east-1\"\nendpoint = \"http://127.0.0.1:5000\"",
        );
        let findings: Vec<String> = parse(&on_http)?
            .check()
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert!(
            findings
                .iter()
                .any(|f| f.contains("warning: `bucket.tls_only`")),
            "{findings:?}"
        );
        let off = format!("{on_http}\n[bucket]\ntls_only = false\n");
        assert!(parse(&off)?.check().is_empty());
        assert!(parse(GOOD)?.check().is_empty());
        Ok(())
    }

    #[test]
    fn one_zone_is_not_enough() {
        let text = GOOD.replace("us-east-1b", "us-east-1a");
        assert_eq!(
            errors(&text),
            vec!["bp.toml:8: error: `network.subnets`: needs at least two subnets in two availability zones (the load balancer requires it)"]
        );
    }

    #[test]
    fn a_path_rule_no_service_answers_is_an_error() {
        let text = format!("{GOOD}\n[services.processor]\npath_patterns = [\"/process*\"]\n");
        assert_eq!(
            errors(&text),
            vec!["bp.toml:14: error: `services.processor.path_patterns`: routes requests to `processor`, which answers no HTTP (it has no port)"]
        );
    }

    #[test]
    fn the_same_path_for_two_services_and_bad_sizes_are_errors() {
        let text = format!(
            "{GOOD}\n[services.graphql]\npath_patterns = [\"/events*\"]\nmemory = 3000\n\n[logs]\nretention_days = 10\n"
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("`services.graphql.memory`"), "{errs:?}");
        assert!(
            errs[1].contains("`/events*` is already routed to `ingest`"),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("bp.toml:18: error: `logs.retention_days`"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_certificate_from_another_region_is_an_error() {
        let text = format!(
            "{GOOD}\n[load_balancer]\ncertificate_arn = \"arn:aws:acm:eu-west-1:123456789012:certificate/abc\"\n"
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("`load_balancer.certificate_arn`")
                && errs[0].contains("eu-west-1")
                && errs[0].contains("us-east-1"),
            "{errs:?}"
        );
        let same = text.replace("eu-west-1", "us-east-1");
        assert_eq!(errors(&same), Vec::<String>::new());
    }

    #[test]
    fn instance_types_name_their_architecture() {
        use crate::image::Architecture::{Amd64, Arm64};
        for (instance_type, want) in [
            ("t3.medium", Some(Amd64)),
            ("m7i.large", Some(Amd64)),
            ("g5.xlarge", Some(Amd64)),
            ("c7a.2xlarge", Some(Amd64)),
            ("t4g.small", Some(Arm64)),
            ("m7gd.large", Some(Arm64)),
            ("c6gn.medium", Some(Arm64)),
            ("im4gn.large", Some(Arm64)),
            ("g5g.xlarge", Some(Arm64)),
            ("a1.large", Some(Arm64)),
            ("t3", None),
            ("T3.medium", None),
            ("t3.", None),
        ] {
            assert_eq!(
                instance_architecture(instance_type),
                want,
                "{instance_type}"
            );
        }
        let text = format!("{GOOD}\n[broker]\ninstance_type = \"large\"\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("`broker.instance_type`"), "{errs:?}");
    }
}
