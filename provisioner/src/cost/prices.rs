//! Unit prices of one region: the shipped table, overlaid with what the
//! Price List API answered (cached on disk for a week).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The shipped table (`provisioner/prices/aws-on-demand.json`).
const SHIPPED: &str = include_str!("../../prices/aws-on-demand.json");

/// How long fetched prices are used before asking the API again.
const CACHE_DAYS: i64 = 7;

/// One region's on-demand prices in USD; `None` where unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionPrices {
    /// Fargate, per vCPU-hour, by CPU architecture (`X86_64`, `ARM64`).
    pub fargate_vcpu_hour: BTreeMap<String, f64>,
    /// Fargate, per GB-hour of memory, by CPU architecture.
    pub fargate_gb_hour: BTreeMap<String, f64>,
    /// EC2 Linux instances, per hour, by instance type.
    pub ec2_hour: BTreeMap<String, f64>,
    /// EBS gp3, per GB-month.
    pub ebs_gp3_gb_month: Option<f64>,
    /// Application load balancer, per hour.
    pub alb_hour: Option<f64>,
    /// Application load balancer, per LCU-hour.
    pub alb_lcu_hour: Option<f64>,
    /// A public IPv4 address, per hour.
    pub public_ipv4_hour: Option<f64>,
    /// A standard-resolution CloudWatch alarm, per month.
    pub alarm_month: Option<f64>,
    /// CloudWatch Logs, per GB ingested.
    pub logs_ingested_gb: Option<f64>,
    /// CloudWatch Logs, per GB-month stored.
    pub logs_stored_gb_month: Option<f64>,
    /// DynamoDB on demand, per million write request units.
    pub dynamodb_million_writes: Option<f64>,
    /// DynamoDB on demand, per million read request units.
    pub dynamodb_million_reads: Option<f64>,
    /// DynamoDB storage, per GB-month.
    pub dynamodb_gb_month: Option<f64>,
    /// DynamoDB point-in-time recovery, per GB-month.
    pub dynamodb_pitr_gb_month: Option<f64>,
    /// S3 Standard, per GB-month.
    pub s3_standard_gb_month: Option<f64>,
    /// S3 Glacier Instant Retrieval, per GB-month.
    pub s3_glacier_ir_gb_month: Option<f64>,
    /// S3 PUT/POST/LIST, per million.
    pub s3_million_puts: Option<f64>,
    /// S3 GET, per million.
    pub s3_million_gets: Option<f64>,
    /// ECR storage, per GB-month.
    pub ecr_gb_month: Option<f64>,
}

impl RegionPrices {
    /// These prices with every price `api` has put over them.
    pub fn overlaid(&self, api: &RegionPrices) -> RegionPrices {
        let mut merged = serde_json::to_value(self).unwrap_or(Value::Null);
        overlay(
            &mut merged,
            serde_json::to_value(api).unwrap_or(Value::Null),
        );
        serde_json::from_value(merged).unwrap_or_else(|_| self.clone())
    }
}

fn overlay(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(base), Value::Object(top)) => {
            for (key, value) in top {
                overlay(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (_, Value::Null) => {}
        (base, top) => *base = top,
    }
}

/// The shipped table.
#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    /// When its prices were compiled.
    pub date: NaiveDate,
    /// Prices by region.
    pub regions: BTreeMap<String, RegionPrices>,
}

impl Table {
    /// The table shipped in the binary.
    pub fn shipped() -> Table {
        // Checked by a test; an empty table would only make every price unknown.
        serde_json::from_str(SHIPPED).unwrap_or(Table {
            date: NaiveDate::default(),
            regions: BTreeMap::new(),
        })
    }
}

/// Where the prices came from, as the estimate says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// `price-list-api`, `cache` or `shipped-table`.
    pub kind: &'static str,
    /// When: the day fetched, or the table's date.
    pub date: NaiveDate,
    /// Why the API's prices are not used, when they are not.
    pub note: Option<String>,
}

/// Prices fetched from the API for one region, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fetched {
    /// The day they were fetched.
    pub date: NaiveDate,
    /// What the API answered.
    pub prices: RegionPrices,
}

/// The cache file of `region` under `dir`.
pub fn cache_path(dir: &Path, region: &str) -> PathBuf {
    dir.join(".prices").join(format!("{region}.json"))
}

/// Fetched prices of `region` no older than a week.
pub fn cached(dir: &Path, region: &str) -> Option<Fetched> {
    let text = std::fs::read_to_string(cache_path(dir, region)).ok()?;
    let fetched: Fetched = serde_json::from_str(&text).ok()?;
    let age = Utc::now().date_naive() - fetched.date;
    (age.num_days() <= CACHE_DAYS).then_some(fetched)
}

/// Keeps `fetched` for the next plans (a failure to write only costs a fetch).
pub fn remember(dir: &Path, region: &str, fetched: &Fetched) {
    let path = cache_path(dir, region);
    if let (Some(parent), Ok(text)) = (path.parent(), serde_json::to_string_pretty(fetched)) {
        let _ = std::fs::create_dir_all(parent).and_then(|_| std::fs::write(&path, text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_prices_everything_in_each_region() {
        let table: Table = serde_json::from_str(SHIPPED).unwrap_or_else(|e| panic!("{e}"));
        assert!(table.regions.len() >= 4);
        for (region, prices) in &table.regions {
            let json = serde_json::to_value(prices).unwrap_or(Value::Null);
            let fields = json.as_object().cloned().unwrap_or_default();
            for (field, value) in fields {
                let priced = match &value {
                    Value::Number(n) => n.as_f64().is_some_and(|v| v > 0.0),
                    Value::Object(map) => !map.is_empty(),
                    _ => false,
                };
                assert!(priced, "{region}: {field} = {value}");
            }
            for arch in ["X86_64", "ARM64"] {
                assert!(
                    prices.fargate_vcpu_hour.contains_key(arch),
                    "{region} {arch}"
                );
                assert!(prices.fargate_gb_hour.contains_key(arch), "{region} {arch}");
            }
        }
    }

    #[test]
    fn fetched_prices_cover_the_table_and_keep_what_they_lack() {
        let table = Table::shipped();
        let shipped = table.regions.get("eu-west-1").cloned().unwrap_or_default();
        let api = RegionPrices {
            alb_hour: Some(0.03),
            fargate_vcpu_hour: [("X86_64".to_string(), 0.05)].into(),
            ..RegionPrices::default()
        };
        let merged = shipped.overlaid(&api);
        assert_eq!(merged.alb_hour, Some(0.03));
        assert_eq!(merged.fargate_vcpu_hour.get("X86_64"), Some(&0.05));
        assert_eq!(
            merged.fargate_vcpu_hour.get("ARM64"),
            shipped.fargate_vcpu_hour.get("ARM64")
        );
        assert_eq!(merged.s3_million_puts, shipped.s3_million_puts);
    }

    #[test]
    fn the_cache_is_used_for_a_week() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let today = Utc::now().date_naive();
        let prices = RegionPrices {
            alb_hour: Some(0.03),
            ..RegionPrices::default()
        };
        remember(
            dir.path(),
            "eu-west-1",
            &Fetched {
                date: today,
                prices,
            },
        );
        assert_eq!(
            cached(dir.path(), "eu-west-1").map(|f| f.prices.alb_hour),
            Some(Some(0.03))
        );
        assert!(cached(dir.path(), "us-east-1").is_none());
        let old = today - chrono::TimeDelta::days(CACHE_DAYS + 1);
        remember(
            dir.path(),
            "eu-west-1",
            &Fetched {
                date: old,
                prices: RegionPrices::default(),
            },
        );
        assert!(cached(dir.path(), "eu-west-1").is_none());
    }
}
