//! The verilated send path emits the golden frames byte for byte.

mod common;

use common::Model;
use specmirror_abi::golden::{from_hex, CASES};
use specmirror_abi::ring::Mode;
use specmirror_verilated::{Port, VerilatedSender};

#[test]
fn verilated_sender_emits_the_golden_frames() {
    for c in CASES {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../host/abi/golden")
            .join(c.file_name());
        let golden = from_hex(&std::fs::read_to_string(&path).unwrap());
        let mut m = VerilatedSender::new();
        let words: Vec<u64> = c
            .payload()
            .chunks(8)
            .map(|ch| {
                let mut w = [0u8; 8];
                w[..ch.len()].copy_from_slice(ch);
                u64::from_le_bytes(w)
            })
            .collect();
        m.set(Port::DescValid, 1);
        common::set_descriptor(&mut m, c);
        m.set(Port::TxReady, 1);
        m.set(Port::Granted, 1);
        let (mut out, mut next, mut frames) = (Vec::new(), 0usize, 0);
        let want = if c.mode == Mode::Implicit { 1 } else { 2 };
        for _ in 0..10_000 {
            m.set(Port::DataValid, (next < words.len()) as u64);
            m.set(Port::DataIn, words.get(next).copied().unwrap_or(0));
            Model::settle(&mut m);
            let took_desc = m.get(Port::DescReady) == 1;
            if m.get(Port::DataReady) == 1 && m.get(Port::DataValid) == 1 {
                next += 1;
            }
            if m.get(Port::TxValid) == 1 {
                out.extend_from_slice(&m.get(Port::TxData).to_le_bytes());
                frames += m.get(Port::TxLast) as usize;
            }
            m.tick();
            if took_desc {
                m.set(Port::DescValid, 0);
            }
            if frames == want {
                break;
            }
        }
        assert_eq!(out, golden, "{}", c.name);
    }
}
