//! `${env.NAME}` and `${env.NAME:-default}` in contract values.
//!
//! Substitution happens on the parsed YAML tree, never on the raw text, so a
//! value (a token, say) can never inject YAML. A scalar that is exactly one
//! placeholder and resolves to a number or boolean becomes that number or
//! boolean, so `session_timeout_ms: ${env.X:-10000}` is a number. An unset
//! variable without a default is an error naming the variable and the field.

use serde_yaml::Value;

/// Where a placeholder could not be resolved.
#[derive(Debug, PartialEq)]
pub struct Unresolved {
    pub field: String,
    pub problem: String,
}

/// Replaces every placeholder in `tree`, reading variables through `lookup`.
/// Returns every problem at once rather than the first.
pub fn resolve(tree: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Unresolved> {
    let mut problems = Vec::new();
    walk(tree, String::new(), lookup, &mut problems);
    problems
}

fn walk(node: &mut Value, field: String, lookup: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<Unresolved>) {
    match node {
        Value::Mapping(map) => {
            for (key, value) in map.iter_mut() {
                let key = key.as_str().unwrap_or("?");
                let child = if field.is_empty() { key.to_owned() } else { format!("{field}.{key}") };
                walk(value, child, lookup, problems);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                walk(item, format!("{field}[{index}]"), lookup, problems);
            }
        }
        Value::String(text) if text.contains("${") => match substitute(text, lookup) {
            Ok(resolved) => {
                let whole =
                    text.trim().starts_with("${") && text.trim().ends_with('}') && text.matches("${").count() == 1;
                *node = if whole { typed_scalar(resolved) } else { Value::String(resolved) };
            }
            Err(problem) => problems.push(Unresolved { field, problem }),
        },
        _ => {}
    }
}

/// A resolved whole-placeholder scalar: a number or boolean if it reads as
/// one, otherwise the string.
fn typed_scalar(resolved: String) -> Value {
    if let Ok(n) = resolved.parse::<u64>() {
        return Value::Number(n.into());
    }
    if let Ok(n) = resolved.parse::<i64>() {
        return Value::Number(n.into());
    }
    if let Ok(x) = resolved.parse::<f64>() {
        if x.is_finite() && resolved.contains('.') {
            return Value::Number(x.into());
        }
    }
    match resolved.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(resolved),
    }
}

fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unterminated placeholder in {text:?}"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        let name = name
            .strip_prefix("env.")
            .ok_or_else(|| format!("unknown placeholder ${{{expr}}}: only ${{env.NAME}} is supported"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str, vars: &[(&str, &str)]) -> (Value, Vec<Unresolved>) {
        let mut tree: Value = serde_yaml::from_str(yaml).expect("test yaml");
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let problems = resolve(&mut tree, &lookup);
        (tree, problems)
    }

    #[test]
    fn resolves_values_and_defaults_with_types() {
        let (tree, problems) =
            run("a: ${env.A}\nb: ${env.B:-42}\nc: x-${env.A}-y\nd: ${env.D:-}\ne: ${env.E:-true}", &[("A", "alpha")]);
        assert!(problems.is_empty());
        assert_eq!(tree["a"], Value::String("alpha".into()));
        assert_eq!(tree["b"], Value::Number(42.into()));
        assert_eq!(tree["c"], Value::String("x-alpha-y".into()));
        assert_eq!(tree["d"], Value::String(String::new()));
        assert_eq!(tree["e"], Value::Bool(true));
    }

    #[test]
    fn fails_closed_naming_variable_and_field() {
        let (_, problems) = run("vault:\n  address: ${env.VAULT_ADDR}\nlist: [\"${env.X}\"]", &[]);
        assert_eq!(
            problems,
            vec![
                Unresolved {
                    field: "vault.address".into(),
                    problem: "environment variable VAULT_ADDR is not set".into()
                },
                Unresolved { field: "list[0]".into(), problem: "environment variable X is not set".into() },
            ]
        );
    }

    #[test]
    fn a_value_cannot_inject_yaml() {
        let (tree, problems) = run("token: ${env.T}", &[("T", "x: [1, 2]\n- y")]);
        assert!(problems.is_empty());
        assert_eq!(tree["token"], Value::String("x: [1, 2]\n- y".into()));
    }

    #[test]
    fn rejects_unknown_placeholders() {
        let (_, problems) = run("a: ${vault.secret}", &[]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].problem.contains("only ${env.NAME}"));
    }
}
