//! Where a request came from: stored on sessions (and later on audit rows).

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use super::problem::ApiError;
use crate::clock::Clock;
use crate::state::AppState;
use crate::store::audit::EventContext;

const MAX_USER_AGENT_CHARS: usize = 512;

#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn of(req: &HttpRequest) -> Self {
        let trust_proxy = req.app_data::<web::Data<AppState>>().is_some_and(|s| s.config.trust_proxy_headers);
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        // The client writes whatever it likes into X-Forwarded-For; only the
        // entry our own proxy appended last can be trusted.
        let ip = if trust_proxy { forwarded_for(req).or(peer) } else { peer };
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).chars().take(MAX_USER_AGENT_CHARS).collect());
        Self { ip, user_agent }
    }

    /// Who, from where, and when, for an audit event.
    pub fn event(&self, actor_id: uuid::Uuid, at: time::OffsetDateTime) -> EventContext {
        let (ip, user_agent) = (self.ip.clone(), self.user_agent.clone());
        EventContext { actor_id: Some(actor_id), ip, user_agent, at, clock: None }
    }

    /// Like `event`, for ending sessions: timed now, and again once the
    /// sessions' rows are held.
    pub fn ending(&self, actor_id: uuid::Uuid, clock: &Clock) -> EventContext {
        EventContext { clock: Some(clock.clone()), ..self.event(actor_id, clock.now()) }
    }

    /// The key rate limits count per address. An IPv6 client usually holds a
    /// whole /64 and can pick a fresh address for every try: its /64 counts.
    pub fn ip_key(&self) -> String {
        match self.ip.as_deref().map(str::parse::<std::net::IpAddr>) {
            Some(Ok(std::net::IpAddr::V6(v6))) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Some(Ok(ip)) => ip.to_canonical().to_string(),
            _ => self.ip.clone().unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// The right-most address of `X-Forwarded-For` (the one the nearest proxy added).
fn forwarded_for(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).last()?;
    let last = header.rsplit(',').next()?.trim();
    parse_ip(last)
}

fn parse_ip(addr: &str) -> Option<String> {
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Some(ip.to_string());
    }
    addr.parse::<std::net::SocketAddr>().ok().map(|s| s.ip().to_string())
}

impl FromRequest for ClientInfo {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> String {
        ClientInfo { ip: Some(ip.into()), user_agent: None }.ip_key()
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:fffe"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        // The same IPv4 client, however its address reached us.
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(ClientInfo { ip: None, user_agent: None }.ip_key(), "unknown");
    }
}
