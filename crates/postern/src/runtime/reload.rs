//! Reloading the vars and endpoints files on SIGHUP and on change.
//!
//! A file that fails validation is logged problem by problem and the running
//! state stays. Each outcome is a log line and a metric.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::state::{Snapshot, State, endpoints_path, load_endpoints};
use crate::config::{Config, Endpoints};
use crate::telemetry::metrics;

/// Quiet period after a file event before reloading, so an editor's or a
/// ConfigMap's several writes turn into one reload.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Source of a reload.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Signal,
    FileChanged,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::FileChanged => "file_changed",
        }
    }
}

/// Reloads the vars file and then the endpoints file it names.
pub fn reload(state: &State, vars: &Path, trigger: Trigger) {
    let running = state.snapshot();
    match Config::load(vars) {
        Err(problems) => {
            for problem in &problems.0 {
                tracing::error!(file = %problem.file.display(), line = problem.line, column = problem.column, key = %problem.path, problem = %problem.message, "Config problem");
            }
            metrics::record_reload("vars", "rejected");
            tracing::error!(file = %vars.display(), trigger = trigger.as_str(), problems = problems.0.len(), "Config reload rejected; the running config stays");
        }
        Ok(config) => {
            log_config_warnings(&config);
            warn_about_restart_only_changes(&running.config, &config);
            match Snapshot::new(config) {
                Ok(snapshot) => {
                    state.replace_snapshot(snapshot);
                    metrics::record_reload("vars", "applied");
                    tracing::info!(file = %vars.display(), trigger = trigger.as_str(), "Config reload applied");
                }
                Err(error) => {
                    metrics::record_reload("vars", "rejected");
                    tracing::error!(file = %vars.display(), %error, "Config reload rejected; the running config stays");
                }
            }
        }
    }
    reload_endpoints(state);
}

/// Logs each setting of a valid config that is most likely not what was
/// meant, one line each, as `check` prints them.
pub fn log_config_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!(file = %warning.file.display(), line = warning.line, column = warning.column, key = %warning.path, warning = %warning.message, "Config warning");
    }
}

/// Reloads the endpoints file of the running config.
pub fn reload_endpoints(state: &State) {
    let snapshot = state.snapshot();
    let Some(path) = endpoints_path(&snapshot.config) else {
        state.replace_endpoints(Endpoints::default());
        return;
    };
    match load_endpoints(&snapshot.config) {
        Ok(endpoints) => {
            metrics::set_endpoints_loaded(endpoints.len());
            state.replace_endpoints(endpoints);
            metrics::record_reload("endpoints", "applied");
            tracing::info!(file = %path.display(), "Endpoints file loaded");
        }
        Err(problems) => {
            for problem in &problems.0 {
                tracing::error!(file = %problem.file.display(), line = problem.line, column = problem.column, key = %problem.path, problem = %problem.message, "Endpoints file problem");
            }
            metrics::record_reload("endpoints", "rejected");
            tracing::error!(file = %path.display(), "Endpoints reload rejected; the running list stays");
        }
    }
}

fn warn_about_restart_only_changes(running: &Config, new: &Config) {
    let private_listen = |c: &Config| c.private.as_ref().map(|p| p.gate.listen);
    let changed = [
        (
            "gateways.public.listen",
            running.public.listen != new.public.listen,
        ),
        (
            "gateways.private.listen",
            private_listen(running) != private_listen(new),
        ),
        ("gateways.admin.listen", running.admin != new.admin),
        (
            "limits.max_connections",
            running.limits.max_connections != new.limits.max_connections,
        ),
    ];
    for (key, changed) in changed {
        if changed {
            tracing::warn!(
                key,
                "This setting changed but takes effect only after a restart"
            );
        }
    }
    if running.private.is_none() && new.private.is_some() {
        tracing::warn!("The private gate was enabled; its listener opens only after a restart");
    }
}

/// The watched files that changed in one burst of file events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// The vars file, or a TLS file it names.
    pub vars: bool,
    pub endpoints: bool,
}

/// Files to watch: the vars file with the TLS files it names, and the
/// endpoints file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFiles {
    pub vars: Vec<PathBuf>,
    pub endpoints: Option<PathBuf>,
}

/// Watches the folders of the watched files and sends what changed after
/// each burst of changes. Folders are watched, not files, because GitOps
/// tools and Kubernetes ConfigMaps replace files by renaming.
pub fn watch(files: WatchedFiles) -> notify::Result<(RecommendedWatcher, mpsc::Receiver<Changed>)> {
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Changed>();
    let classify = {
        let files = files.clone();
        move |path: &Path| -> Changed {
            // A ConfigMap update shows up as renames of `..data` and of
            // timestamped `..` folders, which may hold any of the files.
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".."));
            let same_name = |f: &PathBuf| f.file_name() == path.file_name();
            Changed {
                vars: hidden || files.vars.iter().any(same_name),
                endpoints: hidden || files.endpoints.iter().any(same_name),
            }
        }
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        if event.kind.is_access() {
            return;
        }
        let changed = event
            .paths
            .iter()
            .map(|p| classify(p))
            .fold(Changed::default(), |a, b| Changed {
                vars: a.vars || b.vars,
                endpoints: a.endpoints || b.endpoints,
            });
        if changed != Changed::default() {
            let _ = events_tx.send(changed);
        }
    })?;

    let mut folders: Vec<PathBuf> = files
        .vars
        .iter()
        .chain(&files.endpoints)
        .map(|f| match f.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    folders.sort();
    folders.dedup();
    for folder in &folders {
        watcher.watch(folder, RecursiveMode::NonRecursive)?;
    }

    let (debounced_tx, debounced_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(mut changed) = events_rx.recv().await {
            // Wait until the burst is over, merging what it touched.
            while let Ok(Some(more)) = tokio::time::timeout(DEBOUNCE, events_rx.recv()).await {
                changed.vars |= more.vars;
                changed.endpoints |= more.endpoints;
            }
            if debounced_tx.send(changed).await.is_err() {
                return;
            }
        }
    });
    Ok((watcher, debounced_rx))
}

/// The reload loop, with its SIGHUP handler and file watch installed.
pub struct Reloader {
    state: Arc<State>,
    vars: PathBuf,
    hangup: Option<tokio::signal::unix::Signal>,
    watched: WatchedFiles,
    watcher: Option<RecommendedWatcher>,
    changes: Option<mpsc::Receiver<Changed>>,
}

impl Reloader {
    /// Installs the SIGHUP handler and the file watch. Call it inside the
    /// runtime, before reporting ready.
    pub fn start(state: Arc<State>, vars: PathBuf) -> Self {
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "SIGHUP handler could not be installed");
                None
            }
        };
        let watched = watched_files(&state, &vars);
        let (watcher, changes) = start_watch(&watched);
        Reloader {
            state,
            vars,
            hangup,
            watched,
            watcher,
            changes,
        }
    }

    /// Reloads on every SIGHUP and debounced file change until the process
    /// ends.
    pub async fn run(mut self) {
        loop {
            let changed = tokio::select! {
                Some(()) = async { self.hangup.as_mut()?.recv().await } => None,
                Some(changed) = async { self.changes.as_mut()?.recv().await } => Some(changed),
                else => return,
            };
            match changed {
                None => reload(&self.state, &self.vars, Trigger::Signal),
                Some(c) if c.vars => reload(&self.state, &self.vars, Trigger::FileChanged),
                Some(_) => reload_endpoints(&self.state),
            }

            // The endpoints file may have moved: watch what the new config
            // names.
            let now = watched_files(&self.state, &self.vars);
            if now != self.watched {
                self.watcher = None;
                (self.watcher, self.changes) = start_watch(&now);
                self.watched = now;
            }
        }
    }
}

fn watched_files(state: &State, vars: &Path) -> WatchedFiles {
    let snapshot = state.snapshot();
    let config = &snapshot.config;
    let private_tls = config.private.as_ref().and_then(|p| p.gate.tls.as_ref());
    let mut files = vec![vars.to_path_buf()];
    for tls in config.public.tls.iter().chain(private_tls) {
        files.push(tls.cert.clone());
        files.push(tls.key.clone());
    }
    WatchedFiles {
        vars: files,
        endpoints: endpoints_path(config).map(Path::to_path_buf),
    }
}

fn start_watch(
    files: &WatchedFiles,
) -> (Option<RecommendedWatcher>, Option<mpsc::Receiver<Changed>>) {
    match watch(files.clone()) {
        Ok((watcher, changes)) => (Some(watcher), Some(changes)),
        Err(error) => {
            tracing::warn!(%error, "File watching is unavailable; reload with SIGHUP");
            (None, None)
        }
    }
}
