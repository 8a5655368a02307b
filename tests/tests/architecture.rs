//! ARCHITECTURE.md names files and functions (`relay/src/web/ws.rs::open`,
//! `proto/src/io.rs::FrameReader::read_frame`): every name it gives must
//! exist, so the page cannot drift from the code unnoticed when something
//! is moved or renamed.
//!
//! A reference is a backticked path ending in `.rs`, `.js`, `.mjs`, `.md`,
//! `.sh` or `.toml`, optionally followed by `::item` or `::Type::item`. The
//! file must exist; each item must be declared in it (`fn item`,
//! `struct item`, `const item`, ... in Rust, `function item`, `const item`
//! or a method `item(` in JavaScript).

use std::path::Path;

const EXTENSIONS: &[&str] = &[".rs", ".js", ".mjs", ".md", ".sh", ".toml"];

/// Rust declarations an item name may follow.
const RUST_KEYWORDS: &[&str] = &[
    "fn",
    "struct",
    "enum",
    "trait",
    "const",
    "static",
    "type",
    "mod",
    "macro_rules!",
];

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `(file, items)` for each backticked reference in `text`.
fn references(text: &str) -> Vec<(String, Vec<String>)> {
    let mut refs = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        // Odd pieces are inside backticks.
        if i % 2 == 0 || span.contains(char::is_whitespace) {
            continue;
        }
        let (file, items) = match EXTENSIONS
            .iter()
            .filter_map(|ext| span.find(ext).map(|at| at + ext.len()))
            .min()
        {
            Some(end) => (&span[..end], &span[end..]),
            None => continue,
        };
        if !file.contains('/') && !file.ends_with(".md") {
            continue;
        }
        let items = items
            .strip_prefix("::")
            .map(|rest| {
                rest.split("::")
                    .map(|s| s.trim_end_matches("()").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        refs.push((file.to_owned(), items));
    }
    refs
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `word` occurs in `source` right after `before` (then a space,
/// and generics or `(` after it are fine) as a whole identifier.
fn declared_after(source: &str, before: &str, word: &str) -> bool {
    let needle = format!("{before} {word}");
    source.match_indices(&needle).any(|(at, _)| {
        let start_ok = source[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !is_ident(c));
        let end_ok = source[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_ident(c));
        start_ok && end_ok
    })
}

fn declares(file: &str, source: &str, item: &str) -> bool {
    if file.ends_with(".rs") {
        RUST_KEYWORDS.iter().any(|k| declared_after(source, k, item))
            // An enum variant or a field.
            || source.lines().any(|l| {
                let l = l.trim_start();
                l.strip_prefix(item).is_some_and(|rest| {
                    rest.starts_with(',') || rest.starts_with(" {") || rest.starts_with('(') || rest.starts_with(':')
                })
            })
    } else if file.ends_with(".js") || file.ends_with(".mjs") {
        ["function", "const", "let", "class"]
            .iter()
            .any(|k| declared_after(source, k, item))
            || source.lines().any(|l| {
                let l = l.trim_start();
                l.strip_prefix("async ")
                    .unwrap_or(l)
                    .strip_prefix(item)
                    .is_some_and(|rest| rest.starts_with('('))
            })
    } else {
        source.contains(item)
    }
}

#[test]
fn every_file_and_function_architecture_md_names_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the repository's root");
    let refs = references(&text);
    assert!(
        refs.iter().filter(|(_, items)| !items.is_empty()).count() >= 20,
        "ARCHITECTURE.md should walk the data path with file::function references"
    );
    let mut missing = Vec::new();
    for (file, items) in &refs {
        let Ok(source) = std::fs::read_to_string(root().join(file)) else {
            missing.push(format!("{file} (no such file)"));
            continue;
        };
        for item in items {
            if !declares(file, &source, item) {
                missing.push(format!("{file}::{item}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what does not exist:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_check_reads_references_as_written() {
    let refs = references(
        "see `relay/src/web/ws.rs::open` and `proto/src/io.rs::FrameReader::read_frame`, \
         `docs/PROTOCOL.md`, not `cargo test` or `Relay::start`",
    );
    assert_eq!(
        refs,
        vec![
            ("relay/src/web/ws.rs".into(), vec!["open".into()]),
            (
                "proto/src/io.rs".into(),
                vec!["FrameReader".into(), "read_frame".into()]
            ),
            ("docs/PROTOCOL.md".into(), vec![]),
        ]
    );
    let src = "pub async fn open(\nstruct FrameReader<R> {\n    Busy,\n";
    assert!(declares("a.rs", src, "open"));
    assert!(declares("a.rs", src, "FrameReader"));
    assert!(declares("a.rs", src, "Busy"));
    assert!(!declares("a.rs", src, "ope"));
    assert!(!declares("a.rs", src, "read_frame"));
}
