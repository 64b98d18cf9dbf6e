//! The router: runs a call on a local plugin, or answers why it cannot.

use std::sync::Arc;

use ciborium::Value;
use futures::future::BoxFuture;

use crate::plugins::Registry;
use crate::protocol::{CallError, ErrorCode, FunctionInfo, Processed};
use crate::runtime::Runtime;
use crate::service::{CallRequest, Service};

/// Routes calls for one host. Implements [`Service`] for the server and for
/// the guests' nested calls.
pub struct Router {
    region: Arc<str>,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    hop_limit: u32,
}

impl Router {
    pub fn new(
        region: &str,
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        hop_limit: u32,
    ) -> Self {
        Router {
            region: region.into(),
            runtime,
            registry,
            hop_limit,
        }
    }

    async fn route(self: Arc<Self>, request: CallRequest) -> Result<Value, CallError> {
        if request.hops > self.hop_limit {
            return Err(CallError::new(
                ErrorCode::LoopDetected,
                Processed::No,
                format!(
                    "`{}` exceeded the hop limit of {} (forwards and nested calls)",
                    request.function, self.hop_limit
                ),
            ));
        }
        let catalog = self.registry.snapshot();
        let Some((plugin, index)) = catalog.lookup(&request.function) else {
            return Err(CallError::not_found(&request.function));
        };
        drop(catalog);
        let router: Arc<dyn Service> = self.clone();
        self.runtime
            .call(plugin, index, request, router, self.region.clone())
            .await
    }
}

impl Service for Router {
    fn call(self: Arc<Self>, request: CallRequest) -> BoxFuture<'static, Result<Value, CallError>> {
        Box::pin(async move {
            let region = self.region.clone();
            self.route(request).await.map_err(|e| e.in_region(&region))
        })
    }

    fn catalog(&self) -> Vec<FunctionInfo> {
        self.registry.snapshot().function_infos(&self.region)
    }
}
