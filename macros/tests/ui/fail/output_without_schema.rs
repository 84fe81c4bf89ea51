use reprise::prelude::*;

struct Brief {
    text: String,
}

#[action]
async fn write_brief(input: String) -> Result<Brief, ActionError> {
    Ok(Brief { text: input })
}

fn main() {}
