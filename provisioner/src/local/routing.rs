//! The local load balancer's decisions, apart from any I/O, with ALB's
//! semantics:
//! - a path pattern matches as [`PathPattern`] says;
//! - rules are tried in priority order (lowest first), a rule matches when
//!   any of its patterns does, and the listener's default action answers
//!   what no rule matched;
//! - a target is healthy after it passes one check once registered; a
//!   healthy target turns unhealthy after `unhealthy_threshold` failed checks
//!   in a row, and an unhealthy one healthy again after `healthy_threshold`
//!   passed checks in a row;
//! - requests go round robin to the healthy targets; when every registered
//!   target is unhealthy the group fails open and uses them all; with none
//!   healthy otherwise (none registered, or only new ones not yet checked)
//!   there is no target, and the balancer answers 503.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use event_common::platform::PathPattern;

/// What the balancer does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Forward to a target of this target group (by ARN).
    Forward(String),
    /// Answer itself.
    Fixed {
        /// HTTP status.
        status: u16,
        /// `Content-Type` of the body.
        content_type: Option<String>,
        /// The body.
        body: Option<String>,
    },
    /// Redirect: ALB's `#{protocol}`, `#{host}`, `#{port}`, `#{path}` and
    /// `#{query}` in each part stand for the request's own.
    Redirect {
        /// 301 or 302.
        status: u16,
        /// Protocol, host, port, path, query.
        protocol: String,
        /// Host.
        host: String,
        /// Port.
        port: String,
        /// Path.
        path: String,
        /// Query.
        query: String,
    },
}

impl Action {
    /// The `Location` of a redirect for a request to `host`/`path`?`query`
    /// on this listener (`protocol`, `port`).
    pub fn location(&self, request: &RequestParts<'_>) -> Option<String> {
        let Action::Redirect {
            protocol,
            host,
            port,
            path,
            query,
            ..
        } = self
        else {
            return None;
        };
        let fill = |template: &str| {
            template
                .replace("#{protocol}", &request.protocol.to_ascii_lowercase())
                .replace("#{host}", request.host)
                .replace("#{port}", request.port)
                .replace("#{path}", request.path.trim_start_matches('/'))
                .replace("#{query}", request.query)
        };
        let protocol = fill(protocol).to_ascii_lowercase();
        let default_port = matches!(
            (protocol.as_str(), fill(port).as_str()),
            ("http", "80") | ("https", "443")
        );
        let port = if default_port {
            String::new()
        } else {
            format!(":{}", fill(port))
        };
        let path = fill(path);
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let query = fill(query);
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        Some(format!("{protocol}://{}{port}{path}{query}", fill(host)))
    }
}

/// The parts of a request a redirect may repeat.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `HTTP` or `HTTPS`.
    pub protocol: &'a str,
    /// Host, without the port.
    pub host: &'a str,
    /// The listener's port.
    pub port: &'a str,
    /// Path.
    pub path: &'a str,
    /// Query, without `?`.
    pub query: &'a str,
}

/// A listener rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Lower is tried first.
    pub priority: u32,
    /// The rule matches when any of these does.
    pub path_patterns: Vec<PathPattern>,
    /// What a match does.
    pub action: Action,
}

/// A listener's rules and default action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    rules: Vec<Rule>,
    default: Action,
}

impl Routes {
    /// The rules (in any order) and the default action.
    pub fn new(mut rules: Vec<Rule>, default: Action) -> Self {
        rules.sort_by_key(|r| r.priority);
        Self { rules, default }
    }

    /// The action for a request to `path`.
    pub fn route(&self, path: &str) -> &Action {
        self.rules
            .iter()
            .find(|rule| rule.path_patterns.iter().any(|p| p.matches(path)))
            .map_or(&self.default, |rule| &rule.action)
    }

    /// How many rules there are (the default action aside).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// A target group's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested with GET.
    pub path: String,
    /// Time between checks of one target.
    pub interval: Duration,
    /// A check not answered within this fails.
    pub timeout: Duration,
    /// Passes in a row that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    /// Failures in a row that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
    /// Statuses that pass.
    pub matcher: Matcher,
}

/// ALB's success codes: `200`, `200,202` or `200-299`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher(Vec<(u16, u16)>);

impl Matcher {
    /// Parses the target group's `Matcher.HttpCode`.
    pub fn parse(codes: &str) -> Result<Self, String> {
        let code = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (200..=499).contains(c))
                .ok_or_else(|| format!("matcher {codes:?}: {s:?} is not a status from 200 to 499"))
        };
        let ranges = codes
            .split(',')
            .map(|part| match part.split_once('-') {
                Some((low, high)) => Ok((code(low)?, code(high)?)),
                None => code(part).map(|c| (c, c)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(ranges))
    }

    /// Whether `status` passes.
    pub fn passes(&self, status: u16) -> bool {
        self.0
            .iter()
            .any(|&(low, high)| (low..=high).contains(&status))
    }
}

/// A target's health, as ALB reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Registered, not checked yet.
    Initial,
    /// In service.
    Healthy,
    /// Out of service.
    Unhealthy,
}

impl Health {
    /// ALB's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Initial => "initial",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One target's health and the checks in a row that lead to the next state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetHealth {
    state: Health,
    in_a_row: u32,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            state: Health::Initial,
            in_a_row: 0,
        }
    }
}

impl TargetHealth {
    /// The current state.
    pub fn state(&self) -> Health {
        self.state
    }

    /// Takes one check's result; returns the state after it.
    pub fn record(&mut self, passed: bool, check: &HealthCheck) -> Health {
        // `in_a_row` counts the results that would change the state.
        let (towards, threshold) = match (self.state, passed) {
            (Health::Initial, true) => (Health::Healthy, 1),
            (Health::Initial | Health::Healthy, false) => {
                (Health::Unhealthy, check.unhealthy_threshold)
            }
            (Health::Unhealthy, true) => (Health::Healthy, check.healthy_threshold),
            (Health::Healthy, true) | (Health::Unhealthy, false) => {
                self.in_a_row = 0;
                return self.state;
            }
        };
        self.in_a_row += 1;
        if self.in_a_row >= threshold.max(1) {
            self.state = towards;
            self.in_a_row = 0;
        }
        self.state
    }
}

/// Round robin over a target group's targets.
#[derive(Debug, Default)]
pub struct RoundRobin(AtomicUsize);

impl RoundRobin {
    /// The next target for a request, among `targets` and their health;
    /// `None` when the group has no target to use (answer 503).
    pub fn pick<'a, T>(&self, targets: &'a [(T, Health)]) -> Option<&'a T> {
        let healthy: Vec<&T> = targets
            .iter()
            .filter(|(_, h)| *h == Health::Healthy)
            .map(|(t, _)| t)
            .collect();
        let candidates = if !healthy.is_empty() {
            healthy
        } else if !targets.is_empty() && targets.iter().all(|(_, h)| *h == Health::Unhealthy) {
            // ALB fails open: every registered target has failed its checks.
            targets.iter().map(|(t, _)| t).collect()
        } else {
            return None;
        };
        let turn = self.0.fetch_add(1, Ordering::Relaxed);
        candidates.get(turn % candidates.len()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> PathPattern {
        PathPattern::new(p).expect("valid pattern")
    }

    fn forward(arn: &str) -> Action {
        Action::Forward(arn.into())
    }

    fn not_found() -> Action {
        Action::Fixed {
            status: 404,
            content_type: None,
            body: None,
        }
    }

    #[test]
    fn rules_go_by_priority_then_the_default_action() {
        let routes = Routes::new(
            vec![
                Rule {
                    priority: 20,
                    path_patterns: vec![pattern("/graphql"), pattern("/graphql/*")],
                    action: forward("graphql"),
                },
                Rule {
                    priority: 10,
                    path_patterns: vec![pattern("/events*")],
                    action: forward("ingest"),
                },
                // Shadows the two below for the paths it has.
                Rule {
                    priority: 1,
                    path_patterns: vec![pattern("/events/internal"), pattern("/health*")],
                    action: not_found(),
                },
            ],
            forward("dashboard"),
        );
        assert_eq!(routes.route("/events"), &forward("ingest"));
        assert_eq!(routes.route("/events/batch"), &forward("ingest"));
        assert_eq!(routes.route("/events/internal"), &not_found());
        assert_eq!(routes.route("/health/ready"), &not_found());
        assert_eq!(routes.route("/graphql"), &forward("graphql"));
        assert_eq!(routes.route("/graphql/x"), &forward("graphql"));
        assert_eq!(routes.route("/graphqlx"), &forward("dashboard"));
        assert_eq!(routes.route("/"), &forward("dashboard"));
    }

    #[test]
    fn a_redirect_fills_in_the_request() {
        let action = Action::Redirect {
            status: 301,
            protocol: "HTTPS".into(),
            host: "#{host}".into(),
            port: "443".into(),
            path: "/#{path}".into(),
            query: "#{query}".into(),
        };
        let request = RequestParts {
            protocol: "HTTP",
            host: "example.com",
            port: "80",
            path: "/graphql",
            query: "a=1",
        };
        assert_eq!(
            action.location(&request).as_deref(),
            Some("https://example.com/graphql?a=1")
        );
        assert_eq!(not_found().location(&request), None);
    }

    #[test]
    fn matchers_parse_alb_codes() -> Result<(), String> {
        let m = Matcher::parse("200,202-204")?;
        assert!(m.passes(200) && m.passes(203) && !m.passes(201) && !m.passes(500));
        assert!(Matcher::parse("ok").is_err());
        assert!(Matcher::parse("100").is_err());
        Ok(())
    }

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/health/ready".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 3,
            unhealthy_threshold: 2,
            matcher: Matcher(vec![(200, 200)]),
        }
    }

    #[test]
    fn health_follows_the_thresholds() {
        let check = check();
        let mut t = TargetHealth::default();
        assert_eq!(t.state(), Health::Initial);
        // One pass puts a new target in service.
        assert_eq!(t.record(true, &check), Health::Healthy);
        // One failure is not enough; a pass in between resets the count.
        assert_eq!(t.record(false, &check), Health::Healthy);
        assert_eq!(t.record(true, &check), Health::Healthy);
        assert_eq!(t.record(false, &check), Health::Healthy);
        assert_eq!(t.record(false, &check), Health::Unhealthy);
        // Back in service after three passes in a row.
        assert_eq!(t.record(true, &check), Health::Unhealthy);
        assert_eq!(t.record(true, &check), Health::Unhealthy);
        assert_eq!(t.record(false, &check), Health::Unhealthy);
        assert_eq!(t.record(true, &check), Health::Unhealthy);
        assert_eq!(t.record(true, &check), Health::Unhealthy);
        assert_eq!(t.record(true, &check), Health::Healthy);
        // A new target that keeps failing turns unhealthy at the threshold.
        let mut new = TargetHealth::default();
        assert_eq!(new.record(false, &check), Health::Initial);
        assert_eq!(new.record(false, &check), Health::Unhealthy);
    }

    #[test]
    fn round_robin_over_healthy_targets_and_open_when_all_failed() {
        let rr = RoundRobin::default();
        let targets = [
            ("a", Health::Healthy),
            ("b", Health::Unhealthy),
            ("c", Health::Healthy),
            ("d", Health::Initial),
        ];
        let picks: Vec<&str> = (0..4).filter_map(|_| rr.pick(&targets).copied()).collect();
        assert_eq!(picks, ["a", "c", "a", "c"]);

        let failed = [("a", Health::Unhealthy), ("b", Health::Unhealthy)];
        let mut picks: Vec<&str> = (0..2).filter_map(|_| rr.pick(&failed).copied()).collect();
        picks.sort_unstable();
        assert_eq!(picks, ["a", "b"]);

        let none: [(&str, Health); 0] = [];
        assert_eq!(rr.pick(&none), None);
        assert_eq!(rr.pick(&[("new", Health::Initial)]), None);
        assert_eq!(
            rr.pick(&[("new", Health::Initial), ("b", Health::Unhealthy)]),
            None
        );
    }
}
