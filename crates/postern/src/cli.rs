//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::runtime::serve::GateSelection;

/// postern: an ingress gateway with a zero-trust public gate and a private
/// gate for AWS PrivateLink.
#[derive(Debug, Parser)]
#[command(name = "postern", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gates that a vars file describes until SIGTERM or SIGINT.
    ///
    /// SIGHUP, or a change to the vars or endpoints file, reloads both
    /// files; a file that fails validation is logged and the running config
    /// stays. Access log lines go to stdout, diagnostics to stderr.
    Serve {
        /// The vars file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// The gates to serve: both, or one, for deployments that run each
        /// gate in its own pods. The admin listener always runs.
        #[arg(long, value_enum, default_value_t = GateSelection::All)]
        gate: GateSelection,
    },
    /// Validate a vars file and the endpoints file it names.
    ///
    /// Prints every problem as FILE:LINE:COLUMN: KEY: MESSAGE and exits 1,
    /// or exits 0 when both files are valid.
    Check {
        /// The vars file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Run a demo on loopback: a built-in config, demo upstreams, and
    /// ready-to-paste curl commands for every path through both gates.
    Quickstart {
        /// Base port; the demo uses this port and the next nine.
        #[arg(long, default_value_t = 18080, value_name = "PORT")]
        port: u16,
    },
    /// Machine tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random machine token and the vars entry that admits it.
    ///
    /// The token is shown once; postern stores only its SHA-256.
    New {
        /// The machine's name, as it reaches apps in X-Auth-Request-User.
        #[arg(value_name = "NAME")]
        name: String,
    },
}
