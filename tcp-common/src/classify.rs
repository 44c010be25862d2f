//! TCP flag classification, shared so that the XDP program and user space (and their tests)
//! agree on what each class means.

use crate::Counter;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// The one class a segment with these flags belongs to.
///
/// The illegal shapes are checked first because they overlap the legal ones (a Xmas segment
/// carries FIN; SYN+FIN carries SYN).
#[inline(always)]
pub const fn classify(flags: u8) -> Counter {
    let f = flags & (FIN | SYN | RST | PSH | ACK | URG);
    if flags == 0 {
        Counter::ClassNull
    } else if f & (FIN | PSH | URG) == (FIN | PSH | URG) {
        Counter::ClassXmas
    } else if f & (SYN | FIN) == (SYN | FIN) {
        Counter::ClassSynFin
    } else if f & (SYN | RST) == (SYN | RST) {
        Counter::ClassSynRst
    } else if f & SYN != 0 {
        if f & ACK != 0 {
            Counter::ClassSynAck
        } else {
            Counter::ClassSyn
        }
    } else if f & RST != 0 {
        Counter::ClassRst
    } else if f & FIN != 0 {
        if f & ACK != 0 {
            Counter::ClassFin
        } else {
            Counter::ClassFinNoAck
        }
    } else if f & ACK != 0 {
        Counter::ClassAck
    } else {
        Counter::ClassNoAck
    }
}

/// Whether a class is one of the combinations no conforming TCP sends.
#[inline(always)]
pub const fn is_illegal(class: Counter) -> bool {
    matches!(
        class,
        Counter::ClassNull
            | Counter::ClassXmas
            | Counter::ClassSynFin
            | Counter::ClassSynRst
            | Counter::ClassFinNoAck
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_shapes() {
        assert_eq!(classify(SYN), Counter::ClassSyn);
        assert_eq!(classify(SYN | ECE | CWR), Counter::ClassSyn);
        assert_eq!(classify(SYN | ACK), Counter::ClassSynAck);
        assert_eq!(classify(ACK), Counter::ClassAck);
        assert_eq!(classify(ACK | PSH), Counter::ClassAck);
        assert_eq!(classify(ACK | URG), Counter::ClassAck);
        assert_eq!(classify(FIN | ACK), Counter::ClassFin);
        assert_eq!(classify(FIN | ACK | PSH), Counter::ClassFin);
        assert_eq!(classify(RST), Counter::ClassRst);
        assert_eq!(classify(RST | ACK), Counter::ClassRst);
        assert_eq!(classify(PSH), Counter::ClassNoAck);
    }

    #[test]
    fn illegal_shapes() {
        assert_eq!(classify(0), Counter::ClassNull);
        assert_eq!(classify(FIN | PSH | URG), Counter::ClassXmas);
        assert_eq!(classify(FIN | PSH | URG | ACK | SYN), Counter::ClassXmas);
        assert_eq!(classify(SYN | FIN), Counter::ClassSynFin);
        assert_eq!(classify(SYN | FIN | ACK), Counter::ClassSynFin);
        assert_eq!(classify(SYN | RST), Counter::ClassSynRst);
        assert_eq!(classify(FIN), Counter::ClassFinNoAck);
        for c in [
            Counter::ClassNull,
            Counter::ClassXmas,
            Counter::ClassSynFin,
            Counter::ClassSynRst,
            Counter::ClassFinNoAck,
        ] {
            assert!(is_illegal(c));
        }
        assert!(!is_illegal(Counter::ClassSyn));
    }

    #[test]
    fn every_flag_byte_has_exactly_one_class() {
        for f in 0..=255u8 {
            let c = classify(f);
            assert!(
                c >= Counter::ClassSyn && c <= Counter::ClassXmas,
                "{f:#x} -> {c:?}"
            );
        }
    }
}
