// Environment reads only warn (they compile), a warning can be allowed per statement, and
// `.timeout(..)` on a hook (a recorded deadline) is not a race.
use reprise::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
struct Approval {
    by: String,
}

#[workflow]
async fn configured(ctx: Ctx, input: String) -> Result<String, WorkflowError> {
    let base = std::env::var("REPRISE_UI_BASE").unwrap_or_else(|_| "http://x".to_owned());
    #[allow(deprecated)]
    let home = std::env::var_os("HOME").is_some();
    let approval = ctx.hook::<Approval>().timeout("2d");
    let _ = approval.resume_url();
    let _ = home;
    Ok(format!("{base}/{input}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let engine = Engine::builder().discover().unwrap().build().unwrap();
    let _ = engine.run(&configured, "a".to_owned()).await.unwrap();
}
