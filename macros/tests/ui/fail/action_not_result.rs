use reprise::prelude::*;

#[action]
async fn plain_output(input: u32) -> u32 {
    input
}

#[action]
async fn no_output(input: u32) {
    let _ = input;
}

fn main() {}
