//! Keeping a run's lease alive while it executes (DESIGN "Running": leases with fencing).

use std::time::Duration;

use super::{Engine, RunControl};
use crate::error::EngineError;
use crate::store::Lease;

/// Renews `lease` every third of the lease duration until it is lost, then returns
/// [`EngineError::LeaseLost`]; never returns while the lease is held, nor once the
/// execution's last append gave it back ([`RunControl::releasing`]). Passes a
/// cancellation request seen on renewal to `control`. A renewal that fails (store down)
/// is retried until the lease would expire; past that, the lease counts as lost, since
/// another worker may already have claimed the run.
pub(super) async fn keep(engine: &Engine, mut lease: Lease, control: RunControl) -> EngineError {
    let period = engine.lease_duration() / 3;
    // Failures are logged once per streak (with the run id), and the recovery once.
    let mut failing = false;
    loop {
        // Real time, not the engine clock: a virtual clock in tests must not be advanced
        // by lease bookkeeping.
        tokio::time::sleep(period.max(Duration::from_millis(10))).await;
        let now = engine.now();
        match engine
            .store()
            .renew(&lease, now + engine.lease_delta())
            .await
        {
            Ok(Some(renewed)) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(run = %lease.run_id, "lease renewed again");
                }
                if renewed.cancel_requested {
                    control.cancel.cancel();
                }
                if let Some(by) = &renewed.pause_requested {
                    control.request_pause(by);
                }
                lease = renewed;
            }
            // The execution's last append gave the lease back: not a loss. (Had another
            // worker taken the run over, that append fails with `LeaseLost` by itself.)
            Ok(None) if control.releasing() => std::future::pending::<()>().await,
            Ok(None) => {
                return EngineError::LeaseLost {
                    run: lease.run_id.to_string(),
                };
            }
            Err(error) if now < lease.expires_at => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        run = %lease.run_id,
                        %error,
                        expires_at = %lease.expires_at,
                        "could not renew lease; retrying until it expires"
                    );
                }
            }
            Err(_) => {
                return EngineError::LeaseLost {
                    run: lease.run_id.to_string(),
                };
            }
        }
    }
}
