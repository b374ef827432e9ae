//! An SNS topic the alarms notify, with the e-mail addresses subscribed to
//! it. Its id and `arn` output are its ARN.
//!
//! SNS mails each new address a link, and the subscription is pending until
//! it is followed. A pending subscription cannot be removed (SNS deletes it
//! itself after 48 hours), so an address taken out of the blueprint before
//! it confirmed shows as a change until then.

use async_trait::async_trait;
use aws_sdk_sns::types;
use serde::{Deserialize, Serialize};

use crate::cloud::resource::{ResourceKind, Update};
use crate::cloud::support::{
    absent, deleted, from_props, in_stack_ids, look_at, name_and_arn, not_in_place, ours_id,
    prop_tags, replace_tags, sdk_tags, sent, sent_ok, tags_value, to_props, Tags,
};
use crate::cloud::{Cloud, CloudError, Observed, Result};
use crate::model::Props;

/// What SNS answers for a topic that is not there.
const GONE: &[&str] = &["NotFound", "NotFoundException"];

/// The `SubscriptionArn` SNS lists for a subscription not yet confirmed.
const PENDING: &str = "PendingConfirmation";

/// A topic's attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicProps {
    /// Its name (the ARN's last part).
    pub name: String,
    /// The addresses subscribed by e-mail, sorted.
    pub emails: Vec<String>,
}

/// An SNS topic with e-mail subscriptions.
pub struct SnsTopic;

#[async_trait]
impl ResourceKind for SnsTopic {
    fn updatable(&self) -> &'static [&'static str] {
        &["emails", "tags"]
    }

    // After the alarms that notify it.
    fn destroy_rank(&self) -> u8 {
        1
    }

    async fn find(&self, cloud: &Cloud, address: &str, props: &Props) -> Result<Option<String>> {
        let p: TopicProps = from_props(props)?;
        let suffix = format!(":{}", p.name);
        let arn = topics(cloud)
            .await?
            .into_iter()
            .find(|a| a.ends_with(&suffix));
        let tags = look_at(arn.clone(), |arn| async move { tags_of(cloud, &arn).await }).await?;
        Ok(arn.and_then(|arn| ours_id(cloud, address, tags, arn)))
    }

    async fn read(&self, cloud: &Cloud, id: &str) -> Result<Option<Observed>> {
        let request = cloud.sns.get_topic_attributes().topic_arn(id);
        if absent(sent("GetTopicAttributes", request.send()).await, GONE)?.is_none() {
            return Ok(None);
        }
        let mut emails: Vec<String> = email_subscriptions(cloud, id)
            .await?
            .into_iter()
            .map(|(endpoint, _)| endpoint)
            .collect();
        emails.sort();
        emails.dedup();
        let name = id.rsplit(':').next().unwrap_or(id);
        let typed = TopicProps {
            name: name.to_string(),
            emails,
        };
        let mut props = to_props(&typed);
        props.insert("tags".into(), tags_value(tags_of(cloud, id).await?));
        Ok(Some(Observed {
            props,
            outputs: name_and_arn(name, id),
        }))
    }

    async fn create(&self, cloud: &Cloud, _address: &str, props: &Props) -> Result<String> {
        let p: TopicProps = from_props(props)?;
        let tags = sdk_tags(prop_tags(props)?, |k, v| {
            types::Tag::builder().key(k).value(v).build()
        })?;
        // CreateTopic answers the existing topic's ARN for the same name.
        let request = cloud.sns.create_topic().name(&p.name);
        let out = sent("CreateTopic", request.set_tags(Some(tags)).send()).await?;
        let arn = out
            .topic_arn()
            .ok_or_else(|| CloudError::invalid("CreateTopic", "no topic ARN in the answer"))?;
        subscribe_exactly(cloud, arn, &p.emails).await?;
        Ok(arn.to_string())
    }

    async fn update(&self, cloud: &Cloud, change: Update<'_>) -> Result<()> {
        let Update { id, props, changed } = change;
        let p: TopicProps = from_props(props)?;
        for attribute in changed {
            match attribute.as_str() {
                "emails" => subscribe_exactly(cloud, id, &p.emails).await?,
                "tags" => retag(cloud, id, props).await?,
                other => return Err(not_in_place("SetTopicAttributes", other)),
            }
        }
        Ok(())
    }

    async fn delete(&self, cloud: &Cloud, id: &str) -> Result<()> {
        // Deleting a topic deletes its subscriptions.
        let request = cloud.sns.delete_topic().topic_arn(id);
        deleted("DeleteTopic", GONE, request.send()).await
    }

    async fn list_tagged(&self, cloud: &Cloud) -> Result<Vec<String>> {
        // Every topic the stack makes is named after it.
        let prefix = format!(":{}-", cloud.stack);
        let candidates = topics(cloud)
            .await?
            .into_iter()
            .filter(|arn| arn.contains(&prefix))
            .map(|arn| (arn.clone(), arn));
        in_stack_ids(cloud, candidates, |arn| async move {
            absent(tags_of(cloud, &arn).await, GONE)
        })
        .await
    }
}

/// The ARN of every topic in the region.
async fn topics(cloud: &Cloud) -> Result<Vec<String>> {
    let items = cloud.sns.list_topics().into_paginator().items().send();
    let all: Vec<types::Topic> = sent("ListTopics", items.try_collect()).await?;
    Ok(all
        .into_iter()
        .filter_map(|t| t.topic_arn)
        .collect::<Vec<_>>())
}

/// The topic's e-mail subscriptions: (address, subscription ARN or `PendingConfirmation`).
async fn email_subscriptions(cloud: &Cloud, arn: &str) -> Result<Vec<(String, String)>> {
    let request = cloud.sns.list_subscriptions_by_topic().topic_arn(arn);
    let items = request.into_paginator().items().send();
    let all: Vec<types::Subscription> =
        sent("ListSubscriptionsByTopic", items.try_collect()).await?;
    Ok(all
        .into_iter()
        .filter(|s| s.protocol() == Some("email"))
        .filter_map(|s| Some((s.endpoint?, s.subscription_arn?)))
        .collect())
}

/// Subscribes each of `emails` not yet subscribed and unsubscribes the
/// confirmed ones not among them.
async fn subscribe_exactly(cloud: &Cloud, arn: &str, emails: &[String]) -> Result<()> {
    let current = email_subscriptions(cloud, arn).await?;
    for email in emails {
        if current.iter().any(|(endpoint, _)| endpoint == email) {
            continue;
        }
        let request = cloud.sns.subscribe().topic_arn(arn).protocol("email");
        let request = request.endpoint(email).return_subscription_arn(true);
        sent_ok("Subscribe", request.send()).await?;
    }
    for (endpoint, subscription) in current {
        if emails.contains(&endpoint) || subscription == PENDING {
            continue;
        }
        let request = cloud.sns.unsubscribe().subscription_arn(subscription);
        sent_ok("Unsubscribe", request.send()).await?;
    }
    Ok(())
}

async fn tags_of(cloud: &Cloud, arn: &str) -> Result<Tags> {
    let request = cloud.sns.list_tags_for_resource().resource_arn(arn);
    let out = sent("ListTagsForResource", request.send()).await?;
    Ok(out
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect())
}

/// Sets exactly the desired tags.
async fn retag(cloud: &Cloud, arn: &str, props: &Props) -> Result<()> {
    let current = tags_of(cloud, arn).await?.into_keys();
    let sns = &cloud.sns;
    let tag = |desired: Vec<(String, String)>| async move {
        let tags = sdk_tags(desired, |k, v| {
            types::Tag::builder().key(k).value(v).build()
        })?;
        let request = sns.tag_resource().resource_arn(arn).set_tags(Some(tags));
        sent_ok("TagResource", request.send()).await
    };
    let untag = |stale: Vec<String>| {
        let request = sns.untag_resource().resource_arn(arn);
        sent_ok("UntagResource", request.set_tag_keys(Some(stale)).send())
    };
    replace_tags(props, current, tag, untag).await
}
