//! Label and field selectors (apimachinery `labels.Parse` / `fields.ParseSelector` syntax) and
//! matching them against JSON objects.
//!
//! Label requirements: `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>n`,
//! `k<n`, comma-separated and ANDed. Field requirements: `path=v`, `path==v`, `path!=v` over the
//! per-kind allowed field labels; an unknown label is a 400 as in Kubernetes.

use serde_json::Value;

use super::resources::ResourceDef;
use super::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Exists,
    NotExists,
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

fn bad(sel: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "unable to parse requirement: {why} (in selector {sel:?})"
    ))
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl LabelSelector {
    pub fn parse(sel: &str) -> Result<LabelSelector, ApiError> {
        let mut reqs = Vec::new();
        if sel.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for raw in split_top(sel) {
            let r = raw.trim();
            if r.is_empty() {
                return Err(bad(sel, "empty requirement"));
            }
            let req = if let Some(k) = r.strip_prefix('!') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotExists,
                }
            } else if let Some((k, rest)) = split_word(r, " notin ") {
                Requirement {
                    key: k.into(),
                    op: Op::NotIn(parse_set(sel, rest)?),
                }
            } else if let Some((k, rest)) = split_word(r, " in ") {
                Requirement {
                    key: k.into(),
                    op: Op::In(parse_set(sel, rest)?),
                }
            } else if let Some((k, v)) = r.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotEq(v.trim().into()),
                }
            } else if let Some((k, v)) = r.split_once("==") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = r.split_once('=') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = r.split_once('>') {
                let n = v.trim().parse().map_err(|_| {
                    bad(
                        sel,
                        "for 'gt', 'lt' operators, the value must be an integer",
                    )
                })?;
                Requirement {
                    key: k.trim().into(),
                    op: Op::Gt(n),
                }
            } else if let Some((k, v)) = r.split_once('<') {
                let n = v.trim().parse().map_err(|_| {
                    bad(
                        sel,
                        "for 'gt', 'lt' operators, the value must be an integer",
                    )
                })?;
                Requirement {
                    key: k.trim().into(),
                    op: Op::Lt(n),
                }
            } else {
                Requirement {
                    key: r.into(),
                    op: Op::Exists,
                }
            };
            if !valid_key(&req.key) {
                return Err(bad(sel, &format!("invalid label key {:?}", req.key)));
            }
            let values: Vec<&String> = match &req.op {
                Op::Eq(v) | Op::NotEq(v) => vec![v],
                Op::In(vs) | Op::NotIn(vs) => vs.iter().collect(),
                _ => vec![],
            };
            if let Some(v) = values.iter().find(|v| !valid_value(v)) {
                return Err(bad(sel, &format!("invalid label value {v:?}")));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object with `labels` (its metadata.labels, possibly absent) is selected.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| {
            let v = get(&r.key);
            match &r.op {
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => v.is_none_or(|v| xs.iter().all(|x| x != v)),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

fn split_word<'a>(r: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let i = r.find(word)?;
    Some((r[..i].trim(), r[i + word.len()..].trim()))
}

fn parse_set(sel: &str, s: &str) -> Result<Vec<String>, ApiError> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad(sel, "set values must be enclosed in parentheses"))?;
    let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    if vals.iter().all(String::is_empty) {
        return Err(bad(
            sel,
            "for 'in', 'notin' operators, values set can't be empty",
        ));
    }
    Ok(vals)
}

/// A parsed field selector.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `sel`, accepting only metadata.name, metadata.namespace and `def`'s field labels.
    pub fn parse(sel: &str, def: &ResourceDef) -> Result<FieldSelector, ApiError> {
        let mut out = Vec::new();
        if sel.trim().is_empty() {
            return Ok(FieldSelector(out));
        }
        for raw in sel.split(',') {
            let r = raw.trim();
            let (path, equal, value) = if let Some((k, v)) = r.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = r.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = r.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{sel}'; can't understand '{r}'"
                )));
            };
            let path = path.trim();
            if path != "metadata.name"
                && path != "metadata.namespace"
                && !def.field_labels.contains(&path)
            {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {path}"
                )));
            }
            out.push((path.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `obj` is selected. A missing field compares as "" (as Kubernetes' field sets do;
    /// booleans compare as "true"/"false").
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let mut cur = Some(obj);
            for part in path.split('.') {
                cur = cur.and_then(|c| c.get(part));
            }
            let have = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                // `source` on events is an object; Kubernetes matches its component.
                Some(Value::Object(m)) => m
                    .get("component")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            };
            (have == *want) == *equal
        })
    }
}

/// Both selectors of a list or watch request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj.pointer("/metadata/labels")) && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::resources::lookup;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn every_label_operator() {
        let p = pod(json!({"app": "web", "tier": "front", "n": "5"}));
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "tier in (front,back)",
            "tier notin (back)",
            "app",
            "!missing",
            "n>3",
            "n<6",
            "app=web,tier=front",
            "missing notin (x)",
        ];
        for s in yes {
            assert!(
                LabelSelector::parse(s)
                    .unwrap()
                    .matches(p.pointer("/metadata/labels")),
                "{s}"
            );
        }
        let no = [
            "app=db",
            "app!=web",
            "tier in (back)",
            "tier notin (front)",
            "missing",
            "!app",
            "n>5",
            "app=web,tier=back",
        ];
        for s in no {
            assert!(
                !LabelSelector::parse(s)
                    .unwrap()
                    .matches(p.pointer("/metadata/labels")),
                "{s}"
            );
        }
        assert!(LabelSelector::parse("app in ()").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selectors_check_labels_per_kind() {
        let pods = lookup("", "v1", "pods").unwrap();
        let cms = lookup("", "v1", "configmaps").unwrap();
        let p = pod(json!({}));
        assert!(
            FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending", pods)
                .unwrap()
                .matches(&p)
        );
        assert!(!FieldSelector::parse("metadata.name=q", pods)
            .unwrap()
            .matches(&p));
        assert!(FieldSelector::parse("spec.nodeName=n1", cms).is_err());
    }
}
