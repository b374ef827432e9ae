//! Saved plans (`provision plan --out FILE`, `provision apply FILE`): a plan
//! with everything apply needs, and what its refresh read, so that apply
//! can refuse it when the stack has changed since it was made.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Basis, Plan};

/// The format this build writes and reads.
const FORMAT: u32 = 1;

/// The file: the plan as `plan --json` shows it, and its basis.
#[derive(Serialize, Deserialize)]
struct SavedPlan {
    format: u32,
    plan: Plan,
    basis: Basis,
}

impl Plan {
    /// Writes the plan to `path`.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let saved = SavedPlan {
            format: FORMAT,
            plan: self.clone(),
            basis: self.basis.clone(),
        };
        let text = serde_json::to_string_pretty(&saved)?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the plan to {}", path.display()))
    }

    /// Reads a plan `save` wrote.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the plan {}", path.display()))?;
        let saved: SavedPlan = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a plan saved by `provision plan --out`",
                path.display()
            )
        })?;
        anyhow::ensure!(
            saved.format == FORMAT,
            "{} is a plan of format {}; this provision reads format {FORMAT}: run plan again",
            path.display(),
            saved.format
        );
        Ok(Self {
            basis: saved.basis,
            ..saved.plan
        })
    }

    /// Why this (saved) plan cannot be applied, given `fresh`, the plan of
    /// the same stack made now; `None` when applying it does exactly what
    /// was reviewed.
    pub fn stale_against(&self, fresh: &Plan) -> Option<String> {
        if self.stack != fresh.stack {
            return Some(format!(
                "it is a plan of stack `{}`, not `{}`",
                self.stack, fresh.stack
            ));
        }
        if self.basis.state_serial != fresh.basis.state_serial {
            return Some(format!(
                "the state changed since the plan was made (serial {} then, {} now: another apply or destroy ran)",
                self.basis.state_serial, fresh.basis.state_serial
            ));
        }
        let (then, now) = (&self.basis.refreshed, &fresh.basis.refreshed);
        let changed: Vec<&str> = then
            .keys()
            .chain(now.keys())
            .filter(|address| then.get(*address) != now.get(*address))
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !changed.is_empty() {
            return Some(format!(
                "the cloud changed since the plan was made: {}",
                changed.join(", ")
            ));
        }
        if self != fresh {
            return Some(
                "the blueprint or the built images changed since the plan was made".to_string(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::cloud::Observed;
    use crate::model::{Kind, Props, Resource};
    use crate::plan::{plan, Current};
    use crate::state::State;

    fn log_group(retention: i64) -> Resource {
        let props = Props::from([
            ("name".to_string(), json!("/ep/x")),
            ("retention_days".to_string(), json!(retention)),
        ]);
        Resource::new(Kind::LogGroup, "x", props, &[])
    }

    fn refreshed(retention: i64) -> BTreeMap<String, Current> {
        let observed = Observed {
            props: Props::from([
                ("name".to_string(), json!("/ep/x")),
                ("retention_days".to_string(), json!(retention)),
            ]),
            outputs: Props::new(),
        };
        BTreeMap::from([(
            "log_group.x".to_string(),
            Current {
                id: "/ep/x".into(),
                observed: Some(observed),
                adopted: true,
            },
        )])
    }

    #[test]
    fn a_saved_plan_reads_back_whole_and_applies_only_while_nothing_changed() -> anyhow::Result<()>
    {
        let state = State::new("s");
        let made = plan(&[log_group(7)], &state, &refreshed(3));
        assert_eq!(made.changes.len(), 1);
        assert_eq!(
            made.basis.resources.len(),
            1,
            "the update's resource travels with the plan"
        );
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("plan.json");
        made.save(&path)?;
        let saved = Plan::load(&path)?;
        assert_eq!(saved, made);
        assert_eq!(saved.stale_against(&made), None);

        let cloud_changed = plan(&[log_group(7)], &state, &refreshed(5));
        let why = saved.stale_against(&cloud_changed).unwrap_or_default();
        assert!(
            why.contains("the cloud changed since the plan was made: log_group.x"),
            "{why}"
        );

        let mut applied = state.clone();
        applied.serial += 1;
        let why = saved
            .stale_against(&plan(&[log_group(7)], &applied, &refreshed(3)))
            .unwrap_or_default();
        assert!(why.contains("serial 0 then, 1 now"), "{why}");

        let blueprint_changed = plan(&[log_group(14)], &state, &refreshed(3));
        let why = saved.stale_against(&blueprint_changed).unwrap_or_default();
        assert!(
            why.contains("the blueprint or the built images changed"),
            "{why}"
        );
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_a_plan_is_named() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("other.json");
        std::fs::write(&path, "{\"changes\": []}")?;
        let error = match Plan::load(&path) {
            Ok(_) => anyhow::bail!("read a file that is not a plan as a plan"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains("is not a plan saved by `provision plan --out`"),
            "{error}"
        );
        Ok(())
    }
}
