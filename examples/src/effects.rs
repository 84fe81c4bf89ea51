//! An optional effect log: every side-effecting example action appends its idempotency
//! key to it, so tests (and curious users) can count how often an effect really ran.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use reprise::ActionCtx;

/// Where effects are logged: the file named by `REPRISE_EXAMPLES_EFFECT_LOG`, or nowhere.
#[derive(Debug, Default)]
pub struct EffectLog {
    path: Option<PathBuf>,
    lock: Mutex<()>,
}

impl EffectLog {
    /// The log named by the `REPRISE_EXAMPLES_EFFECT_LOG` environment variable, if set.
    pub fn from_env() -> Self {
        EffectLog {
            path: std::env::var_os("REPRISE_EXAMPLES_EFFECT_LOG").map(PathBuf::from),
            lock: Mutex::new(()),
        }
    }

    /// A log writing to `path`.
    pub fn to_file(path: impl Into<PathBuf>) -> Self {
        EffectLog {
            path: Some(path.into()),
            lock: Mutex::new(()),
        }
    }

    /// Appends one line, `<idempotency-key>`, flushed before returning.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn record(&self, cx: &ActionCtx) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{}", cx.idempotency_key())?;
        file.sync_data()
    }
}

/// Records the effect of the action running with `cx` if the engine has an [`EffectLog`].
///
/// # Errors
/// When the log cannot be written.
pub fn record(cx: &ActionCtx) -> std::io::Result<()> {
    match cx.resource::<EffectLog>() {
        Ok(log) => log.record(cx),
        Err(_) => Ok(()),
    }
}
