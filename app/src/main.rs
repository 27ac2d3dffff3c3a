//! The `cartd` binary: parse the command line, load settings, start logging,
//! build the application and run it until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use cartd::{Application, Settings, telemetry};
use clap::Parser;

/// Shopping carts as short-lived sessions, with the stock in them held exactly once.
#[derive(Debug, Parser)]
#[command(name = "cartd", version, about)]
struct Cli {
    /// A TOML configuration file, applied over the defaults and under `CART__*`
    /// environment variables.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cartd: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format, &settings.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cartd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("cartd: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        if let (token, true) = app.admin_token() {
            eprintln!("cartd: no CART__ADMIN__TOKEN set; this run's admin token is {}", token.expose());
        }
        app.run_until(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
