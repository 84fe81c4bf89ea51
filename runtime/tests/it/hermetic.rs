//! `Engine::builder()` reads no environment variable; `EngineBuilder::from_env()` does.
//!
//! Environment variables cannot be set safely inside a multi-threaded test binary, so the
//! test starts this same binary again with them set and runs the check there.

use reprise::{Engine, EngineBuilder, RunId};

const CHILD: &str = "hermetic::builders_in_a_configured_environment";

#[test]
fn engine_builder_ignores_the_environment_and_from_env_reads_it() {
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new(exe)
        .args([CHILD, "--exact", "--ignored", "--nocapture"])
        .env("OPENAI_API_KEY", "sk-from-the-developers-shell")
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env("REPRISE_LLM_MODEL", "openai/gpt-from-env")
        .env("REPRISE_PUBLIC_URL", "https://public.example")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run by engine_builder_ignores_the_environment_and_from_env_reads_it"]
fn builders_in_a_configured_environment() {
    let run = RunId::from("run-1");
    let hermetic = Engine::builder().build().unwrap();
    assert_eq!(hermetic.default_model(), None);
    assert!(
        hermetic.llm_router().route("openai/gpt-4o-mini").is_err(),
        "no provider from OPENAI_API_KEY"
    );
    assert!(
        hermetic
            .hook_resume_url(&run, "hook#0")
            .starts_with("http://127.0.0.1:8080/hooks/")
    );

    let configured = EngineBuilder::from_env().build().unwrap();
    assert_eq!(
        configured.default_model().as_deref(),
        Some("openai/gpt-from-env")
    );
    assert!(configured.llm_router().route("openai/gpt-4o-mini").is_ok());
    assert!(
        configured
            .hook_resume_url(&run, "hook#0")
            .starts_with("https://public.example/hooks/")
    );
    // What the code sets wins over the environment.
    let overridden = EngineBuilder::from_env()
        .default_model("local/model")
        .public_url("http://127.0.0.1:9999")
        .build()
        .unwrap();
    assert_eq!(overridden.default_model().as_deref(), Some("local/model"));
    assert!(
        overridden
            .hook_resume_url(&run, "hook#0")
            .starts_with("http://127.0.0.1:9999/hooks/")
    );
}
