//! What a stack costs a month, and what a plan changes in it: the fixed
//! part priced per resource (Fargate tasks, the broker's instance and
//! volume, the load balancer's hours, public IPv4 addresses, alarms), the
//! traffic-driven part as unit prices (DynamoDB and S3 requests and
//! storage, log ingestion and storage, load balancer capacity units).
//! The arithmetic is pure; [`prices_for`] finds the prices.

pub mod price_list;
pub mod prices;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::model::{Kind, Props};
use prices::{RegionPrices, Source, Table};

/// Hours in a month, as AWS's pricing pages count them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The estimate `plan` ends with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The region priced.
    pub region: String,
    /// Where the prices came from.
    pub prices: Source,
    /// The fixed monthly cost, per resource.
    pub lines: Vec<Line>,
    /// The stack's fixed monthly cost once the plan is applied, USD.
    pub monthly_usd: f64,
    /// What the plan changes in it, USD.
    pub change_usd: f64,
    /// Prices of what traffic decides.
    pub usage: Vec<UsagePrice>,
}

/// One resource's fixed monthly cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// What is priced (an address, or a group of them).
    pub item: String,
    /// How much of what, in words.
    pub quantity: String,
    /// USD a month after the plan (`None`: no price known for it).
    pub monthly_usd: Option<f64>,
    /// USD a month now, as the state records it.
    pub before_usd: Option<f64>,
}

/// A price of usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsagePrice {
    /// The resource it applies to.
    pub item: String,
    /// What is counted.
    pub unit: String,
    /// USD per unit (`None`: not known).
    pub usd: Option<f64>,
}

/// A resource as the estimate reads it: its kind, its name in the address
/// and its properties (desired, or as recorded).
pub type Priced<'a> = (Kind, &'a str, &'a Props);

/// The estimate of `after` (the desired resources) against `before` (the
/// state's), at `prices` for `region`.
pub fn estimate(
    region: &str,
    prices: &RegionPrices,
    source: Source,
    before: &[Priced<'_>],
    after: &[Priced<'_>],
) -> Estimate {
    let before_lines = fixed(prices, before);
    let after_lines = fixed(prices, after);
    let mut items: Vec<String> = after_lines.keys().cloned().collect();
    items.extend(
        before_lines
            .keys()
            .filter(|k| !after_lines.contains_key(*k))
            .cloned(),
    );
    let lines: Vec<Line> = items
        .into_iter()
        .map(|item| {
            let now = before_lines.get(&item);
            let next = after_lines.get(&item);
            Line {
                quantity: next.or(now).map(|(q, _)| q.clone()).unwrap_or_default(),
                monthly_usd: next.map_or(Some(0.0), |(_, usd)| *usd),
                before_usd: now.map_or(Some(0.0), |(_, usd)| *usd),
                item,
            }
        })
        .collect();
    let monthly_usd = round(lines.iter().filter_map(|l| l.monthly_usd).sum());
    let before_usd: f64 = lines.iter().filter_map(|l| l.before_usd).sum();
    Estimate {
        region: region.to_string(),
        prices: source,
        change_usd: round(monthly_usd - before_usd),
        monthly_usd,
        lines,
        usage: usage(prices, after),
    }
}

fn round(usd: f64) -> f64 {
    (usd * 100.0).round() / 100.0
}

fn number(props: &Props, key: &str) -> Option<f64> {
    props.get(key).and_then(Value::as_f64)
}

fn text<'a>(props: &'a Props, key: &str) -> Option<&'a str> {
    props.get(key).and_then(Value::as_str)
}

/// The fixed monthly cost per item: (quantity in words, USD or unknown).
fn fixed(
    prices: &RegionPrices,
    resources: &[Priced<'_>],
) -> BTreeMap<String, (String, Option<f64>)> {
    let mut lines = BTreeMap::new();
    let of_kind = |kind: Kind| resources.iter().filter(move |(k, _, _)| *k == kind);
    let tasks_by_name: BTreeMap<&str, &Props> = of_kind(Kind::TaskDefinition)
        .map(|(_, name, props)| (*name, *props))
        .collect();
    let mut public_addresses = 0.0;
    for (_, name, service) in of_kind(Kind::EcsService) {
        let count = number(service, "desired_count").unwrap_or(0.0);
        if service.get("assign_public_ip") == Some(&Value::Bool(true)) {
            public_addresses += count;
        }
        let Some(task) = tasks_by_name.get(name) else {
            continue;
        };
        let vcpu = number(task, "cpu").unwrap_or(0.0) / 1024.0;
        let gb = number(task, "memory").unwrap_or(0.0) / 1024.0;
        let arch = text(task, "cpu_architecture").unwrap_or("X86_64");
        let usd = prices
            .fargate_vcpu_hour
            .get(arch)
            .zip(prices.fargate_gb_hour.get(arch))
            .map(|(per_vcpu, per_gb)| count * (vcpu * per_vcpu + gb * per_gb) * HOURS_PER_MONTH);
        let quantity = format!("{count} task(s) x {vcpu} vCPU, {gb} GB ({arch})");
        lines.insert(format!("ecs_service.{name}"), (quantity, usd));
    }
    for (_, name, instance) in of_kind(Kind::Instance) {
        public_addresses += 1.0;
        let instance_type = text(instance, "instance_type").unwrap_or("?");
        let hourly = prices.ec2_hour.get(instance_type);
        lines.insert(
            format!("instance.{name}"),
            (
                format!("{instance_type}, {HOURS_PER_MONTH} h"),
                hourly.map(|h| h * HOURS_PER_MONTH),
            ),
        );
        let gib = number(instance, "root_volume_gib").unwrap_or(0.0);
        lines.insert(
            format!("instance.{name} volume"),
            (
                format!("{gib} GB gp3"),
                prices.ebs_gp3_gb_month.map(|p| p * gib),
            ),
        );
    }
    for (_, name, balancer) in of_kind(Kind::LoadBalancer) {
        // An internet-facing load balancer has a public address in each subnet.
        if text(balancer, "scheme") == Some("internet-facing") {
            let subnets = balancer.get("subnet_ids").and_then(Value::as_array);
            public_addresses += subnets.map_or(0, Vec::len) as f64;
        }
        lines.insert(
            format!("load_balancer.{name}"),
            (
                format!("{HOURS_PER_MONTH} h"),
                prices.alb_hour.map(|h| h * HOURS_PER_MONTH),
            ),
        );
    }
    if public_addresses > 0.0 {
        lines.insert(
            "public IPv4 addresses".to_string(),
            (
                format!("{public_addresses} (tasks, broker, load balancer nodes)"),
                prices
                    .public_ipv4_hour
                    .map(|h| h * public_addresses * HOURS_PER_MONTH),
            ),
        );
    }
    let alarms = of_kind(Kind::Alarm).count() as f64;
    if alarms > 0.0 {
        lines.insert(
            "alarm.*".to_string(),
            (
                format!("{alarms} alarms"),
                prices.alarm_month.map(|p| p * alarms),
            ),
        );
    }
    lines
        .into_iter()
        .map(|(item, (quantity, usd))| (item, (quantity, usd.map(round))))
        .collect()
}

/// The unit prices of what traffic decides, for the resources there are.
fn usage(prices: &RegionPrices, resources: &[Priced<'_>]) -> Vec<UsagePrice> {
    let mut out = Vec::new();
    let mut add = |item: String, unit: &str, usd: Option<f64>| {
        out.push(UsagePrice {
            item,
            unit: unit.to_string(),
            usd,
        })
    };
    let mut has_logs = false;
    let mut has_repository = false;
    for (kind, name, props) in resources {
        match kind {
            Kind::LoadBalancer => add(
                format!("load_balancer.{name}"),
                "LCU-hour",
                prices.alb_lcu_hour,
            ),
            Kind::DynamodbTable => {
                let item = format!("dynamodb_table.{name}");
                add(
                    item.clone(),
                    "million writes (1 KB)",
                    prices.dynamodb_million_writes,
                );
                add(
                    item.clone(),
                    "million reads (4 KB)",
                    prices.dynamodb_million_reads,
                );
                add(item.clone(), "GB-month stored", prices.dynamodb_gb_month);
                if props.get("point_in_time_recovery") == Some(&Value::Bool(true)) {
                    add(
                        item,
                        "GB-month of point-in-time recovery",
                        prices.dynamodb_pitr_gb_month,
                    );
                }
            }
            Kind::S3Bucket => {
                let item = format!("s3_bucket.{name}");
                add(
                    item.clone(),
                    "GB-month in Standard",
                    prices.s3_standard_gb_month,
                );
                if text(props, "archive_storage_class") == Some("GLACIER_IR") {
                    add(
                        item.clone(),
                        "GB-month in Glacier Instant Retrieval",
                        prices.s3_glacier_ir_gb_month,
                    );
                }
                add(item.clone(), "million PUT requests", prices.s3_million_puts);
                add(item, "million GET requests", prices.s3_million_gets);
            }
            Kind::LogGroup => has_logs = true,
            Kind::EcrRepository => has_repository = true,
            _ => {}
        }
    }
    if has_logs {
        add("log_group.*".into(), "GB ingested", prices.logs_ingested_gb);
        add(
            "log_group.*".into(),
            "GB-month stored",
            prices.logs_stored_gb_month,
        );
    }
    if has_repository {
        add(
            "ecr_repository.*".into(),
            "GB-month of images",
            prices.ecr_gb_month,
        );
    }
    out
}

impl Estimate {
    /// The lines `plan` ends with.
    pub fn render(&self) -> String {
        let usd = |v: Option<f64>| v.map_or("unknown".to_string(), |v| format!("{v:.2}"));
        let mut out = String::new();
        let source = match self.prices.kind {
            "price-list-api" => format!("AWS Price List API, fetched {}", self.prices.date),
            "cache" => format!("AWS Price List API, fetched {} (cached)", self.prices.date),
            _ => format!("shipped price table of {}", self.prices.date),
        };
        let _ = writeln!(
            out,
            "\nEstimated monthly cost, {} (USD, on demand; prices: {source})",
            self.region
        );
        if let Some(note) = &self.prices.note {
            let _ = writeln!(out, "  ({note})");
        }
        let _ = writeln!(
            out,
            "  {:<28} {:<44} {:>9} {:>9}",
            "resource", "quantity", "monthly", "change"
        );
        for line in &self.lines {
            let change = match (line.monthly_usd, line.before_usd) {
                (Some(after), Some(before)) => format!("{:+.2}", after - before),
                _ => "?".to_string(),
            };
            let _ = writeln!(
                out,
                "  {:<28} {:<44} {:>9} {:>9}",
                line.item,
                line.quantity,
                usd(line.monthly_usd),
                change
            );
        }
        let unknown = self.lines.iter().any(|l| l.monthly_usd.is_none());
        let _ = writeln!(
            out,
            "  {:<28} {:<44} {:>9} {:>+9.2}",
            if unknown {
                "Total (of known prices)"
            } else {
                "Total"
            },
            "",
            format!("{:.2}", self.monthly_usd),
            self.change_usd
        );
        let _ = writeln!(out, "  Plus what traffic decides:");
        for price in &self.usage {
            let _ = writeln!(
                out,
                "    {:<26} {:>9} per {}",
                price.item,
                price.usd.map_or("unknown".to_string(), unit_price),
                price.unit
            );
        }
        out
    }
}

/// A unit price with the decimals it has (at least 2, at most 4).
fn unit_price(usd: f64) -> String {
    let text = format!("{usd:.4}");
    let trimmed = text.trim_end_matches('0');
    match trimmed.split_once('.') {
        Some((_, decimals)) if decimals.len() < 2 => format!("{usd:.2}"),
        _ => trimmed.to_string(),
    }
}

/// The prices of `region`: fetched or cached from the Price List API when
/// `ask_api` (none is asked for an emulator's stack), else, or for what
/// the API did not answer, the shipped table.
pub async fn prices_for(
    config: &aws_config::SdkConfig,
    region: &str,
    instance_type: &str,
    cache_dir: &Path,
    ask_api: bool,
) -> (RegionPrices, Source) {
    let table = Table::shipped();
    let shipped = table.regions.get(region).cloned().unwrap_or_default();
    let from_table = |note: String| {
        let note = if table.regions.contains_key(region) {
            note
        } else {
            format!("{note}; the shipped table has no prices for {region}")
        };
        let source = Source {
            kind: "shipped-table",
            date: table.date,
            note: Some(note),
        };
        (shipped.clone(), source)
    };
    if !ask_api {
        return from_table(
            "the stack's endpoint is an emulator, which has no Price List API".into(),
        );
    }
    if let Some(cached) =
        prices::cached(cache_dir, region).filter(|c| c.prices.ec2_hour.contains_key(instance_type))
    {
        let source = Source {
            kind: "cache",
            date: cached.date,
            note: None,
        };
        return (shipped.overlaid(&cached.prices), source);
    }
    // The API answers in us-east-1 for every region.
    let pricing = aws_sdk_pricing::config::Builder::from(config)
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let client = aws_sdk_pricing::Client::from_conf(pricing);
    let fetched = tokio::time::timeout(
        price_list::TIMEOUT,
        price_list::fetch(&client, region, instance_type),
    )
    .await;
    match fetched {
        Ok(Ok(api)) => {
            let date = chrono::Utc::now().date_naive();
            prices::remember(
                cache_dir,
                region,
                &prices::Fetched {
                    date,
                    prices: api.clone(),
                },
            );
            let source = Source {
                kind: "price-list-api",
                date,
                note: None,
            };
            (shipped.overlaid(&api), source)
        }
        Ok(Err(e)) => from_table(format!("the Price List API did not answer: {e:#}")),
        Err(_) => from_table(format!(
            "the Price List API did not answer within {} s",
            price_list::TIMEOUT.as_secs()
        )),
    }
}
