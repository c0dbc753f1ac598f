//! Which IP addresses an outbound call may never reach on its own.
//!
//! The tables are written out by hand rather than taken from `std`'s
//! `is_global` (still unstable) so that every range is visible, named in
//! refusals, and tested at its boundaries. IPv6 forms that carry an IPv4
//! address (mapped, NAT64, 6to4) are judged by the address they carry,
//! because that is where the packets end up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One forbidden IPv4 range: network, prefix length, and the name used in
/// refusals.
struct V4Range(u32, u8, &'static str);

/// One forbidden IPv6 range, likewise.
struct V6Range(u128, u8, &'static str);

// Ordered most specific first where ranges nest, so a refusal names the
// narrowest range (broadcast rather than "reserved", the metadata address
// rather than "link-local").
const V4_FORBIDDEN: &[V4Range] = &[
    V4Range(0x0000_0000, 32, "0.0.0.0/32 (unspecified)"),
    V4Range(0x0000_0000, 8, "0.0.0.0/8 (this network)"),
    V4Range(0x0a00_0000, 8, "10.0.0.0/8 (private, RFC 1918)"),
    V4Range(0x6440_0000, 10, "100.64.0.0/10 (carrier-grade NAT)"),
    V4Range(0x7f00_0000, 8, "127.0.0.0/8 (loopback)"),
    V4Range(0xa9fe_a9fe, 32, "169.254.169.254 (cloud metadata)"),
    V4Range(0xa9fe_0000, 16, "169.254.0.0/16 (link-local)"),
    V4Range(0xac10_0000, 12, "172.16.0.0/12 (private, RFC 1918)"),
    V4Range(0xc000_0000, 24, "192.0.0.0/24 (IETF protocol assignments)"),
    V4Range(0xc000_0200, 24, "192.0.2.0/24 (documentation)"),
    V4Range(0xc058_6300, 24, "192.88.99.0/24 (6to4 relay anycast)"),
    V4Range(0xc0a8_0000, 16, "192.168.0.0/16 (private, RFC 1918)"),
    V4Range(0xc612_0000, 15, "198.18.0.0/15 (benchmarking)"),
    V4Range(0xc633_6400, 24, "198.51.100.0/24 (documentation)"),
    V4Range(0xcb00_7100, 24, "203.0.113.0/24 (documentation)"),
    V4Range(0xe000_0000, 4, "224.0.0.0/4 (multicast)"),
    V4Range(0xffff_ffff, 32, "255.255.255.255 (broadcast)"),
    V4Range(0xf000_0000, 4, "240.0.0.0/4 (reserved)"),
];

const V6_FORBIDDEN: &[V6Range] = &[
    V6Range(0, 128, "::/128 (unspecified)"),
    V6Range(1, 128, "::1/128 (loopback)"),
    V6Range(0x0100 << 112, 64, "100::/64 (discard-only)"),
    V6Range(
        0x0064_ff9b_0001 << 80,
        48,
        "64:ff9b:1::/48 (local-use NAT64)",
    ),
    V6Range(0x2001_0000 << 96, 32, "2001::/32 (Teredo)"),
    V6Range(0x2001_0002 << 96, 48, "2001:2::/48 (benchmarking)"),
    V6Range(0x2001_0db8 << 96, 32, "2001:db8::/32 (documentation)"),
    V6Range(0x2001 << 112, 23, "2001::/23 (IETF protocol assignments)"),
    V6Range(0x3fff << 112, 20, "3fff::/20 (documentation)"),
    V6Range(0x5f00 << 112, 16, "5f00::/16 (segment routing)"),
    V6Range(0xfc00 << 112, 7, "fc00::/7 (unique local, RFC 4193)"),
    V6Range(0xfe80 << 112, 10, "fe80::/10 (link-local)"),
    V6Range(0xfec0 << 112, 10, "fec0::/10 (site-local, deprecated)"),
    V6Range(0xff00 << 112, 8, "ff00::/8 (multicast)"),
];

/// The prefixes whose IPv6 addresses carry an IPv4 address in their last
/// 32 bits and deliver to it.
const V4_MAPPED: (u128, u8) = (0xffff << 32, 96);
const NAT64: (u128, u8) = (0x0064_ff9b << 96, 96);
/// `::a.b.c.d` (RFC 4291 §2.5.5.1, deprecated): nothing legitimate uses it,
/// so every such address is refused, named by its IPv4 range when that is
/// forbidden too.
const V4_COMPATIBLE: (u128, u8) = (0, 96);
/// 6to4 (RFC 3056) carries the IPv4 address in bits 16..48.
const SIX_TO_FOUR: (u128, u8) = (0x2002 << 112, 16);
/// Everything IANA hands out as global unicast lies in 2000::/3; an
/// address outside it (and outside the carrying forms above) is reserved.
const GLOBAL_UNICAST: (u128, u8) = (0x2000 << 112, 3);

fn in_v4(addr: u32, network: u32, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    addr & mask == network & mask
}

fn in_v6(addr: u128, (network, len): (u128, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    addr & mask == network & mask
}

fn v4_forbidden(addr: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(addr);
    V4_FORBIDDEN
        .iter()
        .find(|V4Range(net, len, _)| in_v4(bits, *net, *len))
        .map(|V4Range(_, _, name)| *name)
}

/// The name of the forbidden range `addr` falls in, or `None` when the
/// address is publicly routable and may be connected to.
///
/// Covers RFC 1918 and RFC 4193 private space, loopback, link-local
/// (including the 169.254.169.254 metadata address), unspecified,
/// multicast, broadcast, carrier-grade NAT, documentation and benchmarking
/// ranges, 0.0.0.0/8, and the IPv6 forms that carry an IPv4 address:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::/96`) and 6to4 (`2002::/16`). The deployment's allow-list is
/// applied by the caller, not here.
pub fn forbidden_range(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

fn v6_forbidden(addr: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(addr);
    // The carrying forms first: `::1` and `::` sit inside ::/96, so the
    // exact IPv6 ranges are checked before the IPv4-compatible rule.
    if in_v6(bits, V4_MAPPED) || in_v6(bits, NAT64) {
        // Truncation intended: the last 32 bits are the IPv4 address.
        return v4_forbidden(Ipv4Addr::from(bits as u32));
    }
    if let Some(V6Range(_, _, name)) = V6_FORBIDDEN
        .iter()
        .find(|V6Range(net, len, _)| in_v6(bits, (*net, *len)))
    {
        return Some(name);
    }
    if in_v6(bits, V4_COMPATIBLE) {
        return Some(
            v4_forbidden(Ipv4Addr::from(bits as u32))
                .unwrap_or("::/96 (IPv4-compatible, deprecated)"),
        );
    }
    if in_v6(bits, SIX_TO_FOUR) {
        return v4_forbidden(Ipv4Addr::from((bits >> 80) as u32));
    }
    if !in_v6(bits, GLOBAL_UNICAST) {
        return Some("reserved IPv6 (outside 2000::/3)");
    }
    None
}

/// The IPv4 address an IPv4-mapped IPv6 address stands for: a socket
/// connected to `::ffff:a.b.c.d` talks to `a.b.c.d`, so an allow-listed
/// IPv4 network admits both spellings.
pub(crate) fn unmapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> &'static str {
        let addr: IpAddr = s.parse().unwrap();
        forbidden_range(addr).unwrap_or_else(|| panic!("{s} should be refused"))
    }

    fn allowed(s: &str) {
        let addr: IpAddr = s.parse().unwrap();
        assert_eq!(forbidden_range(addr), None, "{s} should be allowed");
    }

    #[test]
    fn ipv4_ranges_and_their_boundaries() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("0.255.255.255", "this network"),
            ("10.0.0.0", "RFC 1918"),
            ("10.255.255.255", "RFC 1918"),
            ("100.64.0.0", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.255", "loopback"),
            ("169.254.169.254", "metadata"),
            ("169.254.0.1", "link-local"),
            ("169.254.255.255", "link-local"),
            ("172.16.0.0", "RFC 1918"),
            ("172.31.255.255", "RFC 1918"),
            ("192.0.0.8", "IETF"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay"),
            ("192.168.0.0", "RFC 1918"),
            ("192.168.255.255", "RFC 1918"),
            ("198.18.0.0", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.200", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.255", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
        ];
        for (addr, name) in cases {
            let range = refused(addr);
            assert!(range.contains(name), "{addr}: {range} lacks {name}");
        }
        // The first address past each range is public.
        for addr in [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
            "93.184.216.34",
        ] {
            allowed(addr);
        }
    }

    #[test]
    fn ipv6_ranges_and_their_boundaries() {
        let cases = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("100::1", "discard"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("2001::1", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:db8::1", "documentation"),
            ("2001:1ff:ffff::1", "IETF"),
            ("3fff::1", "documentation"),
            ("3fff:fff:ffff::1", "documentation"),
            ("5f00::1", "segment routing"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique local"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("4000::1", "reserved"),
            ("1000::1", "reserved"),
        ];
        for (addr, name) in cases {
            let range = refused(addr);
            assert!(range.contains(name), "{addr}: {range} lacks {name}");
        }
        for addr in [
            "2000::1",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "3ffe:ffff::1",
            "3fff:1000::1",
            "2002:5db8:d822::1",
        ] {
            allowed(addr);
        }
    }

    #[test]
    fn ipv6_forms_carrying_a_forbidden_ipv4_address() {
        let cases = [
            // IPv4-mapped
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::ffff:10.1.2.3", "RFC 1918"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::ffff:255.255.255.255", "broadcast"),
            // IPv4-compatible (deprecated): refused whatever it carries
            ("::127.0.0.1", "loopback"),
            ("::192.168.1.1", "RFC 1918"),
            ("::8.8.8.8", "IPv4-compatible"),
            // NAT64
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "metadata"),
            ("64:ff9b::100.64.0.1", "carrier-grade NAT"),
            // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
            ("2002:7f00:1::", "loopback"),
            ("2002:a9fe:a9fe::1", "metadata"),
            ("2002:c0a8:0101::1", "RFC 1918"),
            ("2002:0a00:0001:ffff::1", "RFC 1918"),
        ];
        for (addr, name) in cases {
            let range = refused(addr);
            assert!(range.contains(name), "{addr}: {range} lacks {name}");
        }
        // The same forms carrying a public address are allowed.
        for addr in ["::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:0808:0808::1"] {
            allowed(addr);
        }
    }

    #[test]
    fn mapped_addresses_unmap_for_the_allow_list() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(unmapped(mapped), "127.0.0.1".parse::<IpAddr>().unwrap());
        let plain: IpAddr = "::1".parse().unwrap();
        assert_eq!(unmapped(plain), plain);
    }
}
