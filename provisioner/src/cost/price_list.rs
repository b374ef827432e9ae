//! The AWS Price List API (GetProducts): the prices that make most of a
//! stack's fixed cost (Fargate, the broker's instance type and volume, the
//! load balancer), for one region. The rest comes from the shipped table.

use std::time::Duration;

use aws_sdk_pricing::types::{Filter, FilterType};
use serde_json::Value;

use super::prices::RegionPrices;
use crate::cloud::support::sent;

/// How long the whole lookup may take before the table is used instead.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// One on-demand price of a product, from one `PriceList` document.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// The product's usage type (`EUW1-Fargate-vCPU-Hours:perCPU`).
    pub usage_type: String,
    /// The unit priced (`hours`, `Hrs`, `GB-Mo`, `LCU-Hrs`).
    pub unit: String,
    /// USD per unit.
    pub usd: f64,
}

/// The on-demand price of the product in `document` (a `PriceList` entry,
/// itself JSON text): its first price dimension starting at 0.
pub fn parse(document: &str) -> Option<Price> {
    let doc: Value = serde_json::from_str(document).ok()?;
    let usage_type = doc["product"]["attributes"]["usagetype"]
        .as_str()?
        .to_string();
    let terms = doc["terms"]["OnDemand"].as_object()?;
    let dimension = terms
        .values()
        .filter_map(|term| term["priceDimensions"].as_object())
        .flat_map(|dimensions| dimensions.values())
        .find(|d| d["beginRange"].as_str().is_none_or(|b| b == "0"))?;
    let usd = dimension["pricePerUnit"]["USD"].as_str()?.parse().ok()?;
    Some(Price {
        usage_type,
        unit: dimension["unit"].as_str().unwrap_or_default().to_string(),
        usd,
    })
}

/// Fills `into` from the products priced: Fargate by architecture, the
/// load balancer's hours and LCUs.
pub fn sort_into(prices: &[Price], into: &mut RegionPrices) {
    for price in prices {
        let usage = price.usage_type.as_str();
        let put = |map: &mut std::collections::BTreeMap<String, f64>, arch: &str| {
            map.insert(arch.to_string(), price.usd);
        };
        if usage.ends_with("-Fargate-vCPU-Hours:perCPU") {
            put(&mut into.fargate_vcpu_hour, "X86_64");
        } else if usage.ends_with("-Fargate-ARM-vCPU-Hours:perCPU") {
            put(&mut into.fargate_vcpu_hour, "ARM64");
        } else if usage.ends_with("-Fargate-GB-Hours") {
            put(&mut into.fargate_gb_hour, "X86_64");
        } else if usage.ends_with("-Fargate-ARM-GB-Hours") {
            put(&mut into.fargate_gb_hour, "ARM64");
        } else if usage.ends_with("LoadBalancerUsage") {
            into.alb_hour = Some(price.usd);
        } else if usage.ends_with("LCUUsage") {
            into.alb_lcu_hour = Some(price.usd);
        }
    }
}

/// Asks the API for `region`'s prices of Fargate, `instance_type`, gp3
/// and the application load balancer.
pub async fn fetch(
    client: &aws_sdk_pricing::Client,
    region: &str,
    instance_type: &str,
) -> anyhow::Result<RegionPrices> {
    let in_region = [("regionCode", region)];
    let instance_filters = [
        ("regionCode", region),
        ("instanceType", instance_type),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
        ("licenseModel", "No License required"),
    ];
    let volume_filters = [
        ("regionCode", region),
        ("volumeApiName", "gp3"),
        ("productFamily", "Storage"),
    ];
    let balancer_filters = [
        ("regionCode", region),
        ("productFamily", "Load Balancer-Application"),
    ];
    let (fargate, instance, volume, balancer) = tokio::try_join!(
        products(client, "AmazonECS", &in_region),
        products(client, "AmazonEC2", &instance_filters),
        products(client, "AmazonEC2", &volume_filters),
        products(client, "AWSELB", &balancer_filters),
    )?;
    let mut prices = RegionPrices::default();
    sort_into(&fargate, &mut prices);
    sort_into(&balancer, &mut prices);
    if let Some(hourly) = instance.iter().find(|p| p.usd > 0.0) {
        prices
            .ec2_hour
            .insert(instance_type.to_string(), hourly.usd);
    }
    prices.ebs_gp3_gb_month = volume.iter().find(|p| p.unit == "GB-Mo").map(|p| p.usd);
    Ok(prices)
}

/// Every product of `service` matching `filters` that has an on-demand price.
async fn products(
    client: &aws_sdk_pricing::Client,
    service: &str,
    filters: &[(&str, &str)],
) -> anyhow::Result<Vec<Price>> {
    let filters = filters
        .iter()
        .map(|(field, value)| {
            Filter::builder()
                .r#type(FilterType::TermMatch)
                .field(*field)
                .value(*value)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = client
        .get_products()
        .service_code(service)
        .set_filters(Some(filters))
        .format_version("aws_v1");
    let pages = request.into_paginator().send();
    let pages: Vec<_> = sent("GetProducts", pages.try_collect()).await?;
    Ok(pages
        .iter()
        .flat_map(|page| page.price_list())
        .filter_map(|document| parse(document))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GetProducts `PriceList` entry as AWS answered it (AmazonECS,
    /// us-east-1, publication 2022-11-21), from a public test fixture.
    const RECORDED_FARGATE_VCPU: &str = r#"{"product":{"productFamily":"Compute","attributes":{"regionCode":"us-east-1","servicecode":"AmazonECS","tenancy":"Shared","usagetype":"USE1-Fargate-vCPU-Hours:perCPU","locationType":"AWS Region","location":"US East (N. Virginia)","servicename":"Amazon Elastic Container Service","cputype":"perCPU","operation":""},"sku":"8CESGAFWKAJ98PME"},"serviceCode":"AmazonECS","terms":{"OnDemand":{"8CESGAFWKAJ98PME.JRTCKXETXF":{"priceDimensions":{"8CESGAFWKAJ98PME.JRTCKXETXF.6YS6EN2CT7":{"unit":"hours","endRange":"Inf","description":"AWS Fargate - vCPU - US East (N.Virginia)","appliesTo":[],"rateCode":"8CESGAFWKAJ98PME.JRTCKXETXF.6YS6EN2CT7","beginRange":"0","pricePerUnit":{"USD":"0.0404800000"}}},"sku":"8CESGAFWKAJ98PME","effectiveDate":"2022-11-01T00:00:00Z","offerTermCode":"JRTCKXETXF","termAttributes":{}}}},"version":"20221121182130","publicationDate":"2022-11-21T18:21:30Z"}"#;

    #[test]
    fn a_recorded_price_list_document_gives_its_on_demand_price() {
        let price = parse(RECORDED_FARGATE_VCPU);
        assert_eq!(
            price,
            Some(Price {
                usage_type: "USE1-Fargate-vCPU-Hours:perCPU".into(),
                unit: "hours".into(),
                usd: 0.04048,
            })
        );
        let mut prices = RegionPrices::default();
        sort_into(&price.into_iter().collect::<Vec<_>>(), &mut prices);
        assert_eq!(prices.fargate_vcpu_hour.get("X86_64"), Some(&0.04048));
        assert!(prices.fargate_gb_hour.is_empty());
    }

    #[test]
    fn usage_types_are_told_apart_by_their_ends() {
        let price = |usage: &str, usd: f64| Price {
            usage_type: usage.into(),
            unit: "Hrs".into(),
            usd,
        };
        let mut prices = RegionPrices::default();
        sort_into(
            &[
                price("EUW1-Fargate-Windows-vCPU-Hours:perCPU", 9.0),
                price("EUW1-Fargate-ARM-vCPU-Hours:perCPU", 0.03238),
                price("EUW1-Fargate-GB-Hours", 0.004445),
                price("EUW1-Fargate-EphemeralStorage-GB-Hours", 9.0),
                price("EU-LoadBalancerUsage", 0.0252),
                price("EU-LCUUsage", 0.008),
            ],
            &mut prices,
        );
        assert_eq!(prices.fargate_vcpu_hour.len(), 1);
        assert_eq!(prices.fargate_vcpu_hour.get("ARM64"), Some(&0.03238));
        assert_eq!(prices.fargate_gb_hour.get("X86_64"), Some(&0.004445));
        assert_eq!(prices.alb_hour, Some(0.0252));
        assert_eq!(prices.alb_lcu_hour, Some(0.008));
    }

    #[test]
    fn documents_without_an_on_demand_price_are_skipped() {
        assert_eq!(parse("not json"), None);
        assert_eq!(
            parse(r#"{"product":{"attributes":{"usagetype":"X"}},"terms":{}}"#),
            None
        );
    }
}
