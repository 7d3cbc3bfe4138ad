//! The HTTP side of the remote engine: JSON to and from a server's `/sdapi/v1`, with
//! timeouts, HTTP Basic auth and bounded answers, and errors that say what to do.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// Quick questions (models, options, progress, interrupt) are answered at once by a
/// server that is up; one that takes longer is treated as gone.
const QUICK_ANSWER: Duration = Duration::from_secs(20);
/// A server that does not accept the connection within this is not there.
const CONNECT: Duration = Duration::from_secs(5);
/// A generation's answer: up to `MAX_IMAGES` base64 PNGs of up to 2048² (~12 MB each).
const MAX_GENERATION_ANSWER: u64 = 1 << 30;
/// Everything else, a progress preview included.
const MAX_QUICK_ANSWER: u64 = 64 << 20;

/// Where the server is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEngine {
    /// `http://host:port` (a path prefix is kept, for servers behind a reverse proxy).
    pub url: String,
    /// HTTP Basic credentials, as the server's `--api-auth user:password`.
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Why a server address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerAddressError {
    #[error("give the server's address, e.g. http://192.168.1.20:7860")]
    Empty,
    #[error("{0}: only http:// and https:// addresses can be used")]
    Scheme(String),
    #[error("{0}: no host in the address")]
    NoHost(String),
}

impl RemoteEngine {
    /// A server at `address` (`host:port` reads as `http://host:port`); the user and password
    /// are used when the user is not empty.
    pub fn new(address: &str, user: &str, password: &str) -> Result<Self, ServerAddressError> {
        let address = address.trim();
        if address.is_empty() {
            return Err(ServerAddressError::Empty);
        }
        let url = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let lower = url.to_ascii_lowercase();
        let Some(rest) = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"))
        else {
            return Err(ServerAddressError::Scheme(address.to_string()));
        };
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(ServerAddressError::NoHost(address.to_string()));
        }
        // A1111's clients are given the address with or without the API path.
        let url = url.trim_end_matches('/');
        let url = url.strip_suffix("/sdapi/v1").unwrap_or(url).to_string();
        let user = user.trim();
        Ok(Self {
            url,
            user: (!user.is_empty()).then(|| user.to_string()),
            password: (!user.is_empty()).then(|| password.to_string()),
        })
    }
}

/// What went wrong talking to the server, worded for the window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot reach {url}: {reason} — is `latent-studio serve` running there?")]
    Unreachable { url: String, reason: String },
    #[error("{url}: the server needs --api-auth credentials; enter the user and password it was started with")]
    NeedsPassword { url: String },
    #[error("{url}: the server did not accept the password of user {user}")]
    WrongPassword { url: String, user: String },
    /// The server answered with an error; `detail` is its message.
    #[error("{url} answered {status}: {detail}")]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: not an answer of A1111's API: {problem}")]
    Unreadable { url: String, problem: String },
}

impl RemoteError {
    /// No connection could be made (as opposed to an answer that was an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RemoteError::Unreachable { .. })
    }
}

#[derive(Clone)]
pub struct Client {
    quick: ureq::Agent,
    /// For generations and model switches, which take as long as they take.
    patient: ureq::Agent,
    base: String,
    engine: RemoteEngine,
    authorization: Option<String>,
}

impl Client {
    pub fn new(engine: RemoteEngine) -> Self {
        let agent = |answer: Option<Duration>| {
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                // A server on the LAN or on loopback is reached directly, not via $HTTP_PROXY.
                .proxy(None)
                .user_agent(format!("latent-studio/{}", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(CONNECT))
                .timeout_recv_response(answer)
                .build();
            ureq::Agent::new_with_config(config)
        };
        let authorization = engine.user.as_ref().map(|user| {
            let pair = format!("{user}:{}", engine.password.as_deref().unwrap_or(""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Self {
            quick: agent(Some(QUICK_ANSWER)),
            patient: agent(None),
            base: engine.url.clone(),
            engine,
            authorization,
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub fn get(&self, path: &str) -> Result<Value, RemoteError> {
        let mut request = self.quick.get(format!("{}{path}", self.base));
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        self.answer(request.call(), MAX_QUICK_ANSWER)
    }

    /// A quick POST (interrupt).
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, RemoteError> {
        self.post_with(&self.quick, path, body, MAX_QUICK_ANSWER)
    }

    /// A POST that may take minutes (a generation, a model switch).
    pub fn post_patiently(&self, path: &str, body: &Value) -> Result<Value, RemoteError> {
        self.post_with(&self.patient, path, body, MAX_GENERATION_ANSWER)
    }

    fn post_with(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &Value,
        limit: u64,
    ) -> Result<Value, RemoteError> {
        let mut request = agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        self.answer(request.send(body.to_string()), limit)
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        limit: u64,
    ) -> Result<Value, RemoteError> {
        let mut response = response.map_err(|err| self.transport_error(err))?;
        let status = response.status().as_u16();
        if status == 401 {
            let no_password = self.engine.password.as_deref().is_none_or(str::is_empty);
            return Err(match &self.engine.user {
                Some(user) if !no_password => RemoteError::WrongPassword {
                    url: self.base.clone(),
                    user: user.clone(),
                },
                _ => RemoteError::NeedsPassword {
                    url: self.base.clone(),
                },
            });
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_string()
            .map_err(|err| self.transport_error(err))?;
        let value: Option<Value> = serde_json::from_str(&text).ok();
        if !(200..300).contains(&status) {
            let detail = value
                .as_ref()
                .and_then(error_detail)
                .unwrap_or_else(|| text.chars().take(300).collect());
            return Err(RemoteError::Refused {
                url: self.base.clone(),
                status,
                detail,
            });
        }
        value.ok_or_else(|| RemoteError::Unreadable {
            url: self.base.clone(),
            problem: format!("not JSON: {}", text.chars().take(120).collect::<String>()),
        })
    }

    fn transport_error(&self, err: ureq::Error) -> RemoteError {
        let reason = match &err {
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    "the connection was closed".to_string()
                }
                _ => io.to_string(),
            },
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
                format!("no connection within {} s", CONNECT.as_secs())
            }
            ureq::Error::Timeout(_) => {
                format!("no answer within {} s", QUICK_ANSWER.as_secs())
            }
            ureq::Error::BodyExceedsLimit(limit) => {
                return RemoteError::Unreadable {
                    url: self.base.clone(),
                    problem: format!("the answer is larger than {limit} bytes"),
                }
            }
            other => other.to_string(),
        };
        RemoteError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }
}

/// The message of an error answer: FastAPI's `detail` (a text, or a list of `{msg}`), or
/// A1111's `error` / `errors`.
fn error_detail(value: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let detail = value.get("detail")?;
    text(detail)
        .or_else(|| {
            let items = detail.as_array()?;
            let messages: Vec<String> = items
                .iter()
                .filter_map(|item| item.get("msg").and_then(text))
                .collect();
            (!messages.is_empty()).then(|| messages.join("; "))
        })
        .or_else(|| value.get("errors").and_then(text))
        .map(|detail| match value.get("errors").and_then(text) {
            Some(errors) if errors != detail => format!("{detail} ({errors})"),
            _ => detail,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_clients_give_them() {
        let url = |text: &str| RemoteEngine::new(text, "", "").map(|e| e.url);
        assert_eq!(url("localhost:7860").unwrap(), "http://localhost:7860");
        assert_eq!(
            url(" http://10.0.0.2:7860/sdapi/v1/ ").unwrap(),
            "http://10.0.0.2:7860"
        );
        assert_eq!(
            url("https://gpu.example.com/sd").unwrap(),
            "https://gpu.example.com/sd"
        );
        assert_eq!(url(""), Err(ServerAddressError::Empty));
        assert!(matches!(url("ftp://x"), Err(ServerAddressError::Scheme(_))));
        assert!(matches!(
            url("http:///x"),
            Err(ServerAddressError::NoHost(_))
        ));
        let engine = RemoteEngine::new("h:1", " ann ", "pw").unwrap();
        assert_eq!(engine.user.as_deref(), Some("ann"));
        assert_eq!(engine.password.as_deref(), Some("pw"));
        assert_eq!(RemoteEngine::new("h:1", "", "pw").unwrap().password, None);
    }

    #[test]
    fn error_details_are_read_from_either_shape() {
        let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        assert_eq!(
            error_detail(&json(r#"{"detail": "steps 0: from 1 to 1000"}"#)).unwrap(),
            "steps 0: from 1 to 1000"
        );
        assert_eq!(
            error_detail(&json(r#"{"detail": [{"msg": "a"}, {"msg": "b"}]}"#)).unwrap(),
            "a; b"
        );
        assert_eq!(error_detail(&json("{}")), None);
    }
}
