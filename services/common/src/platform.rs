//! The platform's wiring that every way of running it shares: topic names
//! (as in the reference platform), and which paths the front door sends to
//! which service. `provision` builds the broker's topics and the load
//! balancer's rules from these, and `provision dev` its embedded broker and
//! its front door, so the two route alike.

/// Where ingest publishes events.
pub const EVENTS_TOPIC: &str = "events.raw";
/// Where the processor sends what it cannot store.
pub const DLQ_TOPIC: &str = "events.dlq";
/// The processors' consumer group.
pub const CONSUMER_GROUP: &str = "event-processors";

/// The topics a broker of the platform has: partitions each.
pub const TOPICS: [(&str, u32); 2] = [(EVENTS_TOPIC, 12), (DLQ_TOPIC, 3)];

/// The paths the front door sends to ingest: the event API and its
/// description. Patterns as the load balancer reads them: `*` at the end
/// matches any suffix, otherwise the path is exact.
pub const INGEST_PATHS: [&str; 3] = ["/events*", "/v1/events*", "/openapi.json"];

/// The paths the front door sends to graphql; everything no rule matches
/// goes there too (the dashboard at `/`).
pub const GRAPHQL_PATHS: [&str; 1] = ["/graphql*"];

/// A path pattern as the load balancer reads it: it matches the URL's
/// path (not its query), case sensitively; `*` matches any run of
/// characters (none included) and `?` exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(Vec<char>);

impl PathPattern {
    /// A pattern as the listener rule states it; ALB allows 1 to 128 characters.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        if chars.is_empty() || chars.len() > 128 {
            return Err(format!(
                "path pattern {pattern:?}: expected 1 to 128 characters"
            ));
        }
        Ok(Self(chars))
    }

    /// Whether `path` (without its query) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path: Vec<char> = path.chars().collect();
        let pattern = &self.0;
        // Greedy glob match with one backtrack point: the last `*` seen.
        let (mut p, mut s) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while s < path.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, s));
                    p += 1;
                }
                Some(&c) if c == '?' || c == path[s] => {
                    p += 1;
                    s += 1;
                }
                _ => match star {
                    Some((star_p, star_s)) => {
                        p = star_p + 1;
                        s = star_s + 1;
                        star = Some((star_p, star_s + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::PathPattern;

    fn pattern(p: &str) -> PathPattern {
        PathPattern::new(p).expect("valid pattern")
    }

    #[test]
    fn patterns_match_as_alb_does() {
        let cases = [
            ("/events", "/events", true),
            ("/events", "/events/", false),
            ("/events*", "/events", true),
            ("/events*", "/eventsbatch", true),
            ("/events/*", "/events", false),
            ("/events/*", "/events/", true),
            ("/events/*", "/events/a/b", true),
            ("*", "/", true),
            ("/*", "/anything/at/all", true),
            ("/v?/events", "/v1/events", true),
            ("/v?/events", "/v10/events", false),
            ("/v?/events", "/v/events", false),
            ("/a*b*c", "/aXXbYYc", true),
            ("/a*b*c", "/aXXbYY", false),
            ("/a*b", "/abab", true),
            ("/**", "/x", true),
            ("/Events", "/events", false),
            ("/events", "/Events", false),
            ("/é?", "/éx", true),
        ];
        for (p, path, want) in cases {
            assert_eq!(pattern(p).matches(path), want, "{p} against {path}");
        }
    }

    #[test]
    fn patterns_out_of_alb_limits_are_refused() {
        assert!(PathPattern::new("").is_err());
        assert!(PathPattern::new(&"a".repeat(129)).is_err());
        assert!(PathPattern::new(&"a".repeat(128)).is_ok());
    }
}
