//! Reading the PrivateLink side of one cluster from AWS.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{Filter, ServiceConfiguration};
use aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum;

use super::{AwsError, Clients};
use crate::observed::{Balancer, Connection, DnsVerification, Observed, Service};
use crate::{CLUSTER_TAG, GATEWAY_TAG, PRIVATE_GATEWAY};

/// DescribeTags takes at most this many load balancers per call.
const TAGS_BATCH: usize = 20;

/// Reads the balancer, the service, its principals and its connections.
pub async fn read_observed(clients: &Clients, cluster: &str) -> Result<Observed, AwsError> {
    let balancer = find_balancer(clients, cluster).await?;
    let service = find_service(clients, cluster, balancer.as_ref()).await?;
    let (principals, connections) = match &service {
        Some(service) => (
            read_principals(clients, &service.id).await?,
            read_connections(clients, &service.id).await?,
        ),
        None => (BTreeSet::new(), Vec::new()),
    };
    Ok(Observed {
        balancer,
        service,
        principals,
        connections,
    })
}

/// Finds the network load balancer tagged as the cluster's private gate.
async fn find_balancer(clients: &Clients, cluster: &str) -> Result<Option<Balancer>, AwsError> {
    let searched = format!("network load balancers tagged {CLUSTER_TAG}={cluster}");
    let balancers = clients
        .elb
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeLoadBalancers", &searched, e))?;
    let networks: Vec<Balancer> = balancers
        .iter()
        .filter(|b| b.r#type() == Some(&LoadBalancerTypeEnum::Network))
        .filter_map(|b| {
            Some(Balancer {
                arn: b.load_balancer_arn()?.to_owned(),
                name: b.load_balancer_name().unwrap_or_default().to_owned(),
            })
        })
        .collect();

    let mut found = Vec::new();
    for batch in networks.chunks(TAGS_BATCH) {
        let arns = batch.iter().map(|b| b.arn.clone()).collect();
        let output = clients
            .elb
            .describe_tags()
            .set_resource_arns(Some(arns))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeTags", &searched, e))?;
        for description in output.tag_descriptions() {
            let tag = |key: &str| {
                description
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(key))
                    .and_then(|t| t.value())
            };
            if tag(GATEWAY_TAG) == Some(PRIVATE_GATEWAY) && tag(CLUSTER_TAG) == Some(cluster) {
                let arn = description.resource_arn().unwrap_or_default();
                found.extend(batch.iter().filter(|b| b.arn == arn).cloned());
            }
        }
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(AwsError::unsuccessful(
            "DescribeTags",
            searched,
            "Ambiguous",
            &format!(
                "{} balancers carry these tags ({}); delete or untag all but the private \
                 gate's current one",
                found.len(),
                found
                    .iter()
                    .map(|b| b.arn.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Finds the cluster's endpoint service: tagged with the cluster, or on its
/// balancer.
async fn find_service(
    clients: &Clients,
    cluster: &str,
    balancer: Option<&Balancer>,
) -> Result<Option<Service>, AwsError> {
    let searched = format!("endpoint services tagged {CLUSTER_TAG}={cluster}");
    let configurations = clients
        .ec2
        .describe_vpc_endpoint_service_configurations()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| {
            AwsError::from_sdk("DescribeVpcEndpointServiceConfigurations", &searched, e)
        })?;

    let mut found: Vec<Service> = configurations
        .iter()
        .filter(|c| is_cluster_service(c, cluster, balancer))
        .map(service)
        .collect();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(AwsError::unsuccessful(
            "DescribeVpcEndpointServiceConfigurations",
            searched,
            "Ambiguous",
            &format!(
                "{} endpoint services belong to this cluster ({}); delete all but one",
                found.len(),
                found
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn is_cluster_service(
    configuration: &ServiceConfiguration,
    cluster: &str,
    balancer: Option<&Balancer>,
) -> bool {
    let tagged = configuration
        .tags()
        .iter()
        .any(|t| t.key() == Some(CLUSTER_TAG) && t.value() == Some(cluster));
    let on_balancer =
        balancer.is_some_and(|b| configuration.network_load_balancer_arns().contains(&b.arn));
    let deleted = configuration
        .service_state()
        .is_some_and(|s| matches!(s.as_str(), "Deleting" | "Deleted"));
    (tagged || on_balancer) && !deleted
}

fn service(configuration: &ServiceConfiguration) -> Service {
    let dns_verification =
        configuration
            .private_dns_name_configuration()
            .map(|c| DnsVerification {
                state: c.state().map(|s| s.as_str()).unwrap_or("").to_owned(),
                record_type: c.r#type().unwrap_or("TXT").to_owned(),
                name: c.name().unwrap_or_default().to_owned(),
                value: c.value().unwrap_or_default().to_owned(),
            });
    Service {
        id: configuration.service_id().unwrap_or_default().to_owned(),
        name: configuration.service_name().unwrap_or_default().to_owned(),
        state: configuration
            .service_state()
            .map(|s| s.as_str())
            .unwrap_or_default()
            .to_owned(),
        acceptance_required: configuration.acceptance_required().unwrap_or(false),
        balancer_arns: configuration
            .network_load_balancer_arns()
            .iter()
            .cloned()
            .collect(),
        private_dns_name: configuration.private_dns_name().map(str::to_owned),
        dns_verification,
        supported_regions: configuration
            .supported_regions()
            .iter()
            .filter_map(|r| r.region().map(str::to_owned))
            .collect(),
    }
}

async fn read_principals(
    clients: &Clients,
    service_id: &str,
) -> Result<BTreeSet<String>, AwsError> {
    let principals = clients
        .ec2
        .describe_vpc_endpoint_service_permissions()
        .service_id(service_id)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeVpcEndpointServicePermissions", service_id, e))?;
    Ok(principals
        .iter()
        .filter_map(|p| p.principal().map(str::to_owned))
        .collect())
}

/// Reads the endpoint connections of the service `service_id`.
pub async fn read_connections(
    clients: &Clients,
    service_id: &str,
) -> Result<Vec<Connection>, AwsError> {
    let filter = Filter::builder()
        .name("service-id")
        .values(service_id)
        .build();
    let connections = clients
        .ec2
        .describe_vpc_endpoint_connections()
        .filters(filter)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeVpcEndpointConnections", service_id, e))?;
    Ok(connections
        .iter()
        .filter(|c| c.service_id().is_none_or(|id| id == service_id))
        .map(|c| Connection {
            endpoint_id: c.vpc_endpoint_id().unwrap_or_default().to_owned(),
            owner: c.vpc_endpoint_owner().unwrap_or_default().to_owned(),
            state: c
                .vpc_endpoint_state()
                .map(|s| s.as_str())
                .unwrap_or_default()
                .to_owned(),
            region: c.vpc_endpoint_region().map(str::to_owned),
        })
        .collect())
}
