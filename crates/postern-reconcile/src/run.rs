//! One reconcile run, and the `--watch` loop around it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use postern::config::{Config, Problems};

use crate::args::Args;
use crate::aws::{self, AwsError, Clients};
use crate::config_map::{self, ConfigMapError};
use crate::desired::Desired;
use crate::endpoints_file::{self, WriteError, WriteOutcome};
use crate::observed::{Observed, STATE_PENDING};
use crate::plan::{self, EndpointList, Options, PlanError};
use crate::report;

/// How long a run waits for connections it accepted to leave `pending`, so
/// that the endpoints file it writes already admits them.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const SETTLE_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{} in the vars file:\n{problems}", problems.count_text())]
    Config { problems: Problems },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    ConfigMap(#[from] ConfigMapError),
}

/// The destination of the endpoints file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    File(PathBuf),
    ConfigMap(config_map::Target),
    /// Neither `--endpoints-file`, `--endpoints-configmap` nor
    /// `privatelink.endpoints_file` names one.
    Nowhere,
}

/// Runs once, or repeatedly with `--watch`, and returns the exit code.
pub async fn run(args: &Args) -> ExitCode {
    let Some(interval) = args.watch else {
        return match run_once(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    };

    // A task of its own installs the signal handlers during the first run,
    // so a signal that arrives mid-run ends the loop after that run.
    let (stopped, mut stop) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        termination().await;
        let _ = stopped.send(());
    });
    loop {
        if let Err(error) = run_once(args).await {
            eprintln!("error: {error}; the next run starts in {interval:?}");
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = &mut stop => {
                println!("stopping on a termination signal");
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// Reads, plans, prints, and unless `--dry-run`, applies and writes the
/// endpoints file.
pub async fn run_once(args: &Args) -> Result<(), RunError> {
    let config = Config::load_without_tls_files(&args.config)
        .map_err(|problems| RunError::Config { problems })?;
    let desired = Desired::from_config(&config);
    let clients = Clients::new(&desired.home_region).await;
    let dry_run = if args.dry_run { " (dry run)" } else { "" };
    println!(
        "postern reconcile: cluster {} in {}{dry_run}",
        desired.cluster, clients.region
    );

    let observed = aws::read_observed(&clients, &desired.cluster).await?;
    if let Some(balancer) = &observed.balancer {
        println!("load balancer {} ({})", balancer.name, balancer.arn);
    }
    let options = Options {
        prune: args.prune,
        reject_accepted: args.reject_accepted,
    };
    let plan = plan::plan(&desired, &observed, options)?;
    for line in report::plan_lines(&plan) {
        println!("plan: {line}");
    }
    for warning in report::plan_warnings(&plan) {
        eprintln!("warning: {warning}");
    }

    let target = endpoints_target(args, &desired);
    if args.dry_run {
        if let Some(service) = &observed.service {
            print_lines(report::service_lines(service));
        }
        if let Some(list) = &plan.endpoints {
            print_endpoints_preview(&target, list);
        }
        return Ok(());
    }

    let changed = !plan.changes_nothing();
    aws::apply(&clients, &plan).await?;
    let Some(_) = desired.gate else {
        return Ok(());
    };
    let after = if changed {
        let mut after = aws::read_observed(&clients, &desired.cluster).await?;
        settle_accepted(&clients, &plan, &mut after).await?;
        after
    } else {
        observed
    };
    if let Some(service) = &after.service {
        print_lines(report::service_lines(service));
    }
    let list = plan::endpoint_list(&desired.home_region, &after.connections);
    write_endpoints(&target, &list).await
}

/// Picks where the endpoints file goes: `--endpoints-configmap`,
/// `--endpoints-file`, or the file the vars file names.
fn endpoints_target(args: &Args, desired: &Desired) -> Target {
    if let Some(name) = &args.endpoints_configmap {
        return Target::ConfigMap(config_map::Target {
            name: name.clone(),
            namespace: args.namespace.clone(),
            key: postern::render::ENDPOINTS_KEY.to_owned(),
        });
    }
    let file = args.endpoints_file.clone().or_else(|| {
        desired
            .gate
            .as_ref()
            .and_then(|gate| gate.endpoints_file.clone())
    });
    file.map_or(Target::Nowhere, Target::File)
}

/// Waits while a connection this run accepted is still `pending`.
async fn settle_accepted(
    clients: &Clients,
    plan: &plan::Plan,
    after: &mut Observed,
) -> Result<(), AwsError> {
    let Some(service) = &after.service else {
        return Ok(());
    };
    let service_id = service.id.clone();
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let pending = after.connections.iter().any(|c| {
            c.state == STATE_PENDING && plan.accept.iter().any(|a| a.endpoint_id == c.endpoint_id)
        });
        if !pending || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(SETTLE_POLL).await;
        after.connections = aws::read_connections(clients, &service_id).await?;
    }
}

async fn write_endpoints(target: &Target, list: &EndpointList) -> Result<(), RunError> {
    for (connection, reason) in &list.skipped {
        eprintln!(
            "warning: {} is left out of the endpoints file: {reason}",
            connection.endpoint_id
        );
    }
    let text = endpoints_file::render(&list.entries);
    let (outcome, place) = match target {
        Target::File(path) => (
            endpoints_file::write(path, &text)?,
            path.display().to_string(),
        ),
        Target::ConfigMap(config_map) => (
            config_map::write(config_map, &text).await?,
            format!("in ConfigMap {}", config_map.name),
        ),
        Target::Nowhere => {
            eprintln!(
                "warning: the vars file names no privatelink.endpoints_file, and neither \
                 --endpoints-file nor --endpoints-configmap was given, so no endpoints file \
                 was written"
            );
            return Ok(());
        }
    };
    let verb = match outcome {
        WriteOutcome::Written => "wrote",
        WriteOutcome::Unchanged => "unchanged:",
    };
    println!(
        "{verb} endpoints file {place} ({} endpoints)",
        list.entries.len()
    );
    Ok(())
}

fn print_endpoints_preview(target: &Target, list: &EndpointList) {
    let place = match target {
        Target::File(path) => path.display().to_string(),
        Target::ConfigMap(config_map) => format!("in ConfigMap {}", config_map.name),
        Target::Nowhere => "(none named)".to_owned(),
    };
    println!("endpoints file {place} would hold:");
    print!("{}", endpoints_file::render(&list.entries));
}

fn print_lines(lines: Vec<String>) {
    for line in lines {
        println!("{line}");
    }
}

/// Completes on SIGTERM or SIGINT.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
