//! The vendor-neutral probe model: what one probe can conclude ([`Outcome`]), why it may
//! conclude nothing ([`ErrorReason`], [`ProbeError`]), and what a provider hands back
//! ([`Verdict`] plus the [`Facts`] the vendor reported). Every layer that deals with probe
//! results (the outbound client, the providers, the state, the metrics) depends on this
//! module; it depends on none of them (docs/architecture.md).

mod error;
mod outcome;
mod verdict;

pub use error::{ErrorReason, ProbeError};
pub use outcome::{Outcome, OutcomeKind};
pub use verdict::{Expected, Facts, Verdict};
