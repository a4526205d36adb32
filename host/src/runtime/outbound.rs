//! `allowed_outbound_hosts`: which HTTP(S) destinations an op may reach.
//!
//! Written like Spin's setting of the same name, `scheme://host[:port]`:
//! `https://api.example.com` (port 443), `http://127.0.0.1:8080`,
//! `https://*.example.com` (any subdomain), `http://localhost:*` (any port),
//! `*://example.com:8443` (either scheme). Nothing else is reachable: an op
//! without the setting makes no request at all. Pure data, no wasmtime.

use serde::{Deserialize, Serialize};

/// One allowed destination, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundHost {
    /// `http`, `https`, or `None` for either.
    pub scheme: Option<String>,
    /// The host, lower case (IPv6 in brackets); `*` alone allows any host,
    /// `*.` in front any subdomain of the rest.
    pub host: String,
    /// The port, or `None` for any port.
    pub port: Option<u16>,
}

impl OutboundHost {
    /// Parses `scheme://host[:port]`.
    ///
    /// # Errors
    /// A message saying what is wrong and what to write.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`allowed_outbound_hosts` entry `{}` {why}; write `scheme://host[:port]`, e.g. `https://api.example.com` or `http://127.0.0.1:8080`",
                text.escape_debug()
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => Some(scheme.to_ascii_lowercase()),
            "*" => None,
            _ => return Err(bad("has a scheme other than `http`, `https` or `*`")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.chars().any(char::is_whitespace) {
            return Err(bad(
                "names more than a host and port (no paths, queries or user info)",
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (rest, None),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let wildcard_ok = host == "*"
            || host
                .strip_prefix("*.")
                .is_some_and(|s| !s.is_empty() && !s.contains('*'));
        if host.contains('*') && !wildcard_ok {
            return Err(bad(
                "has a wildcard other than a whole host `*` or a leading `*.`",
            ));
        }
        let port =
            match port {
                Some("*") => None,
                Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    bad("has a port that is not a number from 1 to 65535 or `*`")
                })?),
                None => match scheme.as_deref() {
                    Some("http") => Some(80),
                    Some("https") => Some(443),
                    _ => return Err(bad("has neither a scheme nor a port; add one")),
                },
            };
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && match self.host.strip_prefix("*.") {
                _ if self.host == "*" => true,
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => self.host == host,
            }
    }
}

impl std::fmt::Display for OutboundHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.scheme.as_deref().unwrap_or("*");
        match self.port {
            Some(port) => write!(f, "{scheme}://{}:{port}", self.host),
            None => write!(f, "{scheme}://{}:*", self.host),
        }
    }
}

/// Whether any entry allows the destination.
pub fn allowed(list: &[OutboundHost], scheme: &str, host: &str, port: u16) -> bool {
    list.iter().any(|entry| entry.allows(scheme, host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> OutboundHost {
        OutboundHost::parse(text).unwrap()
    }

    #[test]
    fn exact_hosts_take_the_scheme_default_port() {
        let api = p("https://API.example.com");
        assert!(api.allows("https", "api.example.com", 443));
        assert!(!api.allows("https", "api.example.com", 8443));
        assert!(!api.allows("http", "api.example.com", 443));
        assert!(!api.allows("https", "evil.com", 443));
        assert!(!api.allows("https", "api.example.com.evil.com", 443));
        let local = p("http://127.0.0.1:8080/");
        assert!(local.allows("http", "127.0.0.1", 8080));
        assert!(!local.allows("http", "127.0.0.1", 8081));
        assert_eq!(local.to_string(), "http://127.0.0.1:8080");
    }

    #[test]
    fn wildcards_cover_subdomains_ports_and_schemes() {
        let sub = p("https://*.example.com");
        assert!(sub.allows("https", "a.b.example.com", 443));
        assert!(!sub.allows("https", "example.com", 443));
        assert!(!sub.allows("https", "badexample.com", 443));
        let any_port = p("http://localhost:*");
        assert!(any_port.allows("http", "localhost", 1));
        assert!(!any_port.allows("https", "localhost", 1));
        let either = p("*://[::1]:9000");
        assert!(either.allows("http", "[::1]", 9000));
        assert!(either.allows("https", "[::1]", 9000));
        assert!(p("https://*").allows("https", "anything.org", 443));
    }

    #[test]
    fn malformed_entries_say_what_to_write() {
        for bad in [
            "api.example.com",
            "ftp://x.org",
            "https://x.org/path",
            "https://user@x.org",
            "https://x.org:0",
            "https://x.org:http",
            "https://a*.org",
            "*://x.org",
            "https://",
        ] {
            let err = OutboundHost::parse(bad).unwrap_err();
            assert!(err.contains("scheme://host[:port]"), "{bad}: {err}");
        }
    }
}
