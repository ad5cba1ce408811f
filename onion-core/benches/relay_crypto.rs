//! Per-cell relay crypto ("tor1": AES-128-CTR + running SHA-1) on 509-byte RELAY cell bodies.
//!
//! - `client_encrypt_hop3`: the client originates a cell for hop 3 of a 3-hop circuit
//!   (digest + 3 AES layers).
//! - `relay_decrypt_forward_passthrough`: a middle relay removes its layer from a cell that is
//!   not for it (AES + `recognized` check).
//! - `relay_decrypt_forward_recognized`: the exit removes its layer from a cell that is for it
//!   (AES + `recognized` check + digest check and commit).
//! - `client_decrypt_from_hop3`: the client peels a backward cell from hop 3 (3 AES layers,
//!   two quick rejections, one digest check).
//!
//! Run briefly with
//! `cargo bench -p onion-core --bench relay_crypto -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use onion_core::crypto::keys::HopKeys;
use onion_core::crypto::relay::{
    ClientCrypt, ClientLayer, CryptError, HopNum, RELAY_BODY_LEN, RelayLayer,
};

/// Keys for hop `i` (arbitrary but fixed).
fn keys(i: u8) -> HopKeys {
    let mut b = [0u8; HopKeys::LEN];
    for (j, x) in b.iter_mut().enumerate() {
        *x = i.wrapping_mul(31).wrapping_add(j as u8);
    }
    HopKeys::from_bytes(&b)
}

/// A 3-hop client circuit and its three relays.
fn circuit() -> Result<(ClientCrypt, Vec<RelayLayer>), CryptError> {
    let mut client = ClientCrypt::new();
    let mut relays = Vec::new();
    for i in 1..=3 {
        let k = keys(i);
        client.add_hop(&k)?;
        relays.push(RelayLayer::new(&k));
    }
    Ok((client, relays))
}

/// A DATA cell body with some payload.
fn data_body() -> [u8; RELAY_BODY_LEN] {
    let mut body = [0x5au8; RELAY_BODY_LEN];
    if let Some(header) = body.first_chunk_mut::<11>() {
        *header = [2, 0, 0, 0, 1, 0, 0, 0, 0, 1, 242];
    }
    body
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_crypto");
    g.throughput(Throughput::Bytes(RELAY_BODY_LEN as u64));
    let Some(hop3) = HopNum::new(3) else {
        return;
    };

    // Client: originate for hop 3.
    let Ok((mut client, _)) = circuit() else {
        eprintln!("circuit setup failed");
        return;
    };
    let mut body = data_body();
    g.bench_function("client_encrypt_hop3", |b| {
        b.iter(|| client.encrypt(black_box(&mut body), hop3))
    });

    // Middle relay: pass-through.
    let mut relay = RelayLayer::new(&keys(2));
    let mut body = data_body();
    g.bench_function("relay_decrypt_forward_passthrough", |b| {
        b.iter(|| relay.decrypt_forward(black_box(&mut body)))
    });

    // Exit: the cell is for it. The client side produces the cells outside the timing.
    let k = keys(3);
    let mut sender = ClientLayer::new(&k);
    let mut exit = RelayLayer::new(&k);
    let mut misses = 0u64;
    g.bench_function("relay_decrypt_forward_recognized", |b| {
        b.iter_batched(
            || {
                let mut body = data_body();
                let _ = sender.originate(&mut body);
                body
            },
            |mut body| {
                let r = exit.decrypt_forward(&mut body);
                if !matches!(r, Ok(Some(_))) {
                    misses += 1;
                }
                r
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(misses, 0, "exit failed to recognize cells");

    // Client: a backward cell from hop 3.
    let Ok((mut client, mut relays)) = circuit() else {
        eprintln!("circuit setup failed");
        return;
    };
    let mut misses = 0u64;
    g.bench_function("client_decrypt_from_hop3", |b| {
        b.iter_batched(
            || {
                let mut body = data_body();
                if let [r1, r2, r3] = relays.as_mut_slice() {
                    let _ = r3.originate_backward(&mut body);
                    let _ = r2.encrypt_backward(&mut body);
                    let _ = r1.encrypt_backward(&mut body);
                }
                body
            },
            |mut body| {
                let r = client.decrypt(&mut body);
                if !matches!(r, Ok((h, _)) if h == hop3) {
                    misses += 1;
                }
                r
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(misses, 0, "client failed to recognize cells from hop 3");
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
