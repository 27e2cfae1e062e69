//! The command line of `postern reconcile`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Bring the private gate's AWS PrivateLink endpoint service in line with
/// the vars file, and write the endpoints file that the gate admits
/// endpoints from.
///
/// Finds the private gate's network load balancer by its tags, ensures an
/// endpoint service on it with acceptance required and the private DNS name
/// *.internal.<cluster.hostname>, makes its allowed principals equal
/// allowed_principals, accepts the pending endpoint connections of allowed
/// accounts and rejects the others. AWS credentials, region and endpoint
/// URLs come from the AWS SDK's standard environment variables and files.
#[derive(Debug, Parser)]
#[command(name = "postern-reconcile", bin_name = "postern reconcile", version)]
pub struct Args {
    /// The vars file. TLS files it names are not read.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Print the plan and the endpoints file, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete the endpoint service when the private gate is disabled, after
    /// rejecting its connections. Without it a disabled gate's service stays.
    #[arg(long)]
    pub prune: bool,
    /// Also reject connections that AWS already accepted whose owner is no
    /// longer the account of an allowed principal (or whose region is no
    /// longer supported). Removing a principal alone does not cut them.
    #[arg(long)]
    pub reject_accepted: bool,
    /// Run again after each INTERVAL (such as 60s or 5m) until SIGTERM or
    /// SIGINT, re-reading the vars file every time. A failed run is printed
    /// and the next one goes ahead.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
    pub watch: Option<Duration>,
    /// Write the endpoints file here instead of the privatelink.endpoints_file
    /// that the vars file names.
    #[arg(long, value_name = "FILE")]
    pub endpoints_file: Option<PathBuf>,
    /// Write the endpoints file into this ConfigMap, under the key
    /// endpoints.yaml, through the Kubernetes API instead of into a file,
    /// as the reconcile CronJob does. The ConfigMap must exist.
    #[arg(long, value_name = "NAME", conflicts_with = "endpoints_file")]
    pub endpoints_configmap: Option<String>,
    /// The namespace of --endpoints-configmap. Default: the pod's own
    /// namespace, or the kubeconfig context's.
    #[arg(long, value_name = "NAMESPACE", requires = "endpoints_configmap")]
    pub namespace: Option<String>,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(interval) if !interval.is_zero() => Ok(interval),
        Ok(_) => Err("the interval must be greater than zero".to_owned()),
        Err(_) => Err(format!(
            "invalid interval {text:?}; expected a duration such as 30s or 5m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parsed() {
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert!(
            parse_interval("0s")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(parse_interval("often").unwrap_err().contains("\"often\""));
    }

    #[test]
    fn arguments_parsed() {
        let args = Args::try_parse_from([
            "postern-reconcile",
            "--config",
            "vars.yaml",
            "--dry-run",
            "--watch",
            "90s",
        ])
        .unwrap();
        assert!(args.dry_run);
        assert_eq!(args.watch, Some(Duration::from_secs(90)));
        assert!(!args.prune);
        assert!(!args.reject_accepted);
    }
}
