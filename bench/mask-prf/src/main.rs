//! Nanoseconds per value of each keyed function on 1,000,000 meter ids (`MTR-0000000`), the
//! shape of the benchmark's masked column.

use std::hash::Hasher;
use std::hint::black_box;
use std::time::Instant;

use aes::Aes256;
use cmac::Cmac;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use siphasher::sip128::{Hasher128, SipHasher24};

fn time(name: &str, values: &[String], mut f: impl FnMut(&[u8]) -> u8) {
    let start = Instant::now();
    let mut acc = 0u8;
    for v in values {
        acc ^= f(v.as_bytes());
    }
    black_box(acc);
    let ns = start.elapsed().as_nanos() as f64 / values.len() as f64;
    println!("{name:<28} {ns:>6.1} ns per value");
}

fn main() {
    let values: Vec<String> = (0..1_000_000).map(|i| format!("MTR-{i:07}")).collect();
    let key = [7u8; 32];
    let hmac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
    let cmac = <Cmac<Aes256> as KeyInit>::new_from_slice(&key).expect("32-byte key");
    let sip_key: [u8; 16] = key[..16].try_into().expect("16 bytes");
    time("HMAC-SHA256 (mask v1)", &values, |v| {
        let mut m = hmac.clone();
        m.update(v);
        m.finalize().into_bytes()[0]
    });
    time("keyed BLAKE3", &values, |v| {
        blake3::keyed_hash(&key, v).as_bytes()[0]
    });
    time("AES-256-CMAC", &values, |v| {
        let mut m = cmac.clone();
        m.update(v);
        m.finalize().into_bytes()[0]
    });
    time("SipHash-2-4-128 (mask v2)", &values, |v| {
        let mut s = SipHasher24::new_with_key(&sip_key);
        s.write(v);
        s.finish128().h1 as u8
    });
}
