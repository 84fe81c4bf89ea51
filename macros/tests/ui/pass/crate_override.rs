// `crate = "…"` points the generated code at a re-export of reprise.
#![deny(warnings)]

mod sdk {
    pub use reprise;
}

use reprise::prelude::{ActionError, WorkflowError};

#[reprise::action(crate = "crate::sdk::reprise")]
async fn echo(input: String) -> Result<String, ActionError> {
    Ok(input)
}

#[reprise::workflow(crate = "crate::sdk::reprise", slug = "echo-twice", max_attempts = 1)]
async fn echo_twice(input: String) -> Result<String, WorkflowError> {
    let once = echo.run(input).await?;
    Ok(echo.run(once).await?)
}

fn main() {
    use reprise::Step;
    assert_eq!(<echo_twice as Step>::SLUG, "echo-twice");
}
