//! The metric catalogue: every family's name, type and HELP text, in one place. HELP
//! texts say that scrapes read cached state (the exporter's contract: a scrape never
//! triggers a probe).

use std::fmt::Write as _;

const SCRAPE_NOTE: &str = "(cached state; scrapes never trigger probes)";

pub struct Family {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
}

const fn family(name: &'static str, kind: &'static str, help: &'static str) -> Family {
    Family { name, kind, help }
}

pub const VALID: Family = family(
    "apitoken_valid",
    "gauge",
    "1 if the last conclusive probe authenticated the token",
);
pub const ANONYMOUS: Family = family(
    "apitoken_anonymous_fallback",
    "gauge",
    "1 if the site silently served the token as anonymous",
);
pub const MISMATCH: Family = family(
    "apitoken_identity_mismatch",
    "gauge",
    "1 if the token authenticated as an unexpected account",
);
pub const EXPIRY: Family = family(
    "apitoken_expiry_timestamp_seconds",
    "gauge",
    "Unix time the token expires (absent when unknown)",
);
pub const DAYS: Family = family(
    "apitoken_days_until_expiry",
    "gauge",
    "Days until the token expires, computed at scrape time; negative once expired",
);
pub const REVOKED: Family = family(
    "apitoken_revoked_timestamp_seconds",
    "gauge",
    "Unix time the token was revoked and must stop working: revoked_at from the config (source=\"config\"), else when a complete organization inventory listing first showed its linked entry not ALLOWED or gone (source=\"org_inventory\")",
);
pub const REVOCATION_LAG: Family = family(
    "apitoken_revocation_lag_seconds",
    "gauge",
    "For a revoked token seen valid after its revocation time: seconds from the revocation to the first conclusive probe that was not valid (absent until then, and when no valid probe followed the revocation)",
);
pub const LIFETIME: Family = family(
    "apitoken_lifetime_seconds",
    "gauge",
    "Expiry minus creation in seconds, when both are known (config created_at, the organization inventory's createdAt, or the vendor)",
);
pub const LAST_USED: Family = family(
    "apitoken_last_used_timestamp_seconds",
    "gauge",
    "Unix time the vendor last saw the token used (the vendor itself, or a linked organization inventory entry's lastActiveAt)",
);
pub const SCOPE_INFO: Family = family(
    "apitoken_scope_info",
    "gauge",
    "One series per scope the vendor reports for the token; always 1",
);
pub const SUCCESS: Family = family(
    "apitoken_probe_success",
    "gauge",
    "1 if the last probe reached a conclusive answer",
);
pub const LAST_PROBE: Family = family(
    "apitoken_last_probe_timestamp_seconds",
    "gauge",
    "Unix time of the last finished probe",
);
pub const LAST_VALID: Family = family(
    "apitoken_last_valid_timestamp_seconds",
    "gauge",
    "Unix time the token was last seen valid",
);
pub const DURATION: Family = family(
    "apitoken_probe_duration_seconds",
    "gauge",
    "Duration of the last probe in seconds",
);
pub const INTERVAL: Family = family(
    "apitoken_probe_interval_seconds",
    "gauge",
    "Effective probe interval in seconds: the configured interval, or longer while the server asked to back off (Retry-After)",
);
pub const PROBES: Family = family(
    "apitoken_probes_total",
    "counter",
    "Probes by result: valid, mismatch, anonymous, rejected, error",
);
pub const ERRORS: Family = family(
    "apitoken_probe_errors_total",
    "counter",
    "Inconclusive probes by reason",
);
pub const INFO: Family = family(
    "apitoken_info",
    "gauge",
    "Static information about a configured token; always 1",
);
pub const ORG_TOKEN_EXPIRY: Family = family(
    "apitoken_org_token_expiry_timestamp_seconds",
    "gauge",
    "Unix time a user API token listed by the organization's Admin API expires (tokens without an expiry have no series)",
);
pub const ORG_TOKEN_LAST_ACTIVE: Family = family(
    "apitoken_org_token_last_active_timestamp_seconds",
    "gauge",
    "Unix time a user API token listed by the organization's Admin API was last used (lastActiveAt)",
);
pub const ORG_KEY_EXPIRY: Family = family(
    "apitoken_org_api_key_expiry_timestamp_seconds",
    "gauge",
    "Unix time an admin API key listed by the organization's Admin API expires",
);
pub const ORG_TOKEN_CREATED: Family = family(
    "apitoken_org_token_created_timestamp_seconds",
    "gauge",
    "Unix time a user API token listed by the organization's Admin API was created (createdAt)",
);
pub const ORG_KEY_CREATED: Family = family(
    "apitoken_org_api_key_created_timestamp_seconds",
    "gauge",
    "Unix time an admin API key listed by the organization's Admin API was created (createdAt)",
);
pub const ORG_TOKENS: Family = family(
    "apitoken_org_tokens",
    "gauge",
    "Entries of an organization inventory list by status (empty for api_keys) and remaining time at scrape time (expires_within: expired, 7d, 30d, 90d, later, never)",
);
pub const ORG_SUCCESS: Family = family(
    "apitoken_org_inventory_success",
    "gauge",
    "1 if the last organization inventory run completed this list (every page of it); on 0 the list's last complete state is kept",
);
pub const ORG_LAST_SUCCESS: Family = family(
    "apitoken_org_inventory_last_success_timestamp_seconds",
    "gauge",
    "Unix time this organization inventory list last completed",
);

/// Writes the `# HELP` and `# TYPE` lines of a family.
pub fn header(out: &mut String, f: &Family) {
    let _ = writeln!(out, "# HELP {} {} {SCRAPE_NOTE}", f.name, f.help);
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
}
