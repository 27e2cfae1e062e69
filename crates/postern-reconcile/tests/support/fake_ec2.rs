//! An EC2 endpoint on loopback that serves the endpoint-connection calls
//! moto 5.2.5 lacks and forwards every other call to moto unchanged.
//!
//! moto answers DescribeVpcEndpointConnections,
//! AcceptVpcEndpointConnections, RejectVpcEndpointConnections and
//! StartVpcEndpointServicePrivateDnsVerification with HTTP 500 "not
//! implemented", and makes every interface endpoint `available` at once,
//! even on a service that requires acceptance. This front keeps the
//! connections itself, speaking EC2's Query protocol (form-encoded POST,
//! XML response) as the AWS SDK expects:
//!
//! - CreateVpcEndpoint goes to moto, and the endpoint it returns is also
//!   recorded here as a `pendingAcceptance` connection of the service named
//!   in the request. Its owner is the account mapped to the request's
//!   access key (see [`FakeEc2::add_account`]), the way AWS takes the
//!   account from the credentials, and its region is the one in the
//!   request's SigV4 credential scope.
//! - The four calls above are answered from those records, with AWS's
//!   state rules: only `pendingAcceptance` connections can be accepted, and
//!   accepted ones become `available`.
//!
//! The fake checks no signature. moto checks them only once a test turns
//! on its IAM enforcement, and then only on the calls it serves.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One endpoint connection as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConnection {
    pub service_id: String,
    pub owner: String,
    pub state: String,
    pub region: String,
}

#[derive(Debug, Default)]
struct State {
    /// Access key id to account id.
    accounts: HashMap<String, String>,
    /// Endpoint id to connection.
    connections: BTreeMap<String, FakeConnection>,
    /// Every Action the fake received, in order, served or forwarded.
    actions: Vec<String>,
    /// Services whose domain verification was started.
    verifications: Vec<String>,
}

/// The running fake. Dropping it stops serving.
pub struct FakeEc2 {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

type Body = Full<Bytes>;

// === impl FakeEc2 ===

impl FakeEc2 {
    /// Starts the fake on a free loopback port, forwarding to `moto_url`.
    pub async fn start(moto_url: &str) -> FakeEc2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let moto: Arc<str> = Arc::from(moto_url.trim_end_matches('/'));
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();

        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, moto, client) = (served.clone(), moto.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, state.clone(), moto.clone(), client.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeEc2 {
            url: format!("http://{address}"),
            state,
            task,
        }
    }

    /// Maps the access key `access_key_id` to `account`, so that endpoints
    /// created with it are owned by that account.
    pub fn add_account(&self, access_key_id: &str, account: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .accounts
            .insert(access_key_id.to_owned(), account.to_owned());
    }

    pub fn connection(&self, endpoint_id: &str) -> Option<FakeConnection> {
        self.state
            .lock()
            .unwrap()
            .connections
            .get(endpoint_id)
            .cloned()
    }

    /// Returns every Action received so far, in order.
    pub fn actions(&self) -> Vec<String> {
        self.state.lock().unwrap().actions.clone()
    }

    pub fn verifications(&self) -> Vec<String> {
        self.state.lock().unwrap().verifications.clone()
    }
}

impl Drop for FakeEc2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    moto: Arc<str>,
    client: Client<HttpConnector, Body>,
) -> Result<Response<Body>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let params: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let action = params.get("Action").cloned().unwrap_or_default();
    state.lock().unwrap().actions.push(action.clone());

    let answer = serve_locally(&mut state.lock().unwrap(), &action, &params);
    if let Some(answer) = answer {
        return Ok(answer);
    }

    // Forward to moto as is.
    let mut forward = Request::builder().method(parts.method.clone()).uri(format!(
        "{moto}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    ));
    // Every header goes along, Host included, so that moto can check the
    // SigV4 signature when it enforces IAM policies.
    for (name, value) in &parts.headers {
        forward = forward.header(name, value);
    }
    let response = client
        .request(forward.body(Full::new(body.clone())).unwrap())
        .await
        .expect("forwarding to moto");
    let (response_parts, response_body) = response.into_parts();
    let response_body = response_body
        .collect()
        .await
        .expect("reading moto's response")
        .to_bytes();

    if action == "CreateVpcEndpoint" && response_parts.status.is_success() {
        record_endpoint(&state, &parts.headers, &params, &response_body);
    }
    Ok(Response::from_parts(
        response_parts,
        Full::new(response_body),
    ))
}

/// Serves the calls that moto lacks, or returns `None` for the calls moto serves.
fn serve_locally(
    state: &mut State,
    action: &str,
    params: &HashMap<String, String>,
) -> Option<Response<Body>> {
    match action {
        "DescribeVpcEndpointConnections" => Some(describe(state, params)),
        "AcceptVpcEndpointConnections" => Some(decide(state, params, true)),
        "RejectVpcEndpointConnections" => Some(decide(state, params, false)),
        "StartVpcEndpointServicePrivateDnsVerification" => {
            let service_id = params.get("ServiceId").cloned().unwrap_or_default();
            state.verifications.push(service_id);
            Some(xml_response(action, "<return>true</return>"))
        }
        _ => None,
    }
}

/// Records the endpoint that moto created as a connection awaiting
/// acceptance.
fn record_endpoint(
    state: &Mutex<State>,
    headers: &hyper::HeaderMap,
    params: &HashMap<String, String>,
    moto_response: &[u8],
) {
    let text = String::from_utf8_lossy(moto_response);
    let endpoint_id = element(&text, "vpcEndpointId").expect("moto's CreateVpcEndpoint response");
    let service_name = params.get("ServiceName").cloned().unwrap_or_default();
    let service_id = service_name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let (access_key, region) = credential_scope(headers);

    let mut state = state.lock().unwrap();
    let owner = state
        .accounts
        .get(&access_key)
        .cloned()
        .unwrap_or_else(|| panic!("no account was added for the access key {access_key}"));
    state.connections.insert(
        endpoint_id,
        FakeConnection {
            service_id,
            owner,
            state: "pendingAcceptance".to_owned(),
            region,
        },
    );
}

/// Reads the access key id and region from a SigV4 Authorization header:
/// `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, ...`.
fn credential_scope(headers: &hyper::HeaderMap) -> (String, String) {
    let authorization = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let scope = authorization
        .split("Credential=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    let mut fields = scope.split('/');
    let access_key = fields.next().unwrap_or_default().to_owned();
    let region = fields.nth(1).unwrap_or_default().to_owned();
    (access_key, region)
}

fn describe(state: &State, params: &HashMap<String, String>) -> Response<Body> {
    let service_filter = filter_values(params, "service-id");
    let mut items = String::new();
    for (endpoint_id, connection) in &state.connections {
        if !service_filter.is_empty() && !service_filter.contains(&connection.service_id) {
            continue;
        }
        items.push_str(&format!(
            "<item><serviceId>{}</serviceId><vpcEndpointId>{endpoint_id}</vpcEndpointId>\
             <vpcEndpointOwner>{}</vpcEndpointOwner><vpcEndpointState>{}</vpcEndpointState>\
             <vpcEndpointRegion>{}</vpcEndpointRegion></item>",
            connection.service_id, connection.owner, connection.state, connection.region
        ));
    }
    xml_response(
        "DescribeVpcEndpointConnections",
        &format!("<vpcEndpointConnectionSet>{items}</vpcEndpointConnectionSet>"),
    )
}

/// Accepts or rejects the listed endpoints of `ServiceId`, reporting each
/// one it cannot change as an unsuccessful item, as EC2 does.
fn decide(state: &mut State, params: &HashMap<String, String>, accept: bool) -> Response<Body> {
    let service_id = params.get("ServiceId").cloned().unwrap_or_default();
    let mut unsuccessful = String::new();
    for endpoint_id in numbered(params, "VpcEndpointId") {
        let connection = state
            .connections
            .get_mut(&endpoint_id)
            .filter(|c| c.service_id == service_id);
        let allowed_from: &[&str] = if accept {
            &["pendingAcceptance"]
        } else {
            &["pendingAcceptance", "pending", "available"]
        };
        match connection {
            Some(c) if allowed_from.contains(&c.state.as_str()) => {
                c.state = if accept { "available" } else { "rejected" }.to_owned();
            }
            Some(c) => unsuccessful.push_str(&unsuccessful_item(
                &endpoint_id,
                "InvalidState",
                &format!("the endpoint connection is {}", c.state),
            )),
            None => unsuccessful.push_str(&unsuccessful_item(
                &endpoint_id,
                "InvalidVpcEndpoint.NotFound",
                "the endpoint is not connected to this service",
            )),
        }
    }
    let action = if accept {
        "AcceptVpcEndpointConnections"
    } else {
        "RejectVpcEndpointConnections"
    };
    xml_response(
        action,
        &format!("<unsuccessful>{unsuccessful}</unsuccessful>"),
    )
}

fn unsuccessful_item(resource: &str, code: &str, message: &str) -> String {
    format!(
        "<item><error><code>{code}</code><message>{message}</message></error>\
         <resourceId>{resource}</resourceId></item>"
    )
}

fn xml_response(action: &str, inner: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response \
         xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>\
         7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>{inner}</{action}Response>"
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/xml;charset=UTF-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Returns the values of `Key.1`, `Key.2`, ... in order.
fn numbered(params: &HashMap<String, String>, key: &str) -> Vec<String> {
    (1..)
        .map_while(|i| params.get(&format!("{key}.{i}")).cloned())
        .collect()
}

/// Returns the values of the `Filter.N` whose name is `name`.
fn filter_values(params: &HashMap<String, String>, name: &str) -> Vec<String> {
    (1..)
        .map_while(|i| {
            params
                .get(&format!("Filter.{i}.Name"))
                .map(|n| (i, n.clone()))
        })
        .filter(|(_, n)| n == name)
        .flat_map(|(i, _)| numbered(params, &format!("Filter.{i}.Value")))
        .collect()
}

/// Returns the text of the first `<name>` element. The moto responses read
/// here have it exactly once, unnested.
pub fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].to_owned())
}
