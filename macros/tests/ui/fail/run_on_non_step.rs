use reprise::prelude::*;

struct Job;

impl Job {
    async fn run(&self, input: u32) -> Result<u32, ActionError> {
        Ok(input)
    }
}

#[workflow]
async fn uses_job(input: u32) -> Result<u32, WorkflowError> {
    let job = Job;
    Ok(job.run(input).await?)
}

fn main() {}
