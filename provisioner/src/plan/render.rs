//! The plan as a person reads it (`provision plan` and `apply`).

use std::fmt::Write as _;

use serde_json::Value;

use super::{Action, Plan, UNKNOWN};

impl Plan {
    /// The plan as a person reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.adopted.is_empty() {
            let _ = writeln!(out, "Adopted (created by an earlier run, now recorded):");
            for address in &self.adopted {
                let _ = writeln!(out, "  {address}");
            }
            out.push('\n');
        }
        if !self.drift.is_empty() {
            let _ = writeln!(out, "Drift (changed outside provision):");
            for drift in &self.drift {
                if drift.deleted {
                    let _ = writeln!(out, "  {}: deleted", drift.address);
                    continue;
                }
                let _ = writeln!(out, "  {}", drift.address);
                for attr in &drift.attrs {
                    let _ = writeln!(
                        out,
                        "      {}: {} (recorded) -> {} (in the cloud)",
                        attr.name,
                        show(&attr.before),
                        show(&attr.after)
                    );
                }
            }
            out.push('\n');
        }
        for change in &self.changes {
            let sign = match change.action {
                Action::Create => "+",
                Action::Update => "~",
                Action::Replace => "-/+",
                Action::Delete => "-",
            };
            let _ = writeln!(out, "{sign} {} ({})", change.address, change.action.word());
            for attr in &change.attrs {
                let note = if attr.forces_replacement {
                    " (forces replacement)"
                } else {
                    ""
                };
                match change.action {
                    Action::Create => {
                        let _ = writeln!(out, "      {}: {}", attr.name, show(&attr.after));
                    }
                    Action::Delete => {}
                    _ => {
                        let _ = writeln!(
                            out,
                            "      {}: {} -> {}{note}",
                            attr.name,
                            show(&attr.before),
                            show(&attr.after)
                        );
                    }
                }
            }
        }
        if self.has_changes() {
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        let losing = self.data_loss();
        if !losing.is_empty() {
            let _ = writeln!(
                out,
                "Data loss: {} would delete everything in it; apply refuses this without --allow-data-loss.",
                losing.join(", ")
            );
        }
        out
    }
}

/// Renders a value on one line; long multi-line text is summarised.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) if s == UNKNOWN => s.clone(),
        Value::String(s) if s.contains('\n') => {
            format!("<{} lines, {} bytes>", s.lines().count(), s.len())
        }
        other => other.to_string(),
    }
}
