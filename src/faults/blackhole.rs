//! `blackhole`: accepts the request and never answers, never contacting the upstream. The
//! connection is held, costing one small task and no thread, until the client gives up and
//! closes it, which is what an app meets when S3's endpoint stops responding.

use super::{Fault, FaultCtx, RequestAction};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Blackhole;

impl Fault for Blackhole {
    fn kind(&self) -> &'static str {
        "blackhole"
    }

    fn is_terminal(&self) -> bool {
        true
    }

    fn on_request(&self, _ctx: &FaultCtx<'_>) -> RequestAction {
        RequestAction::Blackhole
    }

    fn describe(&self) -> String {
        "blackhole".into()
    }
}
