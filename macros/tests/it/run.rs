//! Macro-generated workflows run end to end on an in-memory engine: the step ids the
//! runtime records follow the site manifest the macro emits (DESIGN "Step identity").

use futures::future::join_all;
use reprise::prelude::*;
use reprise::summarize_steps;

#[action]
async fn process_item(input: u32) -> Result<u32, ActionError> {
    Ok(input * 10)
}

#[action(slug = "notify-owner")]
async fn notify(input: String) -> Result<String, ActionError> {
    Ok(input)
}

#[workflow(slug = "it-score")]
async fn score(input: u32) -> Result<u32, WorkflowError> {
    Ok(process_item.run(input).await? + 1)
}

#[workflow(slug = "it-loop")]
async fn looping(ctx: Ctx, input: Vec<u32>) -> Result<u32, WorkflowError> {
    let mut total = 0;
    for item in input {
        total += process_item.run(item).await?;
    }
    ctx.sleep(std::time::Duration::from_millis(1)).await?;
    notify.run(format!("total {total}")).await?;
    notify.run("done".to_owned()).await?;
    Ok(total)
}

#[workflow(slug = "it-parallel")]
async fn parallel(input: Vec<u32>) -> Result<Vec<u32>, WorkflowError> {
    let outputs = join_all(input.into_iter().map(|i| process_item.run(i))).await;
    Ok(outputs.into_iter().collect::<Result<Vec<_>, _>>()?)
}

#[workflow(slug = "it-nested")]
async fn nested(input: u32) -> Result<u32, WorkflowError> {
    let first = score.run(input).await?;
    Ok(score.run(first).await?)
}

#[workflow(slug = "it-pinned")]
async fn pinned(input: String) -> Result<String, WorkflowError> {
    #[step(id = "greeting")]
    let a = notify.run(input).await?;
    notify.run(a.clone()).await?;
    Ok(a)
}

/// Runs `workflow` to its end and returns its output and the correlation ids it recorded.
async fn run_and_list<W: Step>(workflow: &W, input: W::Input) -> (W::Output, Vec<String>) {
    let engine = Engine::builder()
        .discover()
        .expect("registry")
        .build()
        .expect("engine");
    let id = engine.start(workflow, input).await.expect("start");
    let execution = engine.drive(&id).await.expect("drive");
    let reprise::RunOutcome::Completed(output) = execution.outcome else {
        panic!("run did not complete: {:?}", execution.outcome);
    };
    let events = engine.store().events(&id).await.expect("events");
    let ids = summarize_steps(&events).into_iter().map(|s| s.id).collect();
    (serde_json::from_value(output).expect("typed output"), ids)
}

#[tokio::test]
async fn loop_sites_count_occurrences_and_second_sites_get_an_ordinal() {
    let (total, ids) = run_and_list(&looping, vec![1, 2, 3]).await;
    assert_eq!(total, 60);
    assert_eq!(
        ids,
        [
            "process-item#0",
            "process-item#1",
            "process-item#2",
            "sleep#0",
            "notify-owner#0",
            "notify-owner@2#0"
        ]
    );
}

#[tokio::test]
async fn join_all_numbers_steps_in_iteration_order() {
    let (outputs, ids) = run_and_list(&parallel, vec![5, 6, 7]).await;
    assert_eq!(outputs, [50, 60, 70]);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["process-item#0", "process-item#1", "process-item#2"]
    );
}

#[tokio::test]
async fn sub_workflow_steps_are_namespaced_under_the_calling_step() {
    let (output, ids) = run_and_list(&nested, 1).await;
    assert_eq!(output, 111);
    assert!(
        ids.contains(&"it-score#0/process-item#0".to_owned()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"it-score@2#0/process-item#0".to_owned()),
        "{ids:?}"
    );
}

#[tokio::test]
async fn pinned_ids_replace_the_site_key() {
    let (output, ids) = run_and_list(&pinned, "hi".to_owned()).await;
    assert_eq!(output, "hi");
    assert_eq!(ids, ["greeting#0", "notify-owner@2#0"]);
}

#[tokio::test]
async fn an_action_is_a_plain_async_call_outside_workflows() {
    assert_eq!(process_item.run(4).await, Ok(40));
    assert_eq!(<notify as Step>::SLUG, "notify-owner");
}
