use reprise::prelude::*;

#[derive(Serialize, Deserialize)]
struct Signup {
    email: String,
}

#[action]
async fn research(input: Signup) -> Result<String, ActionError> {
    Ok(input.email)
}

fn main() {}
