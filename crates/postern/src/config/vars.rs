//! Decoding of the vars file into a [`Config`].
//!
//! `app_config` keeps the GitOps layout that platform users already write:
//! `app_config.istio` holds gateway settings and every other key is an app.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::decode::{Cursor, Decoder, Mapping, join};
use super::identity::IdentityConfig;
use super::tree;
use super::*;
use crate::policy::access::AccessRules;

mod identities;
mod redis;
mod scalars;
mod settings;
mod signin;
mod users;
mod warnings;

use scalars::{
    parse_app_name, parse_cidr, parse_hostname, parse_listen, parse_name, parse_region,
    parse_sha256_hex, parse_upstream,
};

/// The key in `app_config` that holds gateway settings instead of an app.
const GATEWAY_SETTINGS_KEY: &str = "istio";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// Whether decoding reads the TLS files that the vars file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsCheck {
    /// Reads and parses the certificate and key, as a gate needs them.
    Read,
    /// Keeps the paths unread.
    Skip,
}

pub(super) fn decode(path: &Path, text: &str, reads: FileReads) -> Result<Config, Problems> {
    let mut d = Decoder::new(path);
    d.skip_files = reads == FileReads::None;
    let tls_check = match reads {
        FileReads::All => TlsCheck::Read,
        FileReads::AllButTls | FileReads::None => TlsCheck::Skip,
    };
    let Some(root) = d.parse_document(text) else {
        return Err(Problems(d.problems));
    };
    let base = path.parent().unwrap_or(Path::new("."));

    let config = decode_root(&mut d, Cursor::root(&root), base, tls_check);
    match config {
        Some(mut config) if d.problems.is_empty() => {
            config.source = path.to_owned();
            d.warnings.sort_by_key(|w| (w.line, w.column));
            config.warnings = d.warnings;
            config.unread_files = d.unread;
            Ok(config)
        }
        _ => {
            d.problems.sort_by_key(|p| (p.line, p.column));
            Err(Problems(d.problems))
        }
    }
}

fn decode_root(
    d: &mut Decoder,
    at: Cursor<'_>,
    base: &Path,
    tls_check: TlsCheck,
) -> Option<Config> {
    if matches!(at.node.value, tree::Value::Null) {
        d.report(
            at,
            "the vars file is empty; it needs at least cluster, gateways and app_config",
        );
        return None;
    }
    let endpoints_key = match &at.node.value {
        tree::Value::Mapping(entries) => entries.iter().find(|(k, _)| k.name == "endpoints"),
        _ => None,
    };
    if let Some((key, _)) = endpoints_key
        && at.node.get("cluster").is_none()
    {
        d.report_at(
            key.line,
            key.column,
            "endpoints",
            "this is an endpoints file (its top-level key is `endpoints`), not a vars file; \
             check the vars file whose privatelink.endpoints_file names it, which checks both",
        );
        return None;
    }
    let top = d.mapping(
        at,
        &[
            "cluster",
            "gateways",
            "privatelink",
            "identities",
            "app_config",
            "limits",
        ],
    )?;

    let cluster = required(d, &top, "cluster").and_then(|(p, n)| cluster(d, p.cursor(n)));
    let gateways =
        required(d, &top, "gateways").and_then(|(p, n)| gateways(d, p.cursor(n), base, tls_check));
    let endpoints_file = match top.get("privatelink") {
        Some((p, n)) => privatelink(d, p.cursor(n), base),
        None => Some(None),
    };
    let hostname = cluster.as_ref().map(|c| c.hostname.as_str());
    let identities = match top.get("identities") {
        Some((p, n)) => identities::identities(d, p.cursor(n), base, hostname),
        None => Some(identities::Decoded {
            machines: Vec::new(),
            identity: IdentityConfig::default(),
        }),
    };
    let apps = required(d, &top, "app_config").and_then(|(p, n)| app_config(d, p.cursor(n)));
    let limits = match top.get("limits") {
        Some((p, n)) => limits(d, p.cursor(n)),
        None => Some(Limits::default()),
    };

    let private = check_references(
        d,
        &top,
        cluster.as_ref(),
        gateways.as_ref(),
        endpoints_file,
        identities.as_ref(),
        apps.as_ref(),
    );

    let (cluster, gateways, mut identities, app_config, limits, private) =
        (cluster?, gateways?, identities?, apps?, limits?, private?);
    if !app_config.complete {
        return None;
    }
    let apps = app_config.apps;
    if let Some(sessions) = &mut identities.identity.sessions {
        sessions.secure = gateways.public.tls.is_some();
    }
    warn_unlikely_settings(d, &top, &gateways, &identities, &apps);

    Some(Config {
        source: PathBuf::new(),
        cluster,
        public: gateways.public,
        private,
        admin: gateways.admin,
        machines: identities.machines,
        identity: identities.identity,
        apps,
        limits,
        warnings: Vec::new(),
        unread_files: Vec::new(),
    })
}

/// Runs the checks across sections on whatever decoded, so that they are
/// reported in the same run as the problems of single values. A check is
/// skipped only when a side it refers to failed to decode. Returns the
/// private gate, or `None` when it cannot be assembled.
fn check_references(
    d: &mut Decoder,
    top: &Mapping<'_>,
    cluster: Option<&Cluster>,
    gateways: Option<&Gateways>,
    endpoints_file: Option<Option<EndpointsFile>>,
    identities: Option<&identities::Decoded>,
    apps: Option<&AppConfig>,
) -> Option<Option<PrivateGate>> {
    let app_config_node = top.get("app_config").map(|(_, n)| n);
    if let (Some(app_config), Some(identities)) = (apps, identities) {
        check_auth_host_free(d, &identities.identity, &app_config.access, top);
        settings::check_machine_rules(
            d,
            &app_config.access,
            &identities.machines,
            &identities.identity,
            app_config_node,
        );
        if let Some(cluster) = cluster {
            settings::check_signing_audience(
                d,
                &app_config.access,
                &identities.identity,
                &cluster.hostname,
                top.get("identities").map(|(_, n)| n),
            );
        }
    }
    let private = match (gateways, apps.map(|a| &a.switch), endpoints_file) {
        (Some(gateways), Some(Some(switch)), Some(endpoints_file)) => {
            assemble_private(d, gateways.private.clone(), switch.clone(), endpoints_file)
        }
        _ => None,
    };
    if let (Some(gateways), Some(private)) = (gateways, &private) {
        check_listeners_distinct(d, &gateways.public, private.as_ref(), gateways.admin, top);
    }
    if let (Some(None), Some(app_config)) = (&private, apps) {
        warnings::warn_private_apps_unserved(d, &app_config.apps, app_config_node);
    }
    private
}

/// Warns about settings that are valid but most likely not what was meant,
/// once every section has decoded.
fn warn_unlikely_settings(
    d: &mut Decoder,
    top: &Mapping<'_>,
    gateways: &Gateways,
    identities: &identities::Decoded,
    apps: &BTreeMap<String, App>,
) {
    let app_config = top.get("app_config").map(|(_, n)| n);
    warnings::warn_no_identities(
        d,
        &identities.machines,
        &identities.identity,
        apps,
        app_config,
    );
    let gates = top.get("gateways").map(|(_, n)| n);
    warnings::warn_trust_everyone(
        d,
        "public",
        &gateways.public,
        gates.and_then(|n| n.get("public")),
    );
    if let Some(private) = &gateways.private {
        warnings::warn_trust_everyone(d, "private", private, gates.and_then(|n| n.get("private")));
    }
    warnings::warn_total_before_headers(d, apps, app_config);
}

/// Checks that no app takes `auth.<hostname>`, where postern serves its
/// issuer endpoints when it has signing keys.
fn check_auth_host_free(
    d: &mut Decoder,
    identity: &IdentityConfig,
    apps: &BTreeMap<String, AccessRules>,
    top: &Mapping<'_>,
) {
    if !identity.serves_auth_host() || !apps.contains_key(AUTH_APP_NAME) {
        return;
    }
    let Some((p, n)) = top.get("app_config") else {
        return;
    };
    let line = n
        .get(AUTH_APP_NAME)
        .map(|app| (app.line, app.column))
        .unwrap_or((n.line, n.column));
    d.report_at(
        line.0,
        line.1,
        &format!("{}.{AUTH_APP_NAME}", p.as_str()),
        format!(
            "the app name {AUTH_APP_NAME:?} is reserved while identities.signing or \
             identities.providers or identities.users is set: postern serves its issuer \
             endpoints and sign-in at \
             {AUTH_APP_NAME}.<cluster.hostname>; rename the app"
        ),
    );
}

/// The `istio.private_gateway` switch as written in `app_config`.
#[derive(Clone)]
struct PrivateSwitch {
    enabled: bool,
    principals: Vec<Principal>,
    supported_regions: Vec<String>,
    line: u64,
    column: u64,
    path: String,
}

struct Gateways {
    public: GateConfig,
    private: Option<GateConfig>,
    admin: SocketAddr,
}

fn required<'a>(
    d: &mut Decoder,
    map: &Mapping<'a>,
    key: &str,
) -> Option<(super::decode::KeyPath, &'a tree::Node)> {
    let found = map.get(key);
    if found.is_none() {
        let path = join(map.path(), key);
        let (line, column) = map
            .entries()
            .next()
            .map(|(k, _)| (k.line, k.column))
            .unwrap_or((1, 1));
        d.report_at(
            line,
            column,
            path.as_str(),
            format!("missing required key `{key}`"),
        );
    }
    found
}

fn cluster(d: &mut Decoder, at: Cursor<'_>) -> Option<Cluster> {
    let map = d.mapping(at, &["hostname", "region", "vpc_cidrs"])?;
    let hostname =
        required(d, &map, "hostname").and_then(|(p, n)| d.parse(p.cursor(n), parse_hostname));
    let region = required(d, &map, "region").and_then(|(p, n)| d.parse(p.cursor(n), parse_region));
    let vpc_cidrs = match map.get("vpc_cidrs") {
        Some((p, n)) => d.list(p.cursor(n), |d, item| d.parse(item, parse_cidr)),
        None => Some(Vec::new()),
    };
    Some(Cluster {
        hostname: hostname?,
        region: region?,
        vpc_cidrs: vpc_cidrs?,
    })
}

fn gateways(d: &mut Decoder, at: Cursor<'_>, base: &Path, tls_check: TlsCheck) -> Option<Gateways> {
    let map = d.mapping(at, &["public", "private", "admin"])?;
    let public =
        required(d, &map, "public").and_then(|(p, n)| gate(d, p.cursor(n), base, tls_check));
    let private = match map.get("private") {
        Some((p, n)) => gate(d, p.cursor(n), base, tls_check).map(Some),
        None => Some(None),
    };
    let admin = match map.get("admin") {
        Some((p, n)) => {
            let admin = d.mapping(p.cursor(n), &["listen"])?;
            required(d, &admin, "listen").and_then(|(p, n)| listen(d, p.cursor(n)))
        }
        None => DEFAULT_ADMIN_LISTEN.parse().ok(),
    };
    Some(Gateways {
        public: public?,
        private: private?,
        admin: admin?,
    })
}

/// Reads a listen address. A bare port, which YAML reads as a number, gets
/// a message that shows the `IP:PORT` form with that port.
fn listen(d: &mut Decoder, at: Cursor<'_>) -> Option<SocketAddr> {
    let number = match at.node.value {
        tree::Value::Integer(port) => Some(port),
        tree::Value::Float(port) if port.fract() == 0.0 => Some(port as i128),
        _ => None,
    };
    let Some(port) = number else {
        return d.parse(at, parse_listen);
    };
    let message = if (0..=65535).contains(&port) {
        format!(
            "expected IP:PORT, found the number {port}; write an address and port such \
             as 127.0.0.1:{port} or 0.0.0.0:{port}"
        )
    } else {
        format!(
            "expected IP:PORT, found the number {port}, which is not a port either; write \
             an address and a port from 0 to 65535, such as 127.0.0.1:8080"
        )
    };
    d.report(at, message);
    None
}

fn gate(d: &mut Decoder, at: Cursor<'_>, base: &Path, tls_check: TlsCheck) -> Option<GateConfig> {
    let map = d.mapping(
        at,
        &["listen", "tls", "proxy_protocol", "forwarded_headers"],
    )?;
    let listen = required(d, &map, "listen").and_then(|(p, n)| listen(d, p.cursor(n)));
    let tls = match map.get("tls") {
        Some((p, n)) => tls(d, p.cursor(n), base, tls_check).map(Some),
        None => Some(None),
    };

    let mut proxy_sources = Some(Vec::new());
    let mut proxy_header_timeout = Some(DEFAULT_PROXY_HEADER_TIMEOUT);
    if let Some((p, n)) = map.get("proxy_protocol") {
        let pp = d.mapping(p.cursor(n), &["trusted_sources", "header_timeout"])?;
        if let Some((p, n)) = pp.get("trusted_sources") {
            proxy_sources = d.list(p.cursor(n), |d, item| d.parse(item, parse_cidr));
        }
        if let Some((p, n)) = pp.get("header_timeout") {
            proxy_header_timeout = d.duration(p.cursor(n));
        }
    }

    let mut forwarded_sources = Some(Vec::new());
    if let Some((p, n)) = map.get("forwarded_headers") {
        let fh = d.mapping(p.cursor(n), &["trusted_sources"])?;
        if let Some((p, n)) = fh.get("trusted_sources") {
            forwarded_sources = d.list(p.cursor(n), |d, item| d.parse(item, parse_cidr));
        }
    }

    Some(GateConfig {
        listen: listen?,
        tls: tls?,
        proxy_sources: proxy_sources?,
        proxy_header_timeout: proxy_header_timeout?,
        forwarded_sources: forwarded_sources?,
    })
}

fn tls(d: &mut Decoder, at: Cursor<'_>, base: &Path, tls_check: TlsCheck) -> Option<TlsFiles> {
    let map = d.mapping(at, &["cert", "key"])?;
    let mut file = |key: &str| {
        let (p, n) = required(d, &map, key)?;
        let path = base.join(d.string(p.cursor(n))?);
        if d.skips_file(p.cursor(n), &path) || tls_check == TlsCheck::Skip {
            return Some(path);
        }
        if let Err(e) = std::fs::metadata(&path) {
            d.report(
                p.cursor(n),
                format!(
                    "cannot read {}: {e}; give the path of a PEM file",
                    path.display()
                ),
            );
            return None;
        }
        Some(path)
    };
    let cert = file("cert");
    let key = file("key");
    let files = TlsFiles {
        cert: cert?,
        key: key?,
    };
    if tls_check == TlsCheck::Skip {
        return Some(files);
    }
    if let Err(message) = crate::server::tls::acceptor(&files) {
        d.report(at, message);
        return None;
    }
    Some(files)
}

fn privatelink(d: &mut Decoder, at: Cursor<'_>, base: &Path) -> Option<Option<EndpointsFile>> {
    let map = d.mapping(at, &["endpoints_file"])?;
    let Some((p, n)) = map.get("endpoints_file") else {
        return Some(None);
    };
    let path = base.join(d.string(p.cursor(n))?);
    Some(Some(EndpointsFile {
        path,
        line: n.line,
        column: n.column,
    }))
}

/// The apps of `app_config` that decoded, and the private gate switch.
struct AppConfig {
    apps: BTreeMap<String, App>,
    /// The access rules of each app with a valid name whose settings
    /// decoded, even when another field of the app is invalid.
    access: BTreeMap<String, AccessRules>,
    /// False when an app failed to decode and is missing from `apps`.
    complete: bool,
    /// `None` when `istio` failed to decode, `Some(None)` when it is absent.
    switch: Option<Option<PrivateSwitch>>,
}

fn app_config(d: &mut Decoder, at: Cursor<'_>) -> Option<AppConfig> {
    let map = d.open_mapping(at)?;
    let mut apps = BTreeMap::new();
    let mut access = BTreeMap::new();
    let mut switch = Some(None);
    let mut complete = true;

    for (key, node) in map.entries() {
        let path = join(map.path(), &key.name);
        if key.name == GATEWAY_SETTINGS_KEY {
            switch = gateway_settings(d, path.cursor(node)).map(Some);
            continue;
        }
        // A bad name is reported, and the app's keys are still checked.
        let name_ok = parse_app_name(&key.name)
            .map_err(|message| d.report_at(key.line, key.column, path.as_str(), message))
            .is_ok();
        let (app, rules) = app(d, path.cursor(node), &key.name);
        if let (Some(rules), true) = (rules, name_ok) {
            access.insert(key.name.clone(), rules);
        }
        match app {
            Some(app) if name_ok => {
                apps.insert(key.name.clone(), app);
            }
            _ => complete = false,
        }
    }
    Some(AppConfig {
        apps,
        access,
        complete,
        switch,
    })
}

fn gateway_settings(d: &mut Decoder, at: Cursor<'_>) -> Option<PrivateSwitch> {
    let map = d.mapping(at, &["private_gateway"])?;
    let Some((p, n)) = map.get("private_gateway") else {
        return Some(PrivateSwitch {
            enabled: false,
            principals: Vec::new(),
            supported_regions: Vec::new(),
            line: at.node.line,
            column: at.node.column,
            path: at.path().to_owned(),
        });
    };
    let pg = d.mapping(
        p.cursor(n),
        &["enabled", "allowed_principals", "supported_regions"],
    )?;
    let enabled = match pg.get("enabled") {
        Some((p, n)) => d.boolean(p.cursor(n)),
        None => Some(false),
    };
    let principals = match pg.get("allowed_principals") {
        Some((p, n)) => d.list(p.cursor(n), |d, item| d.parse(item, |s| s.parse())),
        None => Some(Vec::new()),
    };
    let supported_regions = match pg.get("supported_regions") {
        Some((p, n)) => supported_regions(d, p.cursor(n)),
        None => Some(Vec::new()),
    };
    Some(PrivateSwitch {
        enabled: enabled?,
        principals: principals?,
        supported_regions: supported_regions?,
        line: n.line,
        column: n.column,
        path: p.as_str().to_owned(),
    })
}

/// Reads `private_gateway.supported_regions`: AWS regions, each listed once.
/// Every invalid entry and every repeat of a valid one is reported.
fn supported_regions(d: &mut Decoder, at: Cursor<'_>) -> Option<Vec<String>> {
    let items = d.sequence(at)?;
    let mut regions: Vec<String> = Vec::with_capacity(items.len());
    let mut complete = true;
    for (i, node) in items.iter().enumerate() {
        let path = super::decode::index(at.path(), i);
        let Some(region) = d.parse(path.cursor(node), parse_region) else {
            complete = false;
            continue;
        };
        if regions.contains(&region) {
            d.report(
                path.cursor(node),
                format!("duplicate region {region}; list each region once"),
            );
            complete = false;
            continue;
        }
        regions.push(region);
    }
    complete.then_some(regions)
}

/// Decodes one app. Its access rules are returned apart, when they decode,
/// so that cross-reference checks can run on them even when another field
/// of the app is invalid.
fn app(d: &mut Decoder, at: Cursor<'_>, name: &str) -> (Option<App>, Option<AccessRules>) {
    let Some(map) = d.mapping(at, &["enabled", "upstream", "settings", "timeouts"]) else {
        return (None, None);
    };
    let enabled = required(d, &map, "enabled").and_then(|(p, n)| d.boolean(p.cursor(n)));
    let upstream = match map.get("upstream") {
        Some((p, n)) => d.parse(p.cursor(n), parse_upstream).map(Some),
        None if enabled == Some(true) => {
            required(d, &map, "upstream");
            None
        }
        None => Some(None),
    };
    let settings = match map.get("settings") {
        Some((p, n)) => settings::settings(d, p.cursor(n)),
        None => Some(settings::Settings {
            allow_private_gateway: false,
            access: Default::default(),
        }),
    };
    let timeouts = match map.get("timeouts") {
        Some((p, n)) => app_timeouts(d, p.cursor(n)),
        None => Some(AppTimeouts::default()),
    };
    let Some(settings) = settings else {
        return (None, None);
    };
    let access = settings.access.clone();
    let app = match (enabled, upstream, timeouts) {
        (Some(enabled), Some(upstream), Some(timeouts)) => Some(App {
            name: name.to_owned(),
            enabled,
            upstream,
            allow_private_gateway: settings.allow_private_gateway,
            access: settings.access,
            timeouts,
        }),
        _ => None,
    };
    (app, Some(access))
}

fn app_timeouts(d: &mut Decoder, at: Cursor<'_>) -> Option<AppTimeouts> {
    let map = d.mapping(at, &["connect", "response_headers", "body_idle", "total"])?;
    let defaults = AppTimeouts::default();
    let mut get = |key: &str, default| match map.get(key) {
        Some((p, n)) => d.duration(p.cursor(n)),
        None => Some(default),
    };
    let connect = get("connect", defaults.connect);
    let response_headers = get("response_headers", defaults.response_headers);
    let body_idle = get("body_idle", defaults.body_idle);
    let total = match map.get("total") {
        Some((p, n)) => d.duration(p.cursor(n)).map(Some),
        None => Some(None),
    };
    Some(AppTimeouts {
        connect: connect?,
        response_headers: response_headers?,
        body_idle: body_idle?,
        total: total?,
    })
}

fn limits(d: &mut Decoder, at: Cursor<'_>) -> Option<Limits> {
    let map = d.mapping(
        at,
        &[
            "max_connections",
            "max_header_bytes",
            "header_read_timeout",
            "client_idle_timeout",
            "send_timeout",
            "shutdown_delay",
            "shutdown_grace_period",
        ],
    )?;
    let defaults = Limits::default();
    let max_connections = match map.get("max_connections") {
        Some((p, n)) => d.integer(p.cursor(n), 1, 10_000_000).map(|n| n as usize),
        None => Some(defaults.max_connections),
    };
    let max_header_bytes = match map.get("max_header_bytes") {
        // hyper's HTTP/1.1 read buffer, which enforces this limit, cannot be
        // smaller than 8 KiB.
        Some((p, n)) => d
            .integer(p.cursor(n), 8192, 1024 * 1024)
            .map(|n| n as usize),
        None => Some(defaults.max_header_bytes),
    };
    let mut get = |key: &str, default| match map.get(key) {
        Some((p, n)) => d.duration(p.cursor(n)),
        None => Some(default),
    };
    let header_read_timeout = get("header_read_timeout", defaults.header_read_timeout);
    let client_idle_timeout = get("client_idle_timeout", defaults.client_idle_timeout);
    let send_timeout = get("send_timeout", defaults.send_timeout);
    let shutdown_grace_period = get("shutdown_grace_period", defaults.shutdown_grace_period);
    // Zero is valid here: it closes the listeners at once.
    let shutdown_delay = match map.get("shutdown_delay") {
        Some((p, n)) => d.duration_or_zero(p.cursor(n)),
        None => Some(defaults.shutdown_delay),
    };
    Some(Limits {
        max_connections: max_connections?,
        max_header_bytes: max_header_bytes?,
        header_read_timeout: header_read_timeout?,
        client_idle_timeout: client_idle_timeout?,
        send_timeout: send_timeout?,
        shutdown_delay: shutdown_delay?,
        shutdown_grace_period: shutdown_grace_period?,
    })
}

/// Joins the private listener with the `istio.private_gateway` switch.
fn assemble_private(
    d: &mut Decoder,
    gate: Option<GateConfig>,
    switch: Option<PrivateSwitch>,
    endpoints_file: Option<EndpointsFile>,
) -> Option<Option<PrivateGate>> {
    let Some(switch) = switch.filter(|s| s.enabled) else {
        return Some(None);
    };
    let Some(gate) = gate else {
        d.report_at(
            switch.line,
            switch.column,
            &switch.path,
            "the private gate is enabled but gateways.private is missing; \
             add gateways.private.listen or set enabled: false",
        );
        return None;
    };
    Some(Some(PrivateGate {
        gate,
        allowed_principals: switch.principals,
        supported_regions: switch.supported_regions,
        endpoints_file,
    }))
}

/// Checks that no two listeners share an address. Each clash is reported
/// at the `listen` value of the later listener, or at the earlier one's when
/// the later is the admin listener's default, which is not written.
fn check_listeners_distinct(
    d: &mut Decoder,
    public: &GateConfig,
    private: Option<&PrivateGate>,
    admin: SocketAddr,
    top: &Mapping<'_>,
) {
    let mut seen = vec![("public", public.listen)];
    if let Some(private) = private {
        seen.push(("private", private.gate.listen));
    }
    seen.push(("admin", admin));
    let gateways = top.get("gateways").map(|(_, n)| n);
    let written = |gate: &str| {
        let node = gateways?.get(gate)?.get("listen")?;
        Some((node.line, node.column))
    };
    for (i, (name, addr)) in seen.iter().enumerate() {
        let Some((other, _)) = seen[..i].iter().find(|(_, a)| a == addr) else {
            continue;
        };
        let (key, other_key) = (listen_key(name), listen_key(other));
        match (written(name), written(other)) {
            (Some((line, column)), _) => d.report_at(
                line,
                column,
                &key,
                format!("{addr} is also used by {other_key}; give each listener its own address"),
            ),
            (None, Some((line, column))) => d.report_at(
                line,
                column,
                &other_key,
                format!(
                    "{addr} is also the default of {key}, which is not set; give this \
                     listener another address, or set {key}"
                ),
            ),
            (None, None) => {}
        }
    }
}

fn listen_key(gate: &str) -> String {
    format!("gateways.{gate}.listen")
}

#[cfg(test)]
#[path = "vars/identities_tests.rs"]
mod identities_tests;
#[cfg(test)]
#[path = "vars/messages_tests.rs"]
mod messages_tests;
#[cfg(test)]
#[path = "vars/signin_tests.rs"]
mod signin_tests;
#[cfg(test)]
mod tests;
