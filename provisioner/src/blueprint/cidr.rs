//! IPv4 CIDR arithmetic for the network checks.

use std::net::Ipv4Addr;

/// `a.b.c.d/n` as (address, prefix), with host bits zero.
pub fn parse_cidr(text: &str) -> Option<(u32, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    let addr = u32::from(addr);
    (addr & !mask(prefix) == 0).then_some((addr, prefix))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

pub(super) fn contains(outer: (u32, u8), inner: (u32, u8)) -> bool {
    inner.1 >= outer.1 && inner.0 & mask(outer.1) == outer.0
}

pub(super) fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    contains(a, b) || contains(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_arithmetic() {
        assert_eq!(parse_cidr("10.0.0.0/16"), Some((0x0a00_0000, 16)));
        assert_eq!(parse_cidr("10.0.0.1/16"), None);
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        let vpc = (0x0a00_0000, 16);
        assert!(contains(vpc, (0x0a00_0100, 24)));
        assert!(!contains(vpc, (0x0a01_0000, 24)));
        assert!(overlaps((0x0a00_0000, 24), (0x0a00_0080, 25)));
    }
}
