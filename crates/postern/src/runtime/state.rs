//! The live state that requests read: the current config and everything
//! derived from it, swapped whole on reload.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::auth::MachineTokens;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Endpoints, GateConfig, Problems};
use crate::policy::admission::{Gate, Rules};
use crate::routing::RouteTable;
use crate::server::tls;

/// Everything derived from one vars file.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub tokens: MachineTokens,
    pub identities: crate::identity::Identities,
    pub public_rules: Rules,
    /// `None` when the private gate is disabled.
    pub private_rules: Option<Rules>,
    pub public_tls: Option<TlsAcceptor>,
    pub private_tls: Option<TlsAcceptor>,
}

/// The state shared by every connection.
pub struct State {
    snapshot: ArcSwap<Snapshot>,
    endpoints: ArcSwap<Endpoints>,
    draining: AtomicBool,
    /// Failed sign-in attempts, kept across reloads so that a reload does
    /// not reset the rate limits.
    pub sign_in_attempts: crate::identity::attempts::Attempts,
}

// === impl Snapshot ===

impl Snapshot {
    /// Derives the live state from a config. Fails only if a TLS file or a
    /// signing key that validated a moment ago can no longer be read.
    pub fn new(config: Config) -> Result<Self, String> {
        let public_tls = config.public.tls.as_ref().map(tls::acceptor).transpose()?;
        let private_tls = config
            .private
            .as_ref()
            .and_then(|p| p.gate.tls.as_ref())
            .map(tls::acceptor)
            .transpose()?;
        let public_rules = Rules {
            gate: Gate::Public,
            proxy_sources: config.public.proxy_sources.clone(),
            vpc_cidrs: Vec::new(),
            allowed_accounts: Vec::new(),
        };
        let private_rules = config.private.as_ref().map(|private| Rules {
            gate: Gate::Private,
            proxy_sources: private.gate.proxy_sources.clone(),
            vpc_cidrs: config.cluster.vpc_cidrs.clone(),
            allowed_accounts: private
                .allowed_principals
                .iter()
                .map(|p| p.account().to_owned())
                .collect(),
        });
        Ok(Snapshot {
            routes: RouteTable::new(&config),
            tokens: MachineTokens::new(&config.machines),
            identities: crate::identity::Identities::new(
                &config.identity,
                &config.cluster.hostname,
            )?,
            public_rules,
            private_rules,
            public_tls,
            private_tls,
            config: Arc::new(config),
        })
    }

    pub fn rules(&self, gate: Gate) -> Option<&Rules> {
        match gate {
            Gate::Public => Some(&self.public_rules),
            Gate::Private => self.private_rules.as_ref(),
        }
    }

    pub fn tls(&self, gate: Gate) -> Option<&TlsAcceptor> {
        match gate {
            Gate::Public => self.public_tls.as_ref(),
            Gate::Private => self.private_tls.as_ref(),
        }
    }

    /// Returns the listener settings of `gate`, if it is enabled.
    pub fn gate_config(&self, gate: Gate) -> Option<&GateConfig> {
        match gate {
            Gate::Public => Some(&self.config.public),
            Gate::Private => self.config.private.as_ref().map(|p| &p.gate),
        }
    }
}

// === impl State ===

impl State {
    pub fn new(snapshot: Snapshot, endpoints: Endpoints) -> Self {
        State {
            snapshot: ArcSwap::from_pointee(snapshot),
            endpoints: ArcSwap::from_pointee(endpoints),
            draining: AtomicBool::new(false),
            sign_in_attempts: Default::default(),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn endpoints(&self) -> Arc<Endpoints> {
        self.endpoints.load_full()
    }

    pub fn replace_snapshot(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn replace_endpoints(&self, endpoints: Endpoints) {
        self.endpoints.store(Arc::new(endpoints));
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Loads the endpoints file a config names, or an empty list when it names
/// none or the private gate is off.
pub fn load_endpoints(config: &Config) -> Result<Endpoints, Problems> {
    let Some(file) = config
        .private
        .as_ref()
        .and_then(|p| p.endpoints_file.as_ref())
    else {
        return Ok(Endpoints::default());
    };
    file.load(&config.source)
}

/// Returns the endpoints file of a config, if any.
pub fn endpoints_path(config: &Config) -> Option<&Path> {
    config
        .private
        .as_ref()
        .and_then(|p| p.endpoints_file.as_ref())
        .map(|f| f.path.as_path())
}
