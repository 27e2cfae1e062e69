//! A Kubernetes API server stand-in on loopback that serves GET and merge
//! PATCH of ConfigMaps, the two calls `postern reconcile` makes, plus a
//! kubeconfig that points at it.
//!
//! No Kubernetes API server can be installed here from a package registry,
//! so this plays one for the ConfigMap path only. It checks what a real one
//! would: the bearer token, the patch's content type, and that the
//! ConfigMap exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const TOKEN: &str = "test-service-account-token";
pub const NAMESPACE: &str = "postern";

/// ConfigMap data by name, in [`NAMESPACE`].
type Store = Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>;

/// The running stand-in. Dropping it stops serving.
pub struct FakeKube {
    store: Store,
    pub kubeconfig: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

// === impl FakeKube ===

impl FakeKube {
    /// Starts serving on a free loopback port and writes a kubeconfig for
    /// it into `dir`.
    pub async fn start(dir: &Path) -> FakeKube {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let store = Store::default();
        let served = store.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = served.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| handle(request, store.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: \
                 http://{address}\nusers:\n- name: test\n  user:\n    token: {TOKEN}\n\
                 contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    \
                 namespace: {NAMESPACE}\ncurrent-context: test\n"
            ),
        )
        .unwrap();
        FakeKube {
            store,
            kubeconfig,
            task,
        }
    }

    /// Creates the ConfigMap `name` with `data`, as `kubectl apply` would.
    pub fn create(&self, name: &str, data: &[(&str, &str)]) {
        let data = data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.store.lock().unwrap().insert(name.to_owned(), data);
    }

    /// Returns the value of `key` in the ConfigMap `name`.
    pub fn value(&self, name: &str, key: &str) -> Option<String> {
        self.store.lock().unwrap().get(name)?.get(key).cloned()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    request: Request<Incoming>,
    store: Store,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if !authorized {
        return Ok(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "no valid token",
        ));
    }
    let prefix = format!("/api/v1/namespaces/{NAMESPACE}/configmaps/");
    let Some(name) = request
        .uri()
        .path()
        .strip_prefix(&prefix)
        .map(str::to_owned)
    else {
        return Ok(status(StatusCode::NOT_FOUND, "NotFound", "unknown path"));
    };
    let merge_patch = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/merge-patch+json");
    let method = request.method().clone();
    let body = request.into_body().collect().await?.to_bytes();

    let mut store = store.lock().unwrap();
    let Some(data) = store.get_mut(&name) else {
        let message = format!("configmaps \"{name}\" not found");
        return Ok(status(StatusCode::NOT_FOUND, "NotFound", &message));
    };
    match method {
        Method::GET => {}
        Method::PATCH if merge_patch => {
            let patch: Value = serde_json::from_slice(&body).unwrap_or_default();
            let Some(changes) = patch["data"].as_object() else {
                return Ok(status(StatusCode::BAD_REQUEST, "BadRequest", "no data"));
            };
            for (key, value) in changes {
                match value.as_str() {
                    Some(text) => data.insert(key.clone(), text.to_owned()),
                    None => data.remove(key),
                };
            }
        }
        _ => {
            return Ok(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "expected GET, or PATCH with a merge patch",
            ));
        }
    }
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": NAMESPACE, "resourceVersion": "1" },
        "data": data,
    });
    Ok(json_response(StatusCode::OK, &object))
}

/// Builds a `Status` object, as the API server returns for an error.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let object = json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(code, &object)
}

fn json_response(code: StatusCode, object: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(object.to_string())))
        .unwrap()
}
