use reprise::prelude::*;

struct MyError;

#[workflow]
async fn wrong_error(input: u32) -> Result<u32, MyError> {
    if input == 0 {
        return Err(MyError);
    }
    Ok(input)
}

fn main() {}
