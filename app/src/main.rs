//! The `cartd` binary: parse the command line, load settings, start logging,
//! build the application and run it until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use cartd::shutdown::shutdown_pair;
use cartd::{Application, Settings, telemetry};
use clap::{Parser, Subcommand};

/// Shopping carts as short-lived sessions, with the stock in them held exactly once.
#[derive(Debug, Parser)]
#[command(name = "cartd", version, about)]
struct Cli {
    /// A TOML configuration file, applied over the defaults and under `CART__*`
    /// environment variables.
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply pending PostgreSQL migrations and exit.
    Migrate,
    /// Compare each item's `reserved` with the sum of its holds and report
    /// every difference. Exit status 0: consistent (or fixed); 1: differences
    /// found and not fixed; 2: could not check.
    Reconcile {
        /// Set `reserved` to the ledger's sum, moving the difference to or
        /// from `available`, in one transaction.
        #[arg(long)]
        fix: bool,
    },
}

/// mimalloc instead of the system allocator (the default `mimalloc` feature),
/// chosen by measurement: docs/perf.md, "The allocator".
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cartd: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log.format, &settings.log.filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cartd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(serve(settings)),
        Command::Migrate => runtime.block_on(migrate(&settings)),
        Command::Reconcile { fix } => runtime.block_on(reconcile(&settings, fix)),
    }
}

async fn reconcile(settings: &Settings, fix: bool) -> ExitCode {
    let report = match cartd::reconcile::run(settings, fix, &mut std::io::stdout().lock()).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("cartd: {e:#}");
            return ExitCode::from(2);
        }
    };
    let n = report.drifts.len();
    for d in report.drifts.iter().filter(|d| fix && d.shortfall() > 0) {
        eprintln!(
            "cartd: {}: available could give up only {} of {} units; its total grew by {}",
            d.inventory_id,
            d.available,
            d.difference(),
            d.shortfall()
        );
    }
    match (n, report.fixed) {
        (0, _) => eprintln!("cartd: reserved matches the hold ledger for every item"),
        (n, true) => eprintln!("cartd: fixed {n} item(s): reserved now matches the hold ledger"),
        (n, false) => eprintln!("cartd: {n} item(s) differ from the hold ledger; `cartd reconcile --fix` repairs them"),
    }
    if report.consistent() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

async fn migrate(settings: &Settings) -> ExitCode {
    match cartd::compose::migrate(settings).await {
        Ok(applied) if applied.is_empty() => {
            eprintln!("cartd: the database schema is up to date");
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            eprintln!("cartd: applied {}", applied.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cartd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    // Listening for signals from the start: on the `redis` backend the build
    // waits for Redis, and a SIGTERM must end that wait too.
    let (trigger, shutdown) = shutdown_pair();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.fire();
    });
    let app = match Application::build_until(settings, shutdown.clone()).await {
        Ok(Some(app)) => app,
        Ok(None) => {
            eprintln!("cartd: stopped before it started serving");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cartd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let (token, true) = app.admin_token() {
        eprintln!("cartd: no CART__ADMIN__TOKEN set; this run's admin token is {}", token.expose());
    }
    app.run_until(shutdown.stopped()).await;
    ExitCode::SUCCESS
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
