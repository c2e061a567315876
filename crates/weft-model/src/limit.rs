//! Concurrency and rate limits on plans and steps: what a flow file says
//! (`concurrency = { key = "${inputs.tenant}", limit = 2 }`, `queue = "emails"`), the key
//! templates and their rendering, queue names and rates (`100/m`), and the slots a plan or a
//! step must hold before it runs ([`SlotWant`]).
//!
//! A slot is held in a *scope*: `flow:NAME` for a flow's `concurrency` (at most `limit` plans
//! of the flow per key), `task:FLOW/STEP` for a task's (at most `limit` of its steps per key),
//! `queue:NAME` for a named queue (its limit and rate are set with `weft queues set` and apply
//! across every key, granted fairly between keys).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The limits on a flow's plans or on one task's steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// At most `limit` at once per rendered key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// A named queue whose limit and rate (stored, set by an operator) apply too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// `concurrency = { key = "…", limit = N }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    /// A template: literal text and `${inputs.NAME}`; empty, one key for all.
    #[serde(default)]
    pub key: String,
    /// How many at once per key (at least 1).
    pub limit: u32,
}

/// One slot a plan or step needs: in `scope`, for `key`; `limit` for a concurrency limit,
/// `None` for a queue (whose limit and rate are the stored queue's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlotWant {
    /// `flow:NAME`, `task:FLOW/STEP` or `queue:NAME`.
    pub scope: String,
    /// The rendered key.
    pub key: String,
    /// The concurrency limit, or `None` for a queue.
    pub limit: Option<u32>,
}

impl SlotWant {
    /// What it waits for, in words: "a slot in queue `emails`", "a slot in flow `x` for key
    /// `acme` (limit 2)".
    pub fn describe(&self) -> String {
        let (kind, name) = self.scope.split_once(':').unwrap_or(("", &self.scope));
        let mut out = format!("{kind} `{name}`");
        if !self.key.is_empty() {
            out.push_str(&format!(" for key `{}`", self.key));
        }
        if let Some(l) = self.limit {
            out.push_str(&format!(" (limit {l})"));
        }
        out
    }

    /// The queue's name, for a queue's slot.
    pub fn queue(&self) -> Option<&str> {
        self.scope.strip_prefix("queue:")
    }
}

impl Limits {
    /// Whether there is no limit.
    pub fn is_none(&self) -> bool {
        self.concurrency.is_none() && self.queue.is_none()
    }

    /// The slots to hold, for the flow (`scope` = `flow:NAME`) or a step (`task:FLOW/STEP`),
    /// with keys rendered from `lookup` (a plan's values by name).
    pub fn wants(&self, scope: &str, lookup: &dyn Fn(&str) -> Option<Value>) -> Vec<SlotWant> {
        let key = self
            .concurrency
            .as_ref()
            .map(|c| render(&c.key, lookup))
            .unwrap_or_default();
        let mut out = Vec::new();
        if let Some(c) = &self.concurrency {
            out.push(SlotWant {
                scope: scope.to_string(),
                key: key.clone(),
                limit: Some(c.limit),
            });
        }
        if let Some(q) = &self.queue {
            out.push(SlotWant {
                scope: format!("queue:{q}"),
                key,
                limit: None,
            });
        }
        out
    }

    /// Checks names and templates; `inputs` are the names a key may use.
    pub fn check(&self, inputs: &dyn Fn(&str) -> bool) -> Result<(), String> {
        if let Some(c) = &self.concurrency {
            if c.limit == 0 {
                return Err("concurrency.limit must be at least 1".into());
            }
            for name in template_names(&c.key)? {
                if !inputs(&name) {
                    return Err(format!(
                        "concurrency.key uses `${{inputs.{name}}}`, but the flow has no input `{name}`"
                    ));
                }
            }
        }
        if let Some(q) = &self.queue {
            check_queue_name(q).map_err(|e| format!("queue: {e}"))?;
        }
        Ok(())
    }
}

/// The input names a key template uses; an error names a malformed `${…}`.
pub fn template_names(key: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = key;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("concurrency.key `{key}`: `${{` without a closing `}}`"))?;
        let inner = &after[..end];
        let name = inner.strip_prefix("inputs.").ok_or_else(|| {
            format!("concurrency.key `{key}`: `${{{inner}}}` — only `${{inputs.NAME}}` may be used")
        })?;
        if name.is_empty() {
            return Err(format!("concurrency.key `{key}`: an input name is missing"));
        }
        names.push(name.to_string());
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// A key template with its `${inputs.NAME}` replaced: strings as they are, other values as
/// JSON, a missing value as nothing.
pub fn render(key: &str, lookup: &dyn Fn(&str) -> Option<Value>) -> String {
    let mut out = String::new();
    let mut rest = key;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let name = inner.strip_prefix("inputs.").unwrap_or(inner);
        match lookup(name) {
            Some(Value::String(s)) => out.push_str(&s),
            Some(v) => out.push_str(&v.to_string()),
            None => {}
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A queue's name: 1 to 100 ASCII letters, digits, `.`, `_` or `-`.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err(format!(
            "a queue's name must be 1 to 100 characters, not {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "queue name `{name}` holds `{c}`: use letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// How many starts a queue allows per period: `100/m`, `5/s`, `1000/h`, `10/30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts per period (at least 1); also the burst.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("rate `{s}`: expected COUNT/PERIOD, like 100/m, 5/s or 10/30s");
        let (count, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("rate `{s}`: the count must be at least 1"));
        }
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => crate::duration::parse(other).map_err(|_| bad())?,
        };
        if per.is_zero() {
            return Err(format!("rate `{s}`: the period must be longer than zero"));
        }
        Ok(Rate { count, per })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_millis() {
            1_000 => "s".to_string(),
            60_000 => "m".to_string(),
            3_600_000 => "h".to_string(),
            86_400_000 => "d".to_string(),
            _ => crate::duration::format(self.per),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(name: &str) -> Option<Value> {
        match name {
            "tenant" => Some(json!("acme")),
            "n" => Some(json!(3)),
            _ => None,
        }
    }

    #[test]
    fn keys_render_inputs_strings_bare_and_others_as_json() {
        assert_eq!(render("${inputs.tenant}", &lookup), "acme");
        assert_eq!(
            render("t-${inputs.tenant}/${inputs.n}", &lookup),
            "t-acme/3"
        );
        assert_eq!(render("${inputs.missing}x", &lookup), "x");
        assert_eq!(render("plain", &lookup), "plain");
    }

    #[test]
    fn templates_name_their_inputs_and_malformed_ones_are_refused() {
        assert_eq!(
            template_names("${inputs.a}-${inputs.b}").unwrap(),
            vec!["a", "b"]
        );
        assert!(template_names("${inputs.a")
            .unwrap_err()
            .contains("closing"));
        assert!(template_names("${env.HOME}").unwrap_err().contains("only"));
        assert!(template_names("${inputs.}")
            .unwrap_err()
            .contains("missing"));
    }

    #[test]
    fn wants_hold_the_scope_and_the_queue_with_one_key() {
        let limits = Limits {
            concurrency: Some(Concurrency {
                key: "${inputs.tenant}".into(),
                limit: 2,
            }),
            queue: Some("emails".into()),
        };
        let wants = limits.wants("flow:send", &lookup);
        assert_eq!(
            wants,
            vec![
                SlotWant {
                    scope: "flow:send".into(),
                    key: "acme".into(),
                    limit: Some(2)
                },
                SlotWant {
                    scope: "queue:emails".into(),
                    key: "acme".into(),
                    limit: None
                },
            ]
        );
        assert_eq!(wants[0].describe(), "flow `send` for key `acme` (limit 2)");
        assert_eq!(wants[1].queue(), Some("emails"));
    }

    #[test]
    fn checks_limits_names_and_inputs() {
        let with = |key: &str, limit: u32| Limits {
            concurrency: Some(Concurrency {
                key: key.into(),
                limit,
            }),
            queue: None,
        };
        let has = |n: &str| n == "tenant";
        assert!(with("${inputs.tenant}", 1).check(&has).is_ok());
        assert!(with("x", 0).check(&has).unwrap_err().contains("at least 1"));
        assert!(with("${inputs.region}", 1)
            .check(&has)
            .unwrap_err()
            .contains("no input `region`"));
        let q = Limits {
            concurrency: None,
            queue: Some("bad name".into()),
        };
        assert!(q.check(&has).unwrap_err().contains("holds ` `"));
    }

    #[test]
    fn rates_parse_and_print() {
        let r: Rate = "100/m".parse().unwrap();
        assert_eq!((r.count, r.per), (100, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "100/m");
        let r: Rate = "10/30s".parse().unwrap();
        assert_eq!(r.per, Duration::from_secs(30));
        assert!("0/m".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().unwrap_err().contains("COUNT/PERIOD"));
        assert!("5/0s".parse::<Rate>().is_err());
    }
}
