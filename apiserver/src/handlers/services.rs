//! Service address bookkeeping around writes: ClusterIPs and NodePorts are
//! allocated before a Service is stored, carried over on updates, and
//! released when it is deleted or a write fails.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::Ctx;
use crate::allocator::{self, AllocError};
use crate::error::{ApiError, ApiResult};
use crate::objects;

/// What a write reserved, to release if the write does not happen.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    ips: Vec<String>,
    ports: Vec<u16>,
}

impl Reserved {
    pub async fn release(self, ctx: &Ctx) {
        let store = ctx.state.store.as_ref();
        for ip in self.ips {
            allocator::release_ip(store, &ip).await;
        }
        for p in self.ports {
            allocator::release_port(store, p).await;
        }
    }
}

fn is_service(ctx: &Ctx) -> bool {
    ctx.def.group.is_empty() && ctx.def.kind == "Service"
}

fn wants_cluster_ip(svc: &Value) -> bool {
    svc["spec"]["type"].as_str() != Some("ExternalName")
        && svc["spec"]["clusterIP"].as_str() != Some("None")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort") | Some("LoadBalancer")
    )
}

fn alloc_error(ctx: &Ctx, svc: &Value, field: &str, e: AllocError) -> ApiError {
    match e {
        AllocError::Store(s) => {
            ApiError::from_store(s, &ctx.target(objects::name(svc).unwrap_or_default()))
        }
        AllocError::Full => {
            ApiError::Internal(format!("failed to allocate {field}: range is full"))
        }
        other => ApiError::invalid_field(
            "",
            "Service",
            objects::name(svc).unwrap_or_default(),
            field,
            &format!("Invalid value: {other}"),
        ),
    }
}

/// Allocates what `svc` still lacks (a ClusterIP, NodePorts). On error,
/// whatever this call reserved is released.
pub(crate) async fn allocate(ctx: &Ctx, svc: &mut Value) -> ApiResult<Reserved> {
    let mut reserved = Reserved::default();
    if !is_service(ctx) {
        return Ok(reserved);
    }
    match allocate_inner(ctx, svc, &mut reserved).await {
        Ok(()) => Ok(reserved),
        Err(e) => {
            reserved.release(ctx).await;
            Err(e)
        }
    }
}

async fn allocate_inner(ctx: &Ctx, svc: &mut Value, reserved: &mut Reserved) -> ApiResult<()> {
    let owner = format!(
        "{}/{}",
        objects::namespace(svc).unwrap_or_default(),
        objects::name(svc).unwrap_or_default()
    );
    let store = ctx.state.store.as_ref();
    if wants_cluster_ip(svc) && svc["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) {
        let ip = allocator::allocate_ip(store, &ctx.state.config.service_cidr, None, &owner)
            .await
            .map_err(|e| alloc_error(ctx, svc, "spec.clusterIP", e))?;
        reserved.ips.push(ip.to_string());
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
    }
    if wants_node_ports(svc) {
        let count = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
        for i in 0..count {
            if svc["spec"]["ports"][i]["nodePort"]
                .as_i64()
                .is_some_and(|p| p > 0)
            {
                continue;
            }
            let p = allocator::allocate_port(store, None, &owner)
                .await
                .map_err(|e| alloc_error(ctx, svc, &format!("spec.ports[{i}].nodePort"), e))?;
            reserved.ports.push(p);
            svc["spec"]["ports"][i]["nodePort"] = json!(p);
        }
    }
    Ok(())
}

/// Reserves the addresses a new Service names itself.
pub(crate) async fn reserve_requested(ctx: &Ctx, svc: &Value) -> ApiResult<Reserved> {
    let mut reserved = Reserved::default();
    if !is_service(ctx) {
        return Ok(reserved);
    }
    let owner = format!(
        "{}/{}",
        objects::namespace(svc).unwrap_or_default(),
        objects::name(svc).unwrap_or_default()
    );
    let store = ctx.state.store.as_ref();
    let result: ApiResult<()> = async {
        if wants_cluster_ip(svc) {
            if let Some(ip) = svc["spec"]["clusterIP"].as_str().filter(|s| !s.is_empty()) {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    ApiError::invalid_field(
                        "",
                        "Service",
                        objects::name(svc).unwrap_or_default(),
                        "spec.clusterIP",
                        "Invalid value: must be a valid IPv4 address",
                    )
                })?;
                allocator::allocate_ip(store, &ctx.state.config.service_cidr, Some(parsed), &owner)
                    .await
                    .map_err(|e| alloc_error(ctx, svc, "spec.clusterIP", e))?;
                reserved.ips.push(ip.to_string());
            }
        }
        if wants_node_ports(svc) {
            for (i, port) in svc["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(p) = port["nodePort"].as_u64().filter(|p| *p > 0) {
                    let p = u16::try_from(p).map_err(|_| {
                        alloc_error(
                            ctx,
                            svc,
                            &format!("spec.ports[{i}].nodePort"),
                            AllocError::PortOutOfRange,
                        )
                    })?;
                    allocator::allocate_port(store, Some(p), &owner)
                        .await
                        .map_err(|e| {
                            alloc_error(ctx, svc, &format!("spec.ports[{i}].nodePort"), e)
                        })?;
                    reserved.ports.push(p);
                }
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(reserved),
        Err(e) => {
            reserved.release(ctx).await;
            Err(e)
        }
    }
}

/// On update: reserves the addresses `new` names that `old` did not hold,
/// then allocates what `new` still lacks.
pub(crate) async fn reserve_changed(
    ctx: &Ctx,
    old: &Value,
    new: &mut Value,
) -> ApiResult<Reserved> {
    if !is_service(ctx) {
        return Ok(Reserved::default());
    }
    let held = no_longer_used(old, None);
    let mut fresh = new.clone();
    if fresh["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| held.ips.iter().any(|h| h == ip))
    {
        fresh["spec"]["clusterIP"] = Value::Null;
    }
    if let Some(ports) = fresh["spec"]["ports"].as_array_mut() {
        for p in ports {
            if p["nodePort"]
                .as_u64()
                .is_some_and(|n| held.ports.iter().any(|h| u64::from(*h) == n))
            {
                p["nodePort"] = Value::Null;
            }
        }
    }
    let mut reserved = reserve_requested(ctx, &fresh).await?;
    match allocate(ctx, new).await {
        Ok(more) => {
            reserved.ips.extend(more.ips);
            reserved.ports.extend(more.ports);
            Ok(reserved)
        }
        Err(e) => {
            reserved.release(ctx).await;
            Err(e)
        }
    }
}

/// On update, a Service that leaves out its ClusterIP or NodePorts keeps the
/// ones it had, as Kubernetes' REST layer does.
pub(crate) fn carry_over(ctx: &Ctx, old: &Value, new: &mut Value) {
    if !is_service(ctx) {
        return;
    }
    if new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) && wants_cluster_ip(new) {
        if let Some(ip) = old["spec"]["clusterIP"]
            .as_str()
            .filter(|s| !s.is_empty() && *s != "None")
        {
            new["spec"]["clusterIP"] = json!(ip);
            new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
    }
    if wants_node_ports(new) {
        let old_ports: Vec<Value> = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
        if let Some(ports) = new["spec"]["ports"].as_array_mut() {
            for p in ports {
                if p["nodePort"].as_i64().is_some_and(|n| n > 0) {
                    continue;
                }
                if let Some(prev) = old_ports.iter().find(|o| {
                    o["port"] == p["port"] && o["nodePort"].as_i64().is_some_and(|n| n > 0)
                }) {
                    p["nodePort"] = prev["nodePort"].clone();
                }
            }
        }
    }
}

/// What `old` held that `new` no longer uses.
pub(crate) fn no_longer_used(old: &Value, new: Option<&Value>) -> Reserved {
    let mut r = Reserved::default();
    let ip_of = |v: &Value| {
        v["spec"]["clusterIP"]
            .as_str()
            .filter(|s| !s.is_empty() && *s != "None")
            .map(str::to_string)
    };
    let ports_of = |v: &Value| -> Vec<u16> {
        v["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
            .filter(|n| *n > 0)
            .collect()
    };
    if let Some(ip) = ip_of(old) {
        if new.and_then(ip_of).as_deref() != Some(ip.as_str()) {
            r.ips.push(ip);
        }
    }
    let keep = new.map(ports_of).unwrap_or_default();
    r.ports = ports_of(old)
        .into_iter()
        .filter(|p| !keep.contains(p))
        .collect();
    r
}

/// Releases a deleted Service's addresses.
pub(crate) async fn release_deleted(ctx: &Ctx, old: &Value) {
    if is_service(ctx) {
        no_longer_used(old, None).release(ctx).await;
    }
}
