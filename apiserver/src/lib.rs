//! skiff's API server: the Kubernetes REST API over a pluggable [`store::Store`].
//!
//! Owns: the resource registry, request handling (CRUD, watch, patch,
//! subresources), validation and defaulting, discovery and OpenAPI documents,
//! authentication, TLS and the storage backends. Must not depend on the
//! scheduler, kubelet or controllers crates: they are clients of this API.

pub mod admission;
pub mod allocator;
pub mod auth;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod metrics_api;
pub mod namespaces;
pub mod nodeclient;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod selector;
pub mod server;
pub mod serviceaccount;
pub mod store;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watchcache;

pub use server::{start, Config, RunningServer, ServerError, StoreConfig};
