use reprise::prelude::*;

#[action(credentials = ["github", ("billing", Scope::Org), ("mine", reprise::identity::Scope::User)])]
async fn declared(input: u32, cx: ActionCtx) -> Result<u32, ActionError> {
    let _github = cx.credential("github").await?;
    let name = "billing";
    let _billing = cx.credential(name).await?;
    Ok(input)
}

fn main() {
    use reprise::Step;
    let reprise::__private::StepBehavior::Action { options, .. } = declared::BEHAVIOR else {
        panic!("an action");
    };
    assert_eq!(
        options.credentials,
        &[
            reprise::credentials::CredentialDecl::any("github"),
            reprise::credentials::CredentialDecl::pinned("billing", reprise::credentials::CredentialPin::Org),
            reprise::credentials::CredentialDecl::pinned("mine", reprise::credentials::CredentialPin::User),
        ]
    );
}
