//! The client address requests without an identity are limited by: the peer, unless the peer
//! is a trusted proxy, in which case `X-Forwarded-For` is read from the right, skipping the
//! trusted hops, and the first address llmgate cannot vouch for past them is the client.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for hop in value.rsplit(',') {
            // Garbage ends the walk: what lies left of it cannot be trusted.
            let Some(ip) = parse_hop(hop.trim()) else {
                return client;
            };
            client = ip;
            if !is_trusted(&ip) {
                return ip;
            }
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_net;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&X_FORWARDED_FOR, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_only_counts_from_trusted_peers() {
        let trusted = [parse_net("10.0.0.0/8").unwrap(), parse_net("::1").unwrap()];
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let h = xff(&["1.1.1.1"]);
        assert_eq!(
            client_ip(peer, &h, &trusted),
            peer,
            "untrusted peer: header ignored"
        );
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &xff(&["6.6.6.6, 198.51.100.7, 10.9.9.9"]), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "rightmost untrusted hop; what the client wrote further left is ignored"
        );
        assert_eq!(
            client_ip(proxy, &xff(&["6.6.6.6", "[2001:db8::1]:443"]), &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, &xff(&["nonsense"]), &trusted), proxy);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &xff(&["5.5.5.5"]), &trusted),
            "5.5.5.5".parse::<IpAddr>().unwrap(),
            "IPv4-mapped peers match IPv4 networks"
        );
    }
}
