//! HTTP for downloads: one agent (the operating system's certificate store, the proxy from the
//! environment, timeouts), which failures are worth another try and how long to wait before
//! it, and the URL and header helpers.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// A connection that opens no socket for this long, or a read that stalls for this long, fails
/// (and is tried again, see [`RetryPolicy`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The agent every download uses. Redirects are followed by hand (the hub's redirect answers
/// carry the file's metadata), bodies are never decompressed (byte counts must match the hub's
/// sizes), and `ALL_PROXY` / `HTTPS_PROXY` / `HTTP_PROXY` with `NO_PROXY` are honoured.
pub(super) fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .accept_encoding("identity")
        .user_agent(format!("latent-studio/{}", env!("CARGO_PKG_VERSION")))
        .proxy(ureq::Proxy::try_from_env())
        .tls_config(TlsConfig::builder().root_certs(root_certs()).build())
        .timeout_resolve(Some(CONNECT_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(READ_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .build();
    ureq::Agent::new_with_config(config)
}

/// The certificates in the operating system's store (where a company's TLS-inspecting proxy
/// puts its root, and where `SSL_CERT_FILE` / `SSL_CERT_DIR` point), read once; Mozilla's
/// roots built into the program when the store is empty or cannot be read.
fn root_certs() -> RootCerts {
    static ROOTS: OnceLock<RootCerts> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            // Unreadable certificates in the store are skipped; the rest still count.
            let found = rustls_native_certs::load_native_certs();
            let certs: Vec<Certificate<'static>> = found
                .certs
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            if certs.is_empty() {
                RootCerts::WebPki
            } else {
                RootCerts::new_with_certs(&certs)
            }
        })
        .clone()
}

/// How often and how patiently a download tries again after a failure that may pass (a reset
/// connection, a timeout, an HTTP 5xx or 429): `retries` more times, waiting `first_delay`,
/// then twice as long each time, at most `max_delay`. Each try resumes where the last stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retries: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five more tries over about half a minute (1 + 2 + 4 + 8 + 16 s).
    fn default() -> Self {
        Self {
            retries: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No second try: the first failure is reported.
    pub fn none() -> Self {
        Self {
            retries: 0,
            ..Self::default()
        }
    }

    /// The wait before try number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// HTTP answers that may be different a moment later.
pub(super) fn is_transient_status(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status)
}

/// Errors that mean no connection to the host could be made at all.
pub(super) fn is_unreachable(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(e) => {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkDown
                    | io::ErrorKind::AddrNotAvailable
            )
            // A failed DNS lookup has no ErrorKind of its own in std; its text is stable.
            || e.to_string().contains("failed to lookup address")
        }
        _ => false,
    }
}

/// Errors of a connection that was made and then failed: a reset, a timeout, a garbled or cut
/// answer. A certificate the store does not trust, a bad URL or proxy setting is not one.
pub(super) fn is_transient_error(err: &ureq::Error) -> bool {
    matches!(
        err,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

/// `W/"abc"` → `abc`, as `huggingface_hub` stores etags.
pub(super) fn normalize_etag(etag: &str) -> String {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_string()
}

/// An LFS file's etag is the SHA-256 of its contents (64 hex digits); a git blob's is not.
pub(super) fn sha256_etag(etag: &str) -> Option<String> {
    (etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| etag.to_ascii_lowercase())
}

/// The first byte of `bytes START-END/TOTAL`.
pub(super) fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters).
pub(super) fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Resolves a `Location` header against the URL that answered it.
pub(super) fn join_url(base: &str, location: &str) -> String {
    let location = location.trim();
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let origin_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = &base[..scheme_end.saturating_sub(3)];
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{}{location}", &base[..origin_end]);
    }
    let path_end = base.find(['?', '#']).unwrap_or(base.len());
    let dir_end = base[..path_end]
        .rfind('/')
        .filter(|&i| i >= origin_end)
        .unwrap_or(path_end);
    format!("{}/{location}", &base[..dir_end])
}

/// One response header as text.
pub(super) fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_ranges_are_parsed() {
        assert_eq!(normalize_etag("\"abc123\""), "abc123");
        assert_eq!(normalize_etag("W/\"abc123\""), "abc123");
        assert_eq!(normalize_etag("abc"), "abc");
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(sha256_etag(&"A".repeat(64)), Some("a".repeat(64)));
        assert_eq!(sha256_etag(&"a".repeat(40)), None);
        assert_eq!(percent_decode("a%20b%2Fc%zz%4"), "a b/c%zz%4");
    }

    #[test]
    fn redirect_locations_are_resolved() {
        let base = "https://huggingface.co/org/name/resolve/main/unet/x.safetensors";
        assert_eq!(
            join_url(base, "https://cdn.example/abc?x=1"),
            "https://cdn.example/abc?x=1"
        );
        assert_eq!(
            join_url(base, "/new/name/resolve/main/unet/x.safetensors"),
            "https://huggingface.co/new/name/resolve/main/unet/x.safetensors"
        );
        assert_eq!(join_url(base, "//cdn.example/a"), "https://cdn.example/a");
        assert_eq!(
            join_url(base, "y.safetensors"),
            "https://huggingface.co/org/name/resolve/main/unet/y.safetensors"
        );
    }

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let waits: Vec<u64> = (1..=7).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert!(is_transient_status(503) && is_transient_status(429));
        assert!(!is_transient_status(404) && !is_transient_status(401));
    }
}
