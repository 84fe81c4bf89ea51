// Clocks of std, tokio, chrono, time and jiff; `UNIX_EPOCH.elapsed()`.
use reprise::prelude::*;
use std::time::{SystemTime, UNIX_EPOCH};

// Stand-ins for crates this test does not depend on: the macro only sees paths.
mod chrono {
    pub struct Utc;
    pub struct Local;
    impl Utc {
        pub fn now() {}
    }
    impl Local {
        pub fn now() {}
        pub fn today() {}
    }
}
mod time {
    pub struct OffsetDateTime;
    impl OffsetDateTime {
        pub fn now_utc() {}
    }
}
mod jiff {
    pub struct Timestamp;
    pub struct Zoned;
    impl Timestamp {
        pub fn now() {}
    }
    impl Zoned {
        pub fn now() {}
    }
}

#[workflow]
async fn clocks(input: u32) -> Result<u32, WorkflowError> {
    let _ = std::time::Instant::now();
    let _ = tokio::time::Instant::now();
    let _ = SystemTime::now();
    let _ = UNIX_EPOCH.elapsed();
    chrono::Utc::now();
    chrono::Local::now();
    chrono::Local::today();
    time::OffsetDateTime::now_utc();
    jiff::Timestamp::now();
    jiff::Zoned::now();
    Ok(input)
}

fn main() {}
