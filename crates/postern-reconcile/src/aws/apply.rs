//! Applying a plan to AWS, in an order that keeps the service usable:
//! create or modify the service, set its principals, decide connections,
//! verify its domain, and delete it last.

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, UnsuccessfulItem};

use super::{AwsError, Clients};
use crate::plan::{NewService, Plan, ServiceAction, ServiceChange};
use crate::{CLUSTER_TAG, GATEWAY_TAG, PRIVATE_GATEWAY};

/// What [`apply`] did that the plan could not know in advance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The id of the service the plan created.
    pub created_service: Option<String>,
}

/// Applies `plan`. Stops at the first call that fails; a later run picks up
/// where this one stopped, because planning starts from what AWS reports.
pub async fn apply(clients: &Clients, plan: &Plan) -> Result<Applied, AwsError> {
    let mut applied = Applied::default();
    let service_id = match &plan.service {
        ServiceAction::Absent => return Ok(applied),
        ServiceAction::Create(new) => {
            let id = create_service(clients, new).await?;
            applied.created_service = Some(id.clone());
            id
        }
        ServiceAction::Keep { id }
        | ServiceAction::KeepDisabled { id }
        | ServiceAction::Delete { id } => id.clone(),
    };

    if !plan.changes.is_empty() {
        modify_service(clients, &service_id, &plan.changes).await?;
    }
    if !plan.add_principals.is_empty() || !plan.remove_principals.is_empty() {
        clients
            .ec2
            .modify_vpc_endpoint_service_permissions()
            .service_id(&service_id)
            .set_add_allowed_principals(non_empty(&plan.add_principals))
            .set_remove_allowed_principals(non_empty(&plan.remove_principals))
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("ModifyVpcEndpointServicePermissions", &service_id, e)
            })?;
    }
    accept(clients, &service_id, plan).await?;
    reject(clients, &service_id, plan).await?;
    if plan.verify_dns {
        clients
            .ec2
            .start_vpc_endpoint_service_private_dns_verification()
            .service_id(&service_id)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "StartVpcEndpointServicePrivateDnsVerification",
                    &service_id,
                    e,
                )
            })?;
    }
    if let ServiceAction::Delete { id } = &plan.service {
        let output = clients
            .ec2
            .delete_vpc_endpoint_service_configurations()
            .service_ids(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeleteVpcEndpointServiceConfigurations", id, e))?;
        check_items(
            "DeleteVpcEndpointServiceConfigurations",
            output.unsuccessful(),
        )?;
    }
    Ok(applied)
}

async fn create_service(clients: &Clients, new: &NewService) -> Result<String, AwsError> {
    let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::VpcEndpointService)
        .tags(tag(CLUSTER_TAG, &new.cluster))
        .tags(tag(GATEWAY_TAG, PRIVATE_GATEWAY))
        .build();
    let output = clients
        .ec2
        .create_vpc_endpoint_service_configuration()
        .network_load_balancer_arns(&new.balancer_arn)
        .acceptance_required(true)
        .private_dns_name(&new.private_dns_name)
        .set_supported_regions(non_empty(&new.supported_regions))
        .tag_specifications(tags)
        .send()
        .await
        .map_err(|e| {
            AwsError::from_sdk(
                "CreateVpcEndpointServiceConfiguration",
                &new.balancer_arn,
                e,
            )
        })?;
    output
        .service_configuration()
        .and_then(|c| c.service_id())
        .map(str::to_owned)
        .ok_or_else(|| {
            AwsError::unsuccessful(
                "CreateVpcEndpointServiceConfiguration",
                &new.balancer_arn,
                "MissingServiceId",
                "the response named no service id",
            )
        })
}

async fn modify_service(
    clients: &Clients,
    service_id: &str,
    changes: &[ServiceChange],
) -> Result<(), AwsError> {
    let mut request = clients
        .ec2
        .modify_vpc_endpoint_service_configuration()
        .service_id(service_id);
    for change in changes {
        request = match change {
            ServiceChange::RequireAcceptance => request.acceptance_required(true),
            ServiceChange::SetPrivateDnsName(name) => request.private_dns_name(name),
            ServiceChange::AddBalancer(arn) => request.add_network_load_balancer_arns(arn),
            ServiceChange::RemoveBalancer(arn) => request.remove_network_load_balancer_arns(arn),
            ServiceChange::AddRegions(regions) => {
                request.set_add_supported_regions(Some(regions.clone()))
            }
            ServiceChange::RemoveRegions(regions) => {
                request.set_remove_supported_regions(Some(regions.clone()))
            }
        };
    }
    request
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ModifyVpcEndpointServiceConfiguration", service_id, e))?;
    Ok(())
}

async fn accept(clients: &Clients, service_id: &str, plan: &Plan) -> Result<(), AwsError> {
    let ids: Vec<String> = plan.accept.iter().map(|c| c.endpoint_id.clone()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    const CALL: &str = "AcceptVpcEndpointConnections";
    let output = clients
        .ec2
        .accept_vpc_endpoint_connections()
        .service_id(service_id)
        .set_vpc_endpoint_ids(Some(ids))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(CALL, service_id, e))?;
    check_items(CALL, output.unsuccessful())
}

async fn reject(clients: &Clients, service_id: &str, plan: &Plan) -> Result<(), AwsError> {
    let ids: Vec<String> = plan
        .reject
        .iter()
        .map(|r| r.connection.endpoint_id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    const CALL: &str = "RejectVpcEndpointConnections";
    let output = clients
        .ec2
        .reject_vpc_endpoint_connections()
        .service_id(service_id)
        .set_vpc_endpoint_ids(Some(ids))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(CALL, service_id, e))?;
    check_items(CALL, output.unsuccessful())
}

/// Turns the first item that a batch call could not process into an error.
fn check_items(call: &'static str, unsuccessful: &[UnsuccessfulItem]) -> Result<(), AwsError> {
    match unsuccessful.first() {
        None => Ok(()),
        Some(item) => {
            let error = item.error();
            Err(AwsError::unsuccessful(
                call,
                item.resource_id().unwrap_or("(unnamed resource)"),
                error.and_then(|e| e.code()).unwrap_or("Unknown"),
                error
                    .and_then(|e| e.message())
                    .unwrap_or("no message from AWS"),
            ))
        }
    }
}

fn non_empty(items: &[String]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| items.to_vec())
}
