//! The Price List API path of the estimate, against a stand-in endpoint on
//! loopback (no emulator serves the Pricing API): GetProducts answers
//! built from a recorded document's shape fill the prices, the answer is
//! cached for the next plan, and an endpoint that fails leaves the shipped
//! table in place with the reason.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use provisioner::cost::prices_for;
use serde_json::{json, Value};

/// A PriceList document as GetProducts returns it (shape of a recorded one).
fn document(service: &str, usage_type: &str, unit: &str, usd: &str) -> String {
    json!({
        "product": {"productFamily": "Compute", "attributes": {
            "regionCode": "eu-west-1", "servicecode": service, "usagetype": usage_type
        }, "sku": "SKU"},
        "serviceCode": service,
        "terms": {"OnDemand": {"SKU.JRTCKXETXF": {"priceDimensions": {"SKU.JRTCKXETXF.6YS6EN2CT7": {
            "unit": unit, "endRange": "Inf", "beginRange": "0", "pricePerUnit": {"USD": usd}
        }}}}},
        "version": "20261201000000"
    })
    .to_string()
}

/// What the stand-in answers to one GetProducts request.
fn answer(request: &Value) -> Vec<String> {
    let filter = |field: &str| {
        request["Filters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["Field"] == field)
            .and_then(|f| f["Value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(filter("regionCode"), "eu-west-1", "{request}");
    match request["ServiceCode"].as_str() {
        Some("AmazonECS") => vec![
            document(
                "AmazonECS",
                "EUW1-Fargate-vCPU-Hours:perCPU",
                "hours",
                "0.0500000000",
            ),
            document(
                "AmazonECS",
                "EUW1-Fargate-GB-Hours",
                "hours",
                "0.0060000000",
            ),
            document(
                "AmazonECS",
                "EUW1-Fargate-Windows-vCPU-Hours:perCPU",
                "hours",
                "0.0900000000",
            ),
        ],
        Some("AmazonEC2") if filter("volumeApiName") == "gp3" => {
            vec![document(
                "AmazonEC2",
                "EU-EBS:VolumeUsage.gp3",
                "GB-Mo",
                "0.0900000000",
            )]
        }
        Some("AmazonEC2") => {
            assert_eq!(filter("instanceType"), "t3.medium");
            assert_eq!(filter("operatingSystem"), "Linux");
            vec![document(
                "AmazonEC2",
                "EU-BoxUsage:t3.medium",
                "Hrs",
                "0.0500000000",
            )]
        }
        Some("AWSELB") => vec![
            document("AWSELB", "EU-LoadBalancerUsage", "Hrs", "0.0300000000"),
            document("AWSELB", "EU-LCUUsage", "LCU-Hrs", "0.0090000000"),
        ],
        other => panic!("unexpected service {other:?}"),
    }
}

/// Starts the stand-in; `fail` makes it answer every call with a 500.
async fn stand_in(fail: bool) -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/",
        post(move |headers: HeaderMap, body: String| {
            let calls = counted.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
                assert_eq!(target, Some("AWSPriceListService.GetProducts"));
                let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let status = if fail { 500 } else { 200 };
                let body = if fail {
                    json!({"__type": "InternalErrorException", "message": "down"})
                } else {
                    json!({"FormatVersion": "aws_v1", "PriceList": answer(&request)})
                };
                (
                    axum::http::StatusCode::from_u16(status).unwrap_or_default(),
                    [("content-type", "application/x-amz-json-1.1")],
                    body.to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{address}"), calls))
}

async fn config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await
}

#[tokio::test]
async fn a_stand_in_price_list_api_fills_the_prices_and_is_cached() -> anyhow::Result<()> {
    let (endpoint, calls) = stand_in(false).await?;
    let dir = tempfile::tempdir()?;
    let config = config(&endpoint).await;
    let (prices, source) = prices_for(&config, "eu-west-1", "t3.medium", dir.path(), true).await;
    assert_eq!(source.kind, "price-list-api", "{source:?}");
    assert_eq!(prices.fargate_vcpu_hour.get("X86_64"), Some(&0.05));
    assert_eq!(prices.fargate_gb_hour.get("X86_64"), Some(&0.006));
    assert_eq!(prices.ec2_hour.get("t3.medium"), Some(&0.05));
    assert_eq!(prices.ebs_gp3_gb_month, Some(0.09));
    assert_eq!(prices.alb_hour, Some(0.03));
    assert_eq!(prices.alb_lcu_hour, Some(0.009));
    // What the API was not asked keeps the shipped table's price.
    assert_eq!(prices.fargate_vcpu_hour.get("ARM64"), Some(&0.03238));
    assert_eq!(prices.s3_million_puts, Some(5.0));
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    let (again, source) = prices_for(&config, "eu-west-1", "t3.medium", dir.path(), true).await;
    assert_eq!(source.kind, "cache");
    assert_eq!(again, prices);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "the cache answered");
    Ok(())
}

#[tokio::test]
async fn a_failing_price_list_api_leaves_the_shipped_table_and_says_why() -> anyhow::Result<()> {
    let (endpoint, _) = stand_in(true).await?;
    let dir = tempfile::tempdir()?;
    let config = config(&endpoint).await;
    let (prices, source) = prices_for(&config, "eu-west-1", "t3.medium", dir.path(), true).await;
    assert_eq!(source.kind, "shipped-table");
    let note = source.note.unwrap_or_default();
    assert!(note.contains("the Price List API did not answer"), "{note}");
    assert_eq!(prices.ec2_hour.get("t3.medium"), Some(&0.0456));
    assert!(!dir.path().join(".prices").exists(), "nothing cached");
    Ok(())
}
