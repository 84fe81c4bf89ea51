// Random numbers and ids: rand, fastrand, getrandom, uuid, ulid.
use reprise::prelude::*;

// Stand-ins for crates this test does not depend on: the macro only sees paths.
mod rand {
    pub fn random<T: Default>() -> T {
        T::default()
    }
    pub fn rng() {}
    pub fn thread_rng() {}
    pub mod rngs {
        pub struct OsRng;
        pub struct StdRng;
        impl StdRng {
            pub fn from_os_rng() {}
            pub fn seed_from_u64(_: u64) {}
        }
    }
}
mod fastrand {
    pub fn u32(_: std::ops::RangeFull) -> u32 {
        4
    }
}
mod getrandom {
    pub fn u64() {}
}
mod uuid {
    pub struct Uuid;
    impl Uuid {
        pub fn new_v4() {}
        pub fn now_v7() {}
    }
}
mod ulid {
    pub struct Ulid;
    impl Ulid {
        pub fn new() {}
    }
}

#[workflow]
async fn dice(ctx: Ctx, input: u32) -> Result<u32, WorkflowError> {
    let roll: u32 = rand::random();
    rand::rng();
    rand::thread_rng();
    let _ = rand::rngs::OsRng;
    rand::rngs::StdRng::from_os_rng();
    let _ = fastrand::u32(..);
    getrandom::u64();
    uuid::Uuid::new_v4();
    uuid::Uuid::now_v7();
    ulid::Ulid::new();
    // Seeded from a recorded value, an RNG replays identically: allowed.
    rand::rngs::StdRng::seed_from_u64(ctx.random());
    Ok(input + roll)
}

fn main() {}
