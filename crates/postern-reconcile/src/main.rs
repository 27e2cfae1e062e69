use std::process::ExitCode;

use clap::Parser;
use postern_reconcile::args::Args;
use postern_reconcile::run;

fn main() -> ExitCode {
    let args = Args::parse();
    // The Kubernetes client's rustls needs a process-wide crypto provider,
    // because the dependency tree enables two (the AWS SDK brings aws-lc-rs).
    postern::server::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run::run(&args))
}
