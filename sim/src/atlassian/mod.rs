//! The Atlassian Cloud APIs apitoken-exporter probes, one module per product: Jira,
//! Confluence, Bitbucket, the Admin API's `orgs` (validity of an admin key) and its
//! organization inventory. This module routes a path to its product by how the path ends
//! (whatever site prefix comes before it) and holds what the products share: Atlassian's
//! response headers and the display name they show.

pub(crate) mod admin;
pub(crate) mod bitbucket;
pub(crate) mod confluence;
pub(crate) mod inventory;
pub(crate) mod jira;
pub(crate) mod oauth;

use axum::http::header::HeaderName;
use axum::response::Response;

use crate::auth::{basic_login, bearer_login, AuthHeader};
use crate::{Behaviour, Credential, Incoming};

pub(crate) const X_AACCOUNTID: HeaderName = HeaderName::from_static("x-aaccountid");
pub(crate) const X_SERAPH_LOGINREASON: HeaderName = HeaderName::from_static("x-seraph-loginreason");
pub(crate) const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub(crate) const X_RATELIMIT_REMAINING: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining");
pub(crate) const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The `WWW-Authenticate` of a Jira or Confluence site's 401 (one Atlassian site login).
const JIRA_REALM: &str = "Basic realm=\"protected-by-atlassian\"";

/// An Atlassian endpoint the exporter probes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Endpoint {
    JiraMyself,
    JiraProjectSearch,
    ConfluenceCurrent,
    BitbucketUser,
    AdminOrgs,
}

/// Splits a path into (site prefix, endpoint) by matching how it ends.
pub(crate) fn route(path: &str) -> Option<(&str, Endpoint)> {
    // Longest / most specific suffixes first.
    const TABLE: [(&str, Endpoint); 5] = [
        (confluence::CURRENT_USER, Endpoint::ConfluenceCurrent),
        (jira::PROJECT_SEARCH, Endpoint::JiraProjectSearch),
        (jira::MYSELF, Endpoint::JiraMyself),
        (admin::ORGS, Endpoint::AdminOrgs),
        (bitbucket::USER, Endpoint::BitbucketUser),
    ];
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    TABLE
        .iter()
        .find_map(|(suffix, ep)| path.strip_suffix(suffix).map(|prefix| (prefix, *ep)))
}

impl Endpoint {
    /// The product's answer; Bitbucket also accepts the username as the basic-auth user.
    pub(crate) fn answer(self, req: Incoming<'_>) -> Response {
        let Incoming {
            auth,
            cred,
            base,
            open,
            gateway,
            scoped,
            ..
        } = req;
        // Scoped service-account tokens and OAuth access tokens: Bearer, gateway only.
        let login = |allow_username| {
            if gateway && matches!(auth, AuthHeader::Bearer { .. }) {
                bearer_login(cred)
            } else {
                basic_login(auth, cred, allow_username)
            }
        };
        match self {
            Endpoint::JiraMyself => jira::myself(login(false), base),
            Endpoint::JiraProjectSearch => jira::project_search(login(false), base, open),
            Endpoint::ConfluenceCurrent => confluence::current_user(login(false), base, open),
            Endpoint::BitbucketUser => bitbucket::user(login(true), base, scoped),
            Endpoint::AdminOrgs => admin::orgs(auth, cred, base),
        }
    }

    /// Atlassian's own answer to a fault behaviour: only the 200 without the account id
    /// is product-specific (the generic rate-limit answer carries Atlassian's headers).
    pub(crate) fn fault(self, req: Incoming<'_>, behaviour: &Behaviour) -> Option<Response> {
        match (behaviour, req.cred) {
            (Behaviour::NoAccountId, Some(cred)) => Some(self.no_account_id(req.base, cred)),
            _ => None,
        }
    }

    /// The product's 200 without the account id field(s) the exporter reads.
    fn no_account_id(self, base: &str, cred: &Credential) -> Response {
        match self {
            Endpoint::JiraMyself => jira::myself_without_account_id(base, cred),
            Endpoint::JiraProjectSearch => jira::project_search_without_account_id(base),
            Endpoint::ConfluenceCurrent => confluence::current_user_without_account_id(cred),
            Endpoint::BitbucketUser => bitbucket::user_without_account_id(cred),
            Endpoint::AdminOrgs => admin::orgs_without_account_id(base),
        }
    }
}

fn display_name(cred: &Credential) -> String {
    if cred.username.is_empty() {
        cred.email.clone()
    } else {
        cred.username.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::normalize_prefix;
    use crate::test_support::*;
    use crate::{Behaviour, Simulator};

    #[tokio::test]
    async fn site_prefixes_route_by_suffix_and_close_independently() {
        let sim = Simulator::new();
        sim.add_credential("dead", cred(Behaviour::Dead));
        sim.add_credential("tok", cred(Behaviour::Valid));
        sim.close_site("/closed-site/"); // trailing slash ignored
        let running = start(&sim).await;
        let base = running.base_url();

        let closed = basic(
            &format!("{base}/closed-site/rest/api/3/project/search"),
            EMAIL,
            "dead",
        )
        .await;
        assert_jira_401(&closed);
        let open = basic(
            &format!("{base}/open-site/rest/api/3/project/search"),
            EMAIL,
            "dead",
        )
        .await;
        assert_anonymous_project_page(&open);
        let root = basic(&format!("{base}/rest/api/3/project/search"), EMAIL, "dead").await;
        assert_anonymous_project_page(&root);

        // Scoped-token gateway prefix works like any other prefix.
        let gw = basic(
            &format!("{base}/ex/jira/11111111-2222-3333-4444-555555555555/rest/api/3/myself"),
            EMAIL,
            "tok",
        )
        .await;
        assert_eq!(gw.status, 200);
        assert!(gw.json()["self"]
            .as_str()
            .unwrap()
            .contains("/ex/jira/11111111-2222-3333-4444-555555555555/rest/api/3/user"));

        // Confluence on the closed prefix.
        let conf = basic(
            &format!("{base}/closed-site/wiki/rest/api/user/current"),
            EMAIL,
            "dead",
        )
        .await;
        assert_confluence_401(&conf);
    }

    #[test]
    fn prefix_normalisation() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("closed"), "/closed");
        assert_eq!(normalize_prefix("/a/b/"), "/a/b");
        assert_eq!(normalize_prefix("http://127.0.0.1:9/a/b"), "/a/b");
        assert_eq!(normalize_prefix("http://127.0.0.1:9"), "");
        assert_eq!(
            route("/x/rest/api/3/myself"),
            Some(("/x", Endpoint::JiraMyself))
        );
        assert_eq!(
            route("/wiki/rest/api/user/current"),
            Some(("", Endpoint::ConfluenceCurrent))
        );
        assert_eq!(route("/2.0/user/"), Some(("", Endpoint::BitbucketUser)));
        assert_eq!(route("/rest/api/3/myselfish"), None);
    }
}
