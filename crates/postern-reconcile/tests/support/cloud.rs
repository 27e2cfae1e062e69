//! One AWS account on loopback: moto, the fake EC2 front for the calls
//! moto lacks, a VPC, and SDK clients for what the tests set up and check.

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, ServiceConfiguration};
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerSchemeEnum, LoadBalancerTypeEnum, Tag};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::fake_ec2::{FakeEc2, element};
use super::moto::Moto;
use super::*;

/// moto, the fake in front of it, and the operator's VPC and subnet.
pub struct Cloud {
    pub fake: FakeEc2,
    moto: Moto,
    /// EC2 as the operator sees it, through the fake.
    pub ec2: aws_sdk_ec2::Client,
    /// Elastic Load Balancing, straight to moto.
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub vpc_id: String,
    pub subnet_id: String,
}

// === impl Cloud ===

impl Cloud {
    pub async fn start() -> Cloud {
        let moto = Moto::start();
        let fake = FakeEc2::start(&moto.url).await;
        for (key, account) in [
            (OPERATOR_KEY, OPERATOR_ACCOUNT),
            (ALLOWED_KEY, ALLOWED_ACCOUNT),
            (ROLE_KEY, ROLE_ACCOUNT),
            (STRANGER_KEY, STRANGER_ACCOUNT),
        ] {
            fake.add_account(key, account);
        }
        let ec2 = ec2_client(&fake.url, OPERATOR_KEY);
        let elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .endpoint_url(&moto.url)
                .credentials_provider(credentials(OPERATOR_KEY))
                .build(),
        );

        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.0.240.0/24")
            .send()
            .await
            .unwrap();
        let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
        Cloud {
            fake,
            moto,
            ec2,
            elb,
            vpc_id,
            subnet_id,
        }
    }

    /// The environment of a reconcile process: the SDK's standard variables
    /// point EC2 at the fake and Elastic Load Balancing at moto.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_EC2", self.fake.url.clone()),
            (
                "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
                self.moto.url.clone(),
            ),
            ("AWS_ACCESS_KEY_ID", OPERATOR_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config".to_owned()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials".to_owned(),
            ),
        ]
    }

    /// Creates the private gate's balancer with the tags that `postern
    /// render` asks the AWS Load Balancer Controller to set.
    pub async fn create_private_balancer(&self) -> String {
        let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
        let output = self
            .elb
            .create_load_balancer()
            .name("k8s-postern-private")
            .subnets(&self.subnet_id)
            .scheme(LoadBalancerSchemeEnum::Internal)
            .r#type(LoadBalancerTypeEnum::Network)
            .tags(tag("postern.io/gateway", "private"))
            .tags(tag("postern.io/cluster", CLUSTER))
            .send()
            .await
            .unwrap();
        output.load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_owned()
    }

    /// Creates an interface endpoint to `service_name` as the account
    /// whose access key is `access_key`, and returns its id.
    pub async fn create_endpoint(&self, access_key: &str, service_name: &str) -> String {
        let client = ec2_client(&self.fake.url, access_key);
        let output = client
            .create_vpc_endpoint()
            .vpc_id(&self.vpc_id)
            .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
            .service_name(service_name)
            .subnet_ids(&self.subnet_id)
            .send()
            .await
            .unwrap();
        output
            .vpc_endpoint()
            .unwrap()
            .vpc_endpoint_id()
            .unwrap()
            .to_owned()
    }

    /// Returns the endpoint services tagged with the cluster.
    pub async fn services(&self) -> Vec<ServiceConfiguration> {
        let filter = Filter::builder()
            .name("tag:postern.io/cluster")
            .values(CLUSTER)
            .build();
        self.ec2
            .describe_vpc_endpoint_service_configurations()
            .filters(filter)
            .send()
            .await
            .unwrap()
            .service_configurations()
            .to_vec()
    }

    /// Returns the cluster's only endpoint service.
    pub async fn service(&self) -> ServiceConfiguration {
        let mut services = self.services().await;
        assert_eq!(services.len(), 1, "{services:?}");
        services.remove(0)
    }

    /// Returns the allowed principals of `service_id`, sorted.
    pub async fn principals(&self, service_id: &str) -> Vec<String> {
        let output = self
            .ec2
            .describe_vpc_endpoint_service_permissions()
            .service_id(service_id)
            .send()
            .await
            .unwrap();
        let mut principals: Vec<String> = output
            .allowed_principals()
            .iter()
            .filter_map(|p| p.principal().map(str::to_owned))
            .collect();
        principals.sort();
        principals
    }

    /// Creates an IAM user in moto whose policy allows `actions` only, and
    /// returns its access key id and secret.
    pub async fn create_user_allowed(&self, actions: &[&str]) -> (String, String) {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": actions, "Resource": "*" }],
        });
        self.iam(&[("Action", "CreateUser"), ("UserName", "reconcile")])
            .await;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "reconcile"),
            ("PolicyName", "reconcile"),
            ("PolicyDocument", &policy.to_string()),
        ])
        .await;
        let created = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", "reconcile")])
            .await;
        let field = |name| element(&created, name).expect("an access key in moto's response");
        (field("AccessKeyId"), field("SecretAccessKey"))
    }

    /// Makes moto check every later request's signature and IAM policy.
    pub async fn enforce_iam(&self) {
        let request = hyper::Request::post(format!("{}/moto-api/reset-auth", self.moto.url))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"0")))
            .unwrap();
        let response = http_client().request(request).await.unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }

    /// Sends one IAM Query API call to moto, which serves IAM without
    /// checking signatures until [`Cloud::enforce_iam`], and returns the
    /// response body.
    async fn iam(&self, params: &[(&str, &str)]) -> String {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().copied().chain([("Version", "2010-05-08")]))
            .finish();
        // moto picks the service from the credential scope.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={OPERATOR_KEY}/20260101/{REGION}/iam/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let request = hyper::Request::post(format!("{}/", self.moto.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", authorization)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = http_client().request(request).await.unwrap();
        let status = response.status();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&text).into_owned();
        assert!(status.is_success(), "IAM {params:?}: {status} {text}");
        text
    }

    /// Returns the Actions that reached EC2 since `from` actions ago.
    pub fn actions_since(&self, from: usize) -> Vec<String> {
        self.fake.actions()[from..].to_vec()
    }
}

fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn credentials(access_key: &str) -> Credentials {
    Credentials::new(access_key, "test-secret", None, None, "tests")
}

fn ec2_client(url: &str, access_key: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(url)
            .credentials_provider(credentials(access_key))
            .build(),
    )
}
