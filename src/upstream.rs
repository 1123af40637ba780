//! The one outbound HTTP client the process uses, and the fetch helper every provider
//! calls.
//!
//! Redirects are never followed (credentials must not leave the configured host), bodies
//! are read up to [`MAX_BODY_BYTES`], and transport failures, 429 and 5xx are mapped to the
//! error reasons of README "How tokens are classified" (with `Retry-After`, clamped).

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use url::Url;

use crate::probe::{ErrorReason, ProbeError};
use crate::secret::Secret;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// How a request authenticates.
pub enum Auth<'a> {
    Basic {
        user: &'a str,
        secret: &'a Secret,
    },
    Bearer(&'a Secret),
    /// The secret alone in a vendor's own header (GitLab's `PRIVATE-TOKEN`).
    Header {
        name: &'static str,
        secret: &'a Secret,
    },
}

/// A header value that is never printed (hyper's `Debug` shows `Sensitive`).
fn sensitive(value: &str) -> Result<reqwest::header::HeaderValue, ProbeError> {
    let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        ProbeError::new(
            ErrorReason::CredentialUnavailable,
            "credential contains characters not allowed in an HTTP header",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A fully read response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<serde_json::Value, ProbeError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ProbeError::new(
                ErrorReason::BadResponse,
                format!(
                    "HTTP {} with a body that is not JSON ({e})",
                    self.status.as_u16()
                ),
            )
        })
    }
}

/// How the outbound client reaches the vendors on a corporate network (README
/// "Corporate networks"): extra CA certificates (a TLS-intercepting proxy's), and a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// PEM certificates trusted in addition to the bundled web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any certificate. Only for a lab; logged loudly at every start and reload.
    pub insecure_skip_verify: bool,
    /// Every request goes through this proxy (`NO_PROXY` still applies). Without it,
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from the environment apply.
    pub proxy_url: Option<Url>,
}

/// Shared client: connection pool with keep-alive, no redirects, rustls.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    pub fn new() -> Result<Self, String> {
        Self::with_options(&ClientOptions::default())
    }

    pub fn with_options(opts: &ClientOptions) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("apitoken-exporter/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(64)
            .tcp_keepalive(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = &opts.ca_pem {
            for cert in parse_ca_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if opts.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(url) = &opts.proxy_url {
            let proxy = reqwest::Proxy::all(url.as_str())
                .map_err(|e| format!("cannot use proxy {url}: {e}"))?
                .no_proxy(reqwest::NoProxy::from_env());
            builder = builder.proxy(proxy);
        }
        let inner = builder
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Self { inner })
    }

    /// GET `url`, read at most [`MAX_BODY_BYTES`], classify failures. 3xx, 429 and 5xx are
    /// errors here; providers interpret the remaining statuses. The caller bounds the
    /// whole call with the probe timeout.
    pub async fn get(&self, url: Url, auth: Auth<'_>) -> Result<Response, ProbeError> {
        let host = url.host_str().unwrap_or("").to_string();
        let req = self.inner.get(url).header("Accept", "application/json");
        let req = match auth {
            Auth::Basic { user, secret } => req.basic_auth(user, Some(secret.expose())),
            Auth::Bearer(secret) => req.header(
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", secret.expose()))?,
            ),
            Auth::Header { name, secret } => req.header(name, sensitive(secret.expose())?),
        };
        self.send(req, &host).await
    }

    /// POST a form (`application/x-www-form-urlencoded`) to `url`, with the same rules as
    /// [`HttpClient::get`]: no redirects, the body cap, 429/5xx as errors. The form may
    /// carry a secret (an OAuth client secret): it is never logged, and errors name only
    /// the host.
    pub async fn post_form(&self, url: Url, form: String) -> Result<Response, ProbeError> {
        let host = url.host_str().unwrap_or("").to_string();
        let req = self
            .inner
            .post(url)
            .header("Accept", "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        self.send(req, &host).await
    }

    async fn send(&self, req: reqwest::RequestBuilder, host: &str) -> Result<Response, ProbeError> {
        let mut resp = req.send().await.map_err(|e| classify(&e, host))?;
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());

        if status.is_redirection() {
            let to = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| Url::parse(l).ok())
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "a relative location".to_string());
            return Err(ProbeError::new(
                ErrorReason::BadResponse,
                format!("HTTP {} redirect to {to} not followed", status.as_u16()),
            ));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(rate_limited(status, &headers));
        }
        if status.is_server_error() {
            return Err(ProbeError {
                retry_after: retry_after(&headers, SystemTime::now()),
                ..ProbeError::new(ErrorReason::Http5xx, format!("HTTP {}", status.as_u16()))
            });
        }

        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, host))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ProbeError::new(
                    ErrorReason::BadResponse,
                    format!("response body larger than {MAX_BODY_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body: body.freeze(),
        })
    }
}

/// The certificates of a PEM bundle; an error when it holds none.
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| format!("not a PEM certificate bundle ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".to_string());
    }
    Ok(certs)
}

/// Maps a transport error to a reason by looking through its source chain. reqwest's own
/// Display is not used: it can contain the URL, and we want stable categories.
fn classify(e: &reqwest::Error, host: &str) -> ProbeError {
    if e.is_timeout() {
        return ProbeError::new(ErrorReason::Timeout, format!("timeout talking to {host}"));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut io_kind = None;
    while let Some(err) = source {
        // io::Error::source() skips the error it wraps, so look inside explicitly: hyper
        // wraps rustls' error in two layers of io::Error.
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(cur) = inner {
            if let Some(tls) = cur.downcast_ref::<rustls::Error>() {
                return ProbeError::new(
                    ErrorReason::Tls,
                    format!("TLS failure with {host}: {tls}"),
                );
            }
            inner = cur.downcast_ref::<std::io::Error>().and_then(|io| {
                io_kind.get_or_insert(io.kind());
                io.get_ref()
                    .map(|i| i as &(dyn std::error::Error + 'static))
            });
        }
        // A response head hyper cannot parse (bytes not allowed in a header name, a head
        // over hyper's limits of ~400 KB or 100 headers) means the server did answer, with
        // garbage: a bad response, not a connection failure.
        if let Some(parse) = err.downcast_ref::<hyper::Error>().filter(|h| h.is_parse()) {
            return ProbeError::new(
                ErrorReason::BadResponse,
                format!("malformed HTTP response from {host}: {parse}"),
            );
        }
        let text = err.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return ProbeError::new(ErrorReason::Connect, format!("cannot resolve host {host}"));
        }
        source = err.source();
    }
    let what = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".to_string(),
        Some(std::io::ErrorKind::TimedOut) => {
            return ProbeError::new(ErrorReason::Timeout, format!("timeout talking to {host}"))
        }
        Some(kind) => kind.to_string(),
        None if e.is_body() || e.is_decode() => "response interrupted".to_string(),
        None => "connection failed".to_string(),
    };
    ProbeError::new(ErrorReason::Connect, format!("{what} ({host})"))
}

/// A `rate_limited` error for an answer that says the caller is over its rate limit (a
/// 429 here; GitHub also answers 403 so), with the waits its headers name: `Retry-After`
/// and the rate-limit reset ([`rate_limit_reset`]).
pub fn rate_limited(status: StatusCode, headers: &HeaderMap) -> ProbeError {
    let now = SystemTime::now();
    ProbeError {
        retry_after: retry_after(headers, now),
        rate_limit_reset: rate_limit_reset(headers, now),
        ..ProbeError::new(
            ErrorReason::RateLimited,
            format!("HTTP {}", status.as_u16()),
        )
    }
}

/// How long a rate-limited answer asks the client to wait: `Retry-After`, else the time
/// until its rate-limit reset, at least [`RETRY_AFTER_MIN`]; None when it names neither.
pub fn rate_limit_wait(e: &ProbeError) -> Option<Duration> {
    e.retry_after
        .or(e.rate_limit_reset)
        .map(|d| d.max(RETRY_AFTER_MIN))
}

fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_retry_after(v, now))
}

/// `Retry-After` as delay-seconds or an HTTP date, clamped to [1 s, 1 h]. Garbage and
/// negative values become the minimum: the server did ask us to back off.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Duration {
    let v = value.trim();
    let raw = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Any all-digit string, however long (Long.MAX has been seen), saturates.
        Some(
            v.parse::<u64>()
                .map_or(RETRY_AFTER_MAX, Duration::from_secs),
        )
    } else if let Ok(when) = httpdate::parse_http_date(v) {
        Some(when.duration_since(now).unwrap_or(Duration::ZERO))
    } else {
        None
    };
    raw.unwrap_or(RETRY_AFTER_MIN)
        .clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX)
}

/// The rate-limit reset as the time left until it, clamped to at most
/// [`RETRY_AFTER_MAX`]; zero once it has passed. None when the header is absent or
/// unparseable. The header is `X-RateLimit-Reset` (Atlassian, GitHub) or `RateLimit-Reset`
/// (GitLab); its value ISO 8601 in UTC (RFC 3339, or Jira's `yyyy-MM-ddTHH:mmZ`) or, all
/// digits, Unix epoch seconds (GitHub, GitLab).
pub fn rate_limit_reset(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = ["x-ratelimit-reset", "ratelimit-reset"]
        .iter()
        .find_map(|name| headers.get(*name))?
        .to_str()
        .ok()?
        .trim();
    let at = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // However long (saturates): a reset that far out is clamped to the maximum below.
        value
            .parse::<i64>()
            .map_or(i64::MAX, |secs| secs.saturating_mul(1000))
    } else {
        chrono::DateTime::parse_from_rfc3339(value)
            .map(|t| t.timestamp_millis())
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%MZ")
                    .map(|t| t.and_utc().timestamp_millis())
            })
            .ok()?
    };
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let left = u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0);
    Some(Duration::from_millis(left).min(RETRY_AFTER_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms_are_clamped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("30", now), Duration::from_secs(30));
        assert_eq!(parse_retry_after("0", now), RETRY_AFTER_MIN);
        assert_eq!(
            parse_retry_after("9223372036854775807", now),
            RETRY_AFTER_MAX
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now),
            RETRY_AFTER_MAX
        );
        assert_eq!(parse_retry_after("-5", now), RETRY_AFTER_MIN);
        assert_eq!(parse_retry_after("soon", now), RETRY_AFTER_MIN);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(parse_retry_after(&date, now), Duration::from_secs(120));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(120));
        assert_eq!(parse_retry_after(&past, now), RETRY_AFTER_MIN);
        let far = httpdate::fmt_http_date(now + Duration::from_secs(86_400 * 30));
        assert_eq!(parse_retry_after(&far, now), RETRY_AFTER_MAX);
    }

    #[test]
    fn rate_limit_reset_forms() {
        // 2001-09-09T01:46:40Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let reset = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-ratelimit-reset", v.parse().unwrap());
            rate_limit_reset(&h, now)
        };
        assert_eq!(reset("2001-09-09T01:47:00Z"), Some(Duration::from_secs(20)));
        assert_eq!(reset("2001-09-09T01:48Z"), Some(Duration::from_secs(80)));
        assert_eq!(
            reset("2001-09-09T03:46:40.500+02:00"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(reset("2001-09-09T01:00Z"), Some(Duration::ZERO));
        assert_eq!(reset("2002-01-01T00:00Z"), Some(RETRY_AFTER_MAX));
        assert_eq!(reset("tomorrow"), None);
        assert_eq!(rate_limit_reset(&HeaderMap::new(), now), None);
    }

    #[test]
    fn rate_limit_reset_as_epoch_seconds_under_either_header_name() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let reset = |name: &'static str, v: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, v.parse().unwrap());
            rate_limit_reset(&h, now)
        };
        for name in ["x-ratelimit-reset", "ratelimit-reset", "RateLimit-Reset"] {
            assert_eq!(reset(name, "1000000090"), Some(Duration::from_secs(90)));
            assert_eq!(reset(name, "999999000"), Some(Duration::ZERO));
            assert_eq!(reset(name, "1000086400"), Some(RETRY_AFTER_MAX));
            assert_eq!(
                reset(name, "99999999999999999999999"),
                Some(RETRY_AFTER_MAX)
            );
        }
        // Atlassian's ISO form under the GitLab name too, and the first name wins.
        assert_eq!(
            reset("ratelimit-reset", "2001-09-09T01:47:00Z"),
            Some(Duration::from_secs(20))
        );
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", "1000000010".parse().unwrap());
        h.insert("ratelimit-reset", "1000000500".parse().unwrap());
        assert_eq!(rate_limit_reset(&h, now), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_rate_limited_answer_waits_for_retry_after_else_the_reset() {
        let soon = (SystemTime::now() + Duration::from_secs(600))
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", soon.to_string().parse().unwrap());
        let e = rate_limited(StatusCode::FORBIDDEN, &h);
        assert_eq!(
            (e.reason, e.detail.as_str()),
            (ErrorReason::RateLimited, "HTTP 403")
        );
        assert_eq!(e.retry_after, None);
        let wait = rate_limit_wait(&e).unwrap();
        assert!(
            wait > Duration::from_secs(590) && wait <= Duration::from_secs(600),
            "{wait:?}"
        );
        h.insert(RETRY_AFTER, "30".parse().unwrap());
        let e = rate_limited(StatusCode::TOO_MANY_REQUESTS, &h);
        assert_eq!(rate_limit_wait(&e), Some(Duration::from_secs(30)));
        // A reset that already passed still waits the minimum; no header, no wait.
        let mut h = HeaderMap::new();
        h.insert("ratelimit-reset", "1".parse().unwrap());
        assert_eq!(
            rate_limit_wait(&rate_limited(StatusCode::TOO_MANY_REQUESTS, &h)),
            Some(RETRY_AFTER_MIN)
        );
        let e = rate_limited(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new());
        assert_eq!(rate_limit_wait(&e), None);
    }
}
