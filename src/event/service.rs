// SPDX-License-Identifier: Apache-2.0
//! The `service` line: why a Service cannot answer, for a connection to its
//! ClusterIP that failed or was reset (docs/schema.md). Written by the
//! plugin, never by a runner.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Proto;

/// A `{"type":"service",…}` line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ServiceProblem {
    /// The time of the event that raised it.
    pub time: String,
    pub node: String,
    pub proto: Proto,
    pub src: SocketAddr,
    /// The ClusterIP and port the client addressed.
    pub dst: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_name: Option<String>,
    /// `ns/name` of the Service.
    pub service: String,
    pub problem: ServiceMiss,
    /// The problem in words (ports, selector, pods and their readiness).
    pub detail: String,
    /// What raised it: `failed ECONNREFUSED`, `reset received`.
    pub cause: String,
}

/// Why a Service has no backend for a port.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceMiss {
    /// No port of the Service is the port and protocol used.
    NoPort,
    /// No selector: its endpoints are set by hand, and none is ready.
    NoSelector,
    /// The selector matches no pod.
    NoPods,
    /// A named `targetPort` that no container port of its pods has.
    NamedPortUnmatched,
    /// Pods match, none of them is ready.
    NoReadyEndpoints,
}

impl ServiceMiss {
    /// The miss in a few words, as the text line says it.
    pub fn words(self) -> &'static str {
        match self {
            ServiceMiss::NoPort => "no such port",
            ServiceMiss::NoSelector => "no selector",
            ServiceMiss::NoPods => "no pods",
            ServiceMiss::NamedPortUnmatched => "target port matches no container port",
            ServiceMiss::NoReadyEndpoints => "no ready endpoints",
        }
    }
}
