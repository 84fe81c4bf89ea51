// The file system: std::fs, tokio::fs, `File::open` / `create`, and a `use` of `std::fs`.
use reprise::prelude::*;
use std::fs::File;

#[workflow]
async fn files(input: String) -> Result<String, WorkflowError> {
    use std::fs;
    let text = std::fs::read_to_string(&input).unwrap_or_default();
    let _ = fs::metadata(&input);
    let _ = tokio::fs::write(&input, "x").await;
    let _ = File::open(&input);
    let _ = File::create(&input);
    Ok(text)
}

fn main() {}
