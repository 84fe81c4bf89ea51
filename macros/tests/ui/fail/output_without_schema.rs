use reprise::prelude::*;

// Serializable but without a JSON Schema: the error names the missing derive. (Deriving
// nothing would also list serde's implementors, which vary with the features enabled.)
#[derive(Serialize, Deserialize)]
struct Brief {
    text: String,
}

#[action]
async fn write_brief(input: String) -> Result<Brief, ActionError> {
    Ok(Brief { text: input })
}

fn main() {}
