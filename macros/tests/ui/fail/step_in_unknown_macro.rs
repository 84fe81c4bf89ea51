use reprise::prelude::*;

#[action]
async fn notify(input: String) -> Result<(), ActionError> {
    let _ = input;
    Ok(())
}

macro_rules! twice {
    ($e:expr) => {{
        $e.await?;
        $e.await?;
    }};
}

#[workflow]
async fn hidden(input: String) -> Result<(), WorkflowError> {
    twice!(notify.run(input.clone()));
    Ok(())
}

fn main() {}
