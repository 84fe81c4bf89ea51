use reprise::prelude::*;

#[derive(Debug)]
struct Oops;

#[action]
async fn fails(input: u32) -> Result<u32, Oops> {
    if input == 0 {
        return Err(Oops);
    }
    Ok(input)
}

fn main() {}
