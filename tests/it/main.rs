//! The one integration test binary (`cargo test --test it`). Each module is one suite;
//! `harness` holds what they share, compiled once. See docs/testing.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The system allocator, plus a look at what a watched thread frees: how
/// `secrets::dropping_a_secret_wipes_it_before_its_memory_is_freed` sees a wipe.
#[global_allocator]
static ALLOC: alloc_probe::Probe = alloc_probe::Probe;

mod harness;

mod atlassian_2026;
mod bad_config;
mod blocking;
mod cli;
mod corporate_network;
mod dockerfile;
mod faults;
mod golden;
mod hardening;
mod http_hardening;
mod inventory;
mod inventory_2026;
mod probe_outcomes;
mod properties;
mod routes;
mod scheduling;
mod secrets;
mod soak;
mod vendors;
mod webconfig;
