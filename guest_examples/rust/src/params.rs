//! Parameters, checked by the Python SDK's rule (`resolve_params` in
//! sdk/dataflare/runtime/_definition.py) with its exact messages: the host
//! checks them with that rule before `init`, and a caller that does not gets
//! the same sentence from the component.

/// Declared parameters: (name, default). The only one is the needle.
pub const DECLARED: [(&str, &str); 1] = [("needle", "error")];

/// Names the host sets for the SDK itself; never a plugin parameter.
const RESERVED_PREFIX: &str = "dataflare.";
const RESERVED: [&str; 1] = ["dataflare.window"];

/// The needle's bytes (UTF-8, as the Python twin's `str.encode()`), or the
/// configuration error's message. `label` names the plugin: `plugin 'x' (origin)`.
pub fn resolve_needle(label: &str, given: &[(String, String)]) -> Result<Vec<u8>, String> {
    // The SDK's Dispatcher checks a window override before the parameters.
    if given.iter().any(|(name, _)| name == "dataflare.window") {
        return Err(format!(
            "{label} is a filter plugin; only aggregate plugins take a window"
        ));
    }
    if let Some((name, _)) = given
        .iter()
        .find(|(name, _)| name.starts_with(RESERVED_PREFIX) && !RESERVED.contains(&name.as_str()))
    {
        return Err(format!(
            "{label}: {} is not a DataFlare setting (known: {})",
            py_repr(name),
            RESERVED.join(", ")
        ));
    }
    let declared = |name: &str| DECLARED.iter().any(|(known, _)| *known == name);
    // The SDK reports the first unknown name in sorted order.
    if let Some(unknown) = given
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !declared(name))
        .min()
    {
        let mut takes: Vec<&str> = DECLARED.iter().map(|(name, _)| *name).collect();
        takes.sort_unstable();
        return Err(format!(
            "{label} has no parameter {}{}; it takes: {}",
            py_repr(unknown),
            did_you_mean(unknown),
            takes.join(", ")
        ));
    }
    // The last value given wins, as when the SDK builds a dict from the pairs.
    let needle = given
        .iter()
        .rev()
        .find(|(name, _)| name == "needle")
        .map(|(_, value)| value.as_str());
    Ok(needle.unwrap_or(DECLARED[0].1).as_bytes().to_vec())
}

/// ` (did you mean 'x'?)` for the declared name closest to `name`, or `""`
/// when none is close: the SDK's `did_you_mean`, ties broken by name.
fn did_you_mean(name: &str) -> String {
    let best = DECLARED
        .iter()
        .map(|(known, _)| (edit_distance(name, known), *known))
        .min();
    match best {
        Some((distance, known)) if distance <= (known.chars().count() / 3).max(1) => {
            format!(" (did you mean {}?)", py_repr(known))
        }
        _ => String::new(),
    }
}

/// Levenshtein distance over code points, as the SDK computes it.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, char_a) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, char_b) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(char_a != *char_b);
            current.push((previous[j + 1] + 1).min(current[j] + 1).min(substitute));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Python's `repr` of a str, which the SDK's messages use for names: single
/// quotes unless the text holds one and no double quote, control and
/// whitespace characters escaped. (Python also escapes a few more non-ASCII
/// categories, e.g. format characters; those do not occur in parameter names.)
fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' ' => out.push(' '),
            c if c.is_control() || c.is_whitespace() => match u32::from(c) {
                n @ ..=0xff => out.push_str(&format!("\\x{n:02x}")),
                n @ ..=0xffff => out.push_str(&format!("\\u{n:04x}")),
                n => out.push_str(&format!("\\U{n:08x}")),
            },
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "plugin 'contains' (x)";

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_given_values() {
        assert_eq!(resolve_needle(LABEL, &[]), Ok(b"error".to_vec()));
        assert_eq!(
            resolve_needle(LABEL, &given(&[("needle", "é")])),
            Ok("é".as_bytes().to_vec())
        );
        assert_eq!(
            resolve_needle(LABEL, &given(&[("needle", "a"), ("needle", "")])),
            Ok(vec![])
        );
    }

    #[test]
    fn unknown_names_are_refused_in_the_sdks_words() {
        assert_eq!(
            resolve_needle(LABEL, &given(&[("z", "1"), ("neddle", "x")])),
            Err("plugin 'contains' (x) has no parameter 'neddle' (did you mean 'needle'?); it takes: needle".into())
        );
        assert_eq!(
            resolve_needle(LABEL, &given(&[("limit", "1")])),
            Err("plugin 'contains' (x) has no parameter 'limit'; it takes: needle".into())
        );
        assert_eq!(
            resolve_needle(LABEL, &given(&[("dataflare.x", "1")])),
            Err("plugin 'contains' (x): 'dataflare.x' is not a DataFlare setting (known: dataflare.window)".into())
        );
        assert_eq!(
            resolve_needle(LABEL, &given(&[("dataflare.window", "{}")])),
            Err(
                "plugin 'contains' (x) is a filter plugin; only aggregate plugins take a window"
                    .into()
            )
        );
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a\"b'c"), "'a\"b\\'c'");
        assert_eq!(py_repr("t\tn\x00é\u{a0}"), "'t\\tn\\x00é\\xa0'");
    }
}
