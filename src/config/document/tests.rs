//! Reading a config's YAML once: keys written twice, nesting, both ways of parsing, and the
//! document against serde_yaml's.

use super::*;
use proptest::prelude::*;

fn duplicates(text: &str) -> Result<Vec<Duplicate>, Position> {
    read(text).map(|r| r.twice)
}

#[test]
fn keys_written_twice_are_found_at_every_level() {
    let text = "defaults:\n  timeout: 5m\n  timeout: 9m\ntargets:\n  - name: a\n    os: {linux: {stop: x, stop: y}}\n    name: b\ntargets: []\n";
    let found = duplicates(text).unwrap();
    let found: Vec<(&str, usize, usize)> = found
        .iter()
        .map(|(p, a, b)| (p.as_str(), a.line, b.line))
        .collect();
    assert_eq!(
        found,
        [
            ("/defaults/timeout", 2, 3),
            ("/targets/0/os/linux/stop", 6, 6),
            ("/targets/0/name", 5, 7),
            ("/targets", 4, 8),
        ]
    );
    let columns: Vec<(usize, usize)> = duplicates(text)
        .unwrap()
        .iter()
        .map(|(_, a, b)| (a.column, b.column))
        .collect();
    assert_eq!(columns[1], (18, 27), "both places on one line");
    // The last stays, as serde_yaml keeps it.
    let document = read(text).unwrap().document.unwrap();
    assert_eq!(document["defaults"]["timeout"], "9m");
    assert_eq!(document["targets"], serde_json::json!([]));
}

#[test]
fn nesting_too_deep_is_found_where_it_starts_without_reading_the_rest() {
    let at = |text: &str| duplicates(text).err().map(|p| (p.line, p.column));
    // Flow collections: the scanner stops at its own bound.
    let flow = "[".repeat(10_000_000);
    assert_eq!(at(&flow), Some((1, 256)));
    // Nested one level too many, in a block mapping.
    let block = |levels: usize| {
        let mut text: String = (0..levels)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        text.push_str(&format!("{}x\n", "  ".repeat(levels)));
        text
    };
    assert_eq!(at(&block(MAX_NESTING)), None);
    assert_eq!(
        at(&block(MAX_NESTING + 1)).map(|a| a.0),
        Some(MAX_NESTING + 1)
    );
    // Closed collections count no more.
    let siblings = "- [[[1]]]\n".repeat(1000);
    assert_eq!(at(&siblings), None);
}

#[test]
fn the_shipped_configs_are_read_here_as_serde_yaml_reads_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut read_here = 0;
    for dir in ["examples", "examples/packaging"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let ours = read(&text).unwrap().document;
            let theirs: Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(ours.as_ref(), Some(&theirs), "{}", path.display());
            read_here += 1;
        }
    }
    assert!(read_here >= 4, "{read_here}");
}

#[test]
fn a_text_parsed_on_another_thread_reads_as_one_parsed_here() {
    let targets: String = (0..5000)
        .map(|i| format!("  - {{name: t{i}, heartbeat: /b/{i}, start: 'x y'}}\n"))
        .collect();
    let whole = format!("defaults: {{timeout: 5m}}\ntargets:\n{targets}defaults: {{}}\n");
    let deep = format!("targets:\n{targets}deep: {}\n", "[".repeat(300));
    let broken = format!("targets:\n{targets}  - {{name: [\n");
    let both = |text: &str| {
        let [here, beside] = [false, true]
            .map(|beside| read_with(text, beside, None).map(|r| (r.document, r.twice)));
        assert_eq!(here, beside);
        here
    };
    let (document, twice) = both(&whole).unwrap();
    assert_eq!(document.unwrap()["targets"][4999]["name"], "t4999");
    assert_eq!(twice[0].0, "/defaults");
    assert_eq!((twice[0].1.line, twice[0].2.line), (1, 5003));
    assert_eq!(both(&deep).unwrap_err().line, 5002);
    assert_eq!(both(&broken).unwrap().0, None, "serde_yaml's to read");
}

#[test]
fn what_serde_yaml_is_to_read_is_left_to_it() {
    for text in [
        "",
        "# nothing\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "? [a]\n: 1\n",
        "a: 1\n---\nb: 2\n",
        "a: [1\n",
        "a:\tb\n",
    ] {
        assert_eq!(read(text).unwrap().document, None, "{text:?}");
    }
}

/// Scalars that read differently as null, booleans, numbers or strings.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("~".to_string()),
        Just("null".to_string()),
        Just("NULL".to_string()),
        Just("true".to_string()),
        Just("False".to_string()),
        Just("yes".to_string()),
        Just(".inf".to_string()),
        Just("-.Inf".to_string()),
        Just(".nan".to_string()),
        Just("...".to_string()),
        Just("1_000".to_string()),
        Just("0123".to_string()),
        Just("---x".to_string()),
        Just("---".to_string()),
        Just("18446744073709551616".to_string()),
        "[-:?][a-zA-Z0-9-]{1,6}",
        "[+-]?[0-9]{1,22}",
        "[+-]?0[xob][0-9a-fA-F]{1,10}",
        "[+-]?[0-9]{0,4}\\.[0-9]{0,4}([eE][+-]?[0-9]{1,3})?",
        "[0-9]{1,3}(s|m|h|ms)",
        "[a-zA-Z_./%$-][a-zA-Z0-9_./:%$ -]{0,12}[a-zA-Z0-9_./%$]",
        "'[a-z0-9 #:]{0,8}'",
        "\"([a-z0-9 #:']|\\\\[nt\\\\\"]){0,8}\"",
    ]
}

/// Keys: words, and scalars that would read as something else as values.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,4}",
        1 => prop_oneof![
            Just("1"),
            Just("~"),
            Just("null"),
            Just("true"),
            Just("1.5"),
            Just("0x1F"),
            Just("'q'"),
            Just("\"d\""),
        ]
        .prop_map(str::to_string),
    ]
}

/// A YAML text of mappings, sequences (block and flow) and those scalars.
fn yaml() -> impl Strategy<Value = String> {
    let leaf = scalar();
    let node = leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec((key(), inner), 0..5).prop_map(|entries| {
                let body: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    });
    prop::collection::vec((key(), node, any::<bool>()), 1..8).prop_map(|entries| {
        entries
            .iter()
            .map(|(k, v, as_list)| {
                if *as_list {
                    format!("{k}:\n  - {v}\n  - {v}\n")
                } else {
                    format!("{k}: {v}\n")
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(crate::proptest_config(256))]

    #[test]
    fn the_document_is_what_serde_yaml_reads(text in yaml()) {
        let ours = read_with(&text, false, None).unwrap().document;
        prop_assert_eq!(&read_with(&text, true, None).unwrap().document, &ours);
        let theirs = serde_yaml::from_str::<Value>(&text);
        match (ours, theirs) {
            (Some(ours), Ok(theirs)) => prop_assert_eq!(ours, theirs, "{}", text),
            // Left to serde_yaml: only what it cannot read alone (`...`, numbers out of
            // JSON's range), or what it refuses.
            (None, theirs) => {
                let long_number = text
                    .split(|c: char| !c.is_ascii_digit())
                    .any(|digits| digits.len() >= 19);
                let indicator_first = text
                    .split(|c: char| c.is_whitespace() || "[]{},".contains(c))
                    .any(|word| word.len() > 1 && word.starts_with([':', '?']));
                prop_assert!(
                    theirs.is_err()
                        || text.contains("...")
                        || text.contains("---")
                        || long_number
                        || indicator_first,
                    "{}", text
                );
            }
            (Some(ours), Err(e)) => prop_assert!(false, "{text}\nread as {ours:?}; serde_yaml: {e}"),
        }
    }
}
