//! What watches the running stack: CloudWatch alarms, and the SNS topic
//! they notify.

mod alarm;
mod topic;

pub use alarm::{Alarm, AlarmProps};
pub use topic::{SnsTopic, TopicProps};
