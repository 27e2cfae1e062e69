use std::process::ExitCode;

#[cfg(not(feature = "system-allocator"))]
use mimalloc::MiMalloc;

use clap::Parser;
use postern::cli::{Cli, ClientCommand, Command, TokenCommand};
use postern::runtime::serve::{self, StartError};
use postern::{quickstart, render, server, telemetry, token};

/// mimalloc, because a proxy allocates and frees many small buffers per
/// request across threads, where it is faster than glibc's malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    server::tls::install_crypto_provider();
    match cli.command {
        Command::Check {
            file,
            config,
            skip_files,
        } => match file.or(config) {
            Some(file) if skip_files => check_without_files(&file),
            Some(file) => check(&file),
            None => ExitCode::from(2),
        },
        Command::Relay(args) => {
            telemetry::init_logging();
            run("the relay", async move {
                quickstart::nlb::relay_command(args).await
            })
        }
        Command::Explain(args) => postern::explain::run(args),
        Command::Token {
            command: TokenCommand::New { name },
        } => print_entry(token::new_entry(&name)),
        Command::Client {
            command: ClientCommand::New { id },
        } => print_entry(postern::identity::clients::new_entry(&id)),
        Command::Passwd { name } => print_entry(postern::passwd::run(name.as_deref())),
        Command::Serve {
            file,
            config,
            gate,
            workers,
        } => {
            let Some(config) = file.or(config) else {
                return ExitCode::from(2);
            };
            telemetry::init_logging();
            postern::runtime::workers::set_count(
                workers.map_or_else(postern::runtime::workers::default_count, usize::from),
            );
            let _access_log = telemetry::access::init();
            run("postern", async move {
                serve::serve(&config, gate, serve::termination_signal(), |_| {}).await
            })
        }
        Command::Render {
            config,
            out,
            image,
            namespace,
        } => render_manifests(&config, &out, render::Options { image, namespace }),
        Command::Reconcile { args } => match postern::cli::run_reconcile(&args) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Command::Quickstart { port } => {
            telemetry::init_logging();
            postern::runtime::workers::set_count(postern::runtime::workers::default_count());
            let _access_log = telemetry::access::init();
            run("postern", quickstart::run(port))
        }
    }
}

/// Prints a new credential and its vars entry, or the error.
fn print_entry(entry: Result<String, String>) -> ExitCode {
    match entry {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    match serve::load(file) {
        Ok((config, endpoints)) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            let apps = counted(config.enabled_apps().count(), "enabled app");
            let private = match &config.private {
                Some(p) => format!(
                    "private gate on {} ({}, {})",
                    p.gate.listen,
                    counted(p.allowed_principals.len(), "allowed principal"),
                    counted(endpoints.len(), "endpoint")
                ),
                None => "private gate disabled".to_owned(),
            };
            println!(
                "{}: valid: {apps}, public gate on {}, {private}",
                file.display(),
                config.public.listen
            );
            ExitCode::SUCCESS
        }
        Err(problems) => report_problems(&problems),
    }
}

/// Validates a vars file as `check --skip-files` does, and lists each file
/// that it names as not read.
fn check_without_files(file: &std::path::Path) -> ExitCode {
    match serve::load_without_files(file) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            for unread in &config.unread_files {
                eprintln!("not read: {unread}");
            }
            let apps = counted(config.enabled_apps().count(), "enabled app");
            let private = match &config.private {
                Some(p) => format!(
                    "private gate on {} ({})",
                    p.gate.listen,
                    counted(p.allowed_principals.len(), "allowed principal"),
                ),
                None => "private gate disabled".to_owned(),
            };
            println!(
                "{}: valid except the files it names: {apps}, public gate on {}, {private}; \
                 {} not read (--skip-files)",
                file.display(),
                config.public.listen,
                counted(config.unread_files.len(), "file"),
            );
            ExitCode::SUCCESS
        }
        Err(problems) => report_problems(&problems),
    }
}

/// Prints every problem and their count, for `check`.
fn report_problems(problems: &postern::config::Problems) -> ExitCode {
    eprint!("{problems}");
    eprintln!("{} found", problems.count_text());
    ExitCode::FAILURE
}

/// Counts things in words, such as `1 endpoint` or `2 endpoints`.
fn counted(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

fn render_manifests(
    vars: &std::path::Path,
    out: &std::path::Path,
    options: render::Options,
) -> ExitCode {
    match render::render_to_dir(vars, out, &options) {
        Ok(written) => {
            for warning in &written.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: wrote {} files to {}",
                vars.display(),
                written.files.len(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(render::RenderError::Config(problems)) => {
            eprint!("{problems}");
            eprintln!("{} found; nothing was written", problems.count_text());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a long-running command; `what` names it in the message when it
/// fails to start.
fn run(what: &str, future: impl std::future::Future<Output = Result<(), StartError>>) -> ExitCode {
    // The main runtime runs the admin listener, reloads and signals; the
    // gates run on worker threads of their own (runtime::workers).
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
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(problems)) => {
            eprint!("{problems}");
            eprintln!(
                "{what} did not start: {} in the config",
                problems.count_text()
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{what} did not start: {error}");
            ExitCode::FAILURE
        }
    }
}
