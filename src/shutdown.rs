//! One cancellation token stops the HTTP server and every background loop; SIGINT or
//! SIGTERM cancels it, and in-flight work drains before the process exits. Handlers are
//! registered before `on_signal` returns, so a signal sent right after start-up (once the
//! "serving" line is logged) is never handled by the default action.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM.
#[cfg(unix)]
pub fn on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    tokio::spawn(async move {
        match streams {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
        token.cancel();
    });
}

#[cfg(not(unix))]
pub fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        token.cancel();
    });
}
