use reprise::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
struct Secret {
    value: String,
}

// A `pub` action's input and output types must be public too: the action's `Step` impl
// names them.
#[action]
pub async fn reveal(input: Secret) -> Result<String, ActionError> {
    Ok(input.value)
}

fn main() {}
