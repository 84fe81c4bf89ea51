//! Expansion snapshots: each test expands a macro on a token stream, pretty-prints the
//! result and compares it with `src/snapshots/`. Accept changes with
//! `INSTA_UPDATE=always cargo test -p reprise-macros` and review the `.snap` diff.

use proc_macro2::TokenStream;
use quote::quote;

use crate::expand::{self, pretty};

fn workflow(args: TokenStream, item: TokenStream) -> String {
    pretty(&expand::workflow(args, item))
}

fn action(args: TokenStream, item: TokenStream) -> String {
    pretty(&expand::action(args, item))
}

#[test]
fn action_with_options() {
    insta::assert_snapshot!(action(
        quote!(
            retries = 3,
            backoff = "500ms",
            timeout = "30s",
            non_retryable = ["not_found"]
        ),
        quote! {
            /// Looks the new user up
            /// and writes a short brief.
            ///
            /// Details that are not part of the description.
            pub async fn research_signup(input: Signup, cx: ActionCtx) -> Result<Brief, ActionError> {
                let _ = cx.idempotency_key();
                Ok(Brief { brief: input.name })
            }
        }
    ));
}

#[test]
fn action_defaults_without_cx() {
    insta::assert_snapshot!(action(
        quote!(slug = "post", crate = "::my_sdk::reprise"),
        quote! {
            async fn post_brief(input: Brief) -> Result<(), ActionError> {
                Ok(())
            }
        }
    ));
}

#[test]
fn workflow_loop_with_a_step() {
    insta::assert_snapshot!(workflow(
        quote!(),
        quote! {
            async fn process_all(ctx: Ctx, input: Vec<Item>) -> Result<u32, WorkflowError> {
                let mut total = 0;
                for item in input {
                    total += process_item.run(item).await?;
                }
                ctx.sleep(Duration::from_secs(60)).await?;
                Ok(total)
            }
        }
    ));
}

#[test]
fn workflow_join_of_two_steps() {
    insta::assert_snapshot!(workflow(
        quote!(slug = "enrich"),
        quote! {
            pub async fn enrich_lead(input: Lead) -> Result<Profile, WorkflowError> {
                let (company, person) = futures::try_join!(
                    lookup_company.run(input.domain.clone()),
                    lookup_person.run(input.email.clone()),
                )?;
                Ok(Profile { company, person })
            }
        }
    ));
}

#[test]
fn workflow_join_all_over_a_map() {
    insta::assert_snapshot!(workflow(
        quote!(),
        quote! {
            async fn hash_files(ctx: Ctx, items: Vec<String>) -> Result<Vec<String>, WorkflowError> {
                let digests = join_all(items.iter().map(|i| hash_file.run(i.clone()))).await;
                digests.into_iter().collect::<Result<Vec<_>, _>>().map_err(Into::into)
            }
        }
    ));
}

#[test]
fn workflow_calls_a_sub_workflow_and_waits() {
    insta::assert_snapshot!(workflow(
        quote!(max_attempts = 5),
        quote! {
            async fn onboarding(ctx: Ctx, input: Signup) -> Result<(), WorkflowError> {
                let profile = enrich_lead.run(Lead::from(&input)).await?;
                notify.run(format!("enriched {}", profile.name)).await?;
                let approval: Approval = ctx.hook().await?;
                ctx.sleep_until(approval.start_at).await?;
                notify.run(format!("approved by {}", approval.by)).await?;
                crate::notify.run(String::from("done")).await?;
                Ok(())
            }
        }
    ));
}

#[test]
fn workflow_pinned_step_ids() {
    insta::assert_snapshot!(workflow(
        quote!(),
        quote! {
            async fn pinned(ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
                #[step(id = "first-notify")]
                let a = notify.run(input).await?;
                #[step(id = "notify")]
                notify.run(a).await?;
                Ok(a)
            }
        }
    ));
}

#[test]
fn signature_errors_keep_the_item() {
    insta::assert_snapshot!(action(
        quote!(retry = 3),
        quote! {
            fn not_async<T>(a: T, b: u8, c: u8) -> T { a }
        }
    ));
}

#[test]
fn body_errors_are_collected() {
    insta::assert_snapshot!(workflow(
        quote!(),
        quote! {
            async fn bad(input: u32) -> Result<u32, WorkflowError> {
                let now = std::time::SystemTime::now();
                tokio::spawn(async {});
                my_macro!(notify.run(1));
                #[step(id = "a")]
                notify.run(1).await?;
                #[step(id = "a")]
                notify.run(2).await?;
                x.run(1, 2);
                Ok(input)
            }
        }
    ));
}

#[test]
fn workflow_queue_names_its_queue_and_bad_names_are_errors() {
    let item = quote! {
        async fn summarize(input: u32) -> Result<u32, WorkflowError> {
            Ok(input)
        }
    };
    let good = workflow(quote!(queue = "llm"), item.clone());
    assert!(
        good.contains(r#"queue: ::core::option::Option::Some("llm")"#),
        "{good}"
    );
    assert!(!good.contains("compile_error"), "{good}");
    let none = workflow(quote!(), item.clone());
    assert!(!none.contains("queue:"), "no queue unless named: {none}");
    let bad = workflow(quote!(queue = "bad name"), item.clone());
    assert!(
        bad.contains("compile_error") && bad.contains("is not a queue name"),
        "{bad}"
    );
    let twice = workflow(quote!(queue = "a", queue = "b"), item.clone());
    assert!(twice.contains("compile_error"), "{twice}");
    let near = workflow(quote!(task_queue = "llm"), item);
    assert!(near.contains("did you mean `queue"), "{near}");
}

/// "Checked at registration": a literal `.credential("x")` the action does not declare is
/// a compile error at the literal; bad pins and names are errors at their tokens.
#[test]
fn credentials_are_declared_and_checked() {
    let expanded = action(
        quote!(credentials = ["github", ("billing", Scope::Org)]),
        quote! {
            async fn fetch(input: u32, cx: ActionCtx) -> Result<u32, ActionError> {
                let _ = cx.credential("github").await?;
                let _ = cx.credential("billing").await?;
                Ok(input)
            }
        },
    );
    assert!(!expanded.contains("compile_error"), "{expanded}");
    assert!(
        expanded.contains(r#"CredentialDecl::any("github")"#)
            && expanded.contains("CredentialDecl::pinned(")
            && expanded.contains("CredentialPin::Org"),
        "{expanded}"
    );

    let undeclared = action(
        quote!(credentials = ["github"]),
        quote! {
            async fn fetch(input: u32, cx: ActionCtx) -> Result<u32, ActionError> {
                let _ = cx.credential("slack").await?;
                Ok(input)
            }
        },
    );
    assert!(
        undeclared.contains(
            "credential `slack` is not declared by this action: an action reads only the credentials it declares; add it: `#[action(credentials = [\\\"github\\\", \\\"slack\\\"])]`"
        ),
        "{undeclared}"
    );

    for (args, expected) in [
        (
            quote!(credentials = [("billing", Scope::Team)]),
            "`Team` is not a scope kind: pin a credential to `Scope::User`, `Scope::Project` or `Scope::Org`",
        ),
        (
            quote!(credentials = [("billing", Scope::User("ada"))]),
            "a pin names the scope kind only, the id comes from the run",
        ),
        (
            quote!(credentials = ["github", "github"]),
            "credential `github` is declared twice; declare it once",
        ),
        (
            quote!(credentials = ["open ai"]),
            "`open ai` is not a credential name",
        ),
        (
            quote!(credential = ["github"]),
            "did you mean `credentials = [\\\"github\\\"]`?",
        ),
    ] {
        let expanded = action(
            args,
            quote! {
                async fn fetch(input: u32) -> Result<u32, ActionError> { Ok(input) }
            },
        );
        assert!(expanded.contains(expected), "{expected}: {expanded}");
    }
    let on_workflow = workflow(
        quote!(credentials = ["github"]),
        quote! {
            async fn wf(input: u32) -> Result<u32, WorkflowError> { Ok(input) }
        },
    );
    assert!(
        on_workflow.contains("credentials are declared by the actions that read them"),
        "{on_workflow}"
    );
}
