//! Temporary assembly until the policy, trust and record modules land.

use std::sync::Arc;

use crate::config::ServeConfig;
use crate::server::{AdminOnly, CountingRecorder, Parts};

struct NoCredentials;
impl crate::identify::Credentials for NoCredentials {
    fn caller_for_uid(&self, _: u32) -> Option<String> {
        None
    }
    fn verify_token(&self, _: &str) -> Option<(String, String)> {
        None
    }
}

struct NoServices;
impl crate::stages::LocalServices for NoServices {
    fn serve<'a>(
        &'a self,
        _: &'a crate::pipeline::Gateway,
        _: &'a crate::identify::Caller,
        _: &'a crate::classify::Classified,
        _: &'a crate::resolve::Target,
        _: Option<crate::decide::FileContext>,
        _: crate::stages::Forwardable,
        _: &'a crate::stages::Life,
    ) -> futures_util::future::BoxFuture<'a, http::Response<crate::reply::ProxyBody>> {
        Box::pin(async { crate::reply::error(http::StatusCode::NOT_IMPLEMENTED, "not yet") })
    }
    fn file_context<'a>(
        &'a self,
        _: &'a crate::pipeline::Gateway,
        _: &'a crate::identify::Caller,
        _: &'a crate::classify::Classified,
        _: &'a crate::resolve::Target,
        _: &'a crate::inspect::Inspected,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<crate::decide::FileContext>, (http::StatusCode, String)>> {
        Box::pin(async { Ok(None) })
    }
}

pub async fn assemble(_config: &ServeConfig) -> anyhow::Result<Parts> {
    Ok(Parts {
        credentials: Arc::new(NoCredentials),
        decider: Arc::new(AdminOnly),
        recorder: Arc::new(CountingRecorder(Default::default(), Default::default())),
        services: Arc::new(NoServices),
        selector_is_immutable: Arc::new(|_| false),
    })
}
