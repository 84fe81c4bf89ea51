//! Reading a workflow file's text: the YAML front matter of a `.md` file (or the whole
//! of a `.yaml` one), the Markdown body, and the YAML parsed into a node tree that keeps
//! every node's position (`marked-yaml`).

use std::path::Path;

use super::FileError;
use super::program::Pos;

/// A file's parts: the YAML text, the line it starts on (1-based) and the Markdown body.
pub(crate) struct Source<'a> {
    /// The YAML text (front matter, or the whole file).
    pub(crate) yaml: &'a str,
    /// The line of the file the YAML's first line is on.
    pub(crate) first_line: u32,
    /// The Markdown body after the front matter (empty for YAML files).
    pub(crate) markdown: &'a str,
}

/// Splits `text` (the contents of `path`) into YAML and Markdown.
///
/// # Errors
/// A `.md` file that does not start with a `---` line, or whose front matter is not
/// closed by another `---` line.
pub(crate) fn split<'a>(path: &Path, text: &'a str) -> Result<Source<'a>, FileError> {
    let is_markdown = path.extension().and_then(|e| e.to_str()) == Some("md");
    if !is_markdown {
        return Ok(Source {
            yaml: text,
            first_line: 1,
            markdown: "",
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return Err(FileError::new(
            path,
            Pos { line: 1, column: 1 },
            "a Markdown workflow file must start with YAML front matter",
        )
        .help("put the workflow between two `---` lines at the top of the file"));
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Ok(Source {
                yaml: &rest[..offset],
                first_line: 2,
                markdown: &rest[offset + line.len()..],
            });
        }
        offset += line.len();
    }
    Err(FileError::new(
        path,
        Pos { line: 1, column: 1 },
        "the YAML front matter is not closed",
    )
    .help("end the front matter with a line holding only `---`"))
}
