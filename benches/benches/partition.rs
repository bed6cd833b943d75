//! Partitioner balance, movement and lookup cost, ours beside `hash % n` and the `hashring` crate
//! used directly (100 vnodes). Run: `cargo bench -p corelane-benches --bench partition`.
//! It first prints the balance/movement table (1M keys), then criterion times lookups.
#![allow(missing_docs)]

use std::hash::Hash;
use std::hint::black_box;
use std::time::Duration;

use corelane::partition::*;
use criterion::{BenchmarkId, Criterion, Throughput};

const KEYS: u64 = 1_000_000;
const SIZES: [usize; 3] = [8, 64, 1024];

#[derive(Hash, Clone, Copy, PartialEq, Debug)]
struct VNode {
    id: usize,
    replica: u32,
}

/// `hashring` used directly, as a user of the crate would, with 100 vnodes per member.
struct RawRing(hashring::HashRing<VNode>);
impl RawRing {
    fn new(n: usize) -> Self {
        let mut r = hashring::HashRing::new();
        r.batch_add(
            (0..n)
                .flat_map(|id| (0..100).map(move |replica| VNode { id, replica }))
                .collect(),
        );
        Self(r)
    }
    fn add(&mut self, id: usize) {
        self.0
            .batch_add((0..100).map(|replica| VNode { id, replica }).collect());
    }
}
impl Partitioner<u64> for RawRing {
    fn partition(&self, key: &u64) -> usize {
        self.0.get(key).map_or(0, |v| v.id)
    }
    fn partitions(&self) -> usize {
        usize::MAX
    }
}

/// `ahash(key) % n`, the common baseline.
struct Modulo(ahash::RandomState, usize);
impl Modulo {
    fn new(n: usize) -> Self {
        Self(ahash::RandomState::with_seeds(1, 2, 3, 4), n)
    }
}
impl<K: Hash + ?Sized> Partitioner<K> for Modulo {
    fn partition(&self, key: &K) -> usize {
        (self.0.hash_one(key) % self.1 as u64) as usize
    }
    fn partitions(&self) -> usize {
        self.1
    }
}

/// One scheme at size n and after growing to n + 1.
struct Case {
    name: &'static str,
    before: Box<dyn Partitioner<u64>>,
    after: Box<dyn Partitioner<u64>>,
    new_member: usize,
}

fn cases(n: usize) -> Vec<Case> {
    let grow_c = {
        let mut c = ConsistentHashPartitioner::new(n).unwrap();
        let id = c.add();
        (c, id)
    };
    let grow_ring = {
        let mut r = RingPartitioner::new(n, 100).unwrap();
        let id = r.add();
        (r, id)
    };
    let grow_raw = {
        let mut r = RawRing::new(n);
        r.add(n);
        r
    };
    let mut v = vec![
        Case {
            name: "consistent (rendezvous table, default)",
            before: Box::new(ConsistentHashPartitioner::new(n).unwrap()),
            after: Box::new(grow_c.0),
            new_member: grow_c.1,
        },
        Case {
            name: "jump",
            before: Box::new(JumpPartitioner::with_partitions(n).unwrap()),
            after: Box::new(JumpPartitioner::with_partitions(n + 1).unwrap()),
            new_member: n,
        },
        Case {
            name: "ring (ours on hashring, 100 vnodes)",
            before: Box::new(RingPartitioner::new(n, 100).unwrap()),
            after: Box::new(grow_ring.0),
            new_member: grow_ring.1,
        },
        Case {
            name: "hashring crate direct, 100 vnodes",
            before: Box::new(RawRing::new(n)),
            after: Box::new(grow_raw),
            new_member: n,
        },
        Case {
            name: "hash (ahash, multiply-shift)",
            before: Box::new(HashPartitioner::with_partitions(n).unwrap()),
            after: Box::new(HashPartitioner::with_partitions(n + 1).unwrap()),
            new_member: n,
        },
        Case {
            name: "hash % n",
            before: Box::new(Modulo::new(n)),
            after: Box::new(Modulo::new(n + 1)),
            new_member: n,
        },
    ];
    if n <= 64 {
        let mut r = RendezvousPartitioner::new(n).unwrap();
        let id = r.add();
        v.insert(
            2,
            Case {
                name: "rendezvous",
                before: Box::new(RendezvousPartitioner::new(n).unwrap()),
                after: Box::new(r),
                new_member: id,
            },
        );
    }
    v
}

fn balance_table() {
    println!("| n | partitioner | max/mean | CV | noise floor CV | moved on n->n+1 (x ideal) | all moved to new |");
    println!("|---|---|---|---|---|---|---|");
    for n in SIZES {
        let floor = (((n - 1) as f64) / KEYS as f64).sqrt();
        for case in cases(n) {
            let mut load = vec![0u64; n];
            let mut moved = 0u64;
            let mut all_to_new = true;
            for k in 0..KEYS {
                let (a, b) = (case.before.partition(&k), case.after.partition(&k));
                load[a] += 1;
                if a != b {
                    moved += 1;
                    all_to_new &= b == case.new_member;
                }
            }
            let mean = KEYS as f64 / n as f64;
            let max = *load.iter().max().unwrap() as f64;
            let var = load.iter().map(|&l| (l as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let ideal = KEYS as f64 / (n + 1) as f64;
            println!(
                "| {n} | {} | {:.3} | {:.4} | {floor:.4} | {:.2} | {} |",
                case.name,
                max / mean,
                var.sqrt() / mean,
                moved as f64 / ideal,
                if all_to_new { "yes" } else { "no" }
            );
        }
    }
}

fn lookups(c: &mut Criterion) {
    let keys: Vec<u64> = (0..1024u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let mut g = c.benchmark_group("partition_lookup");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.sample_size(20)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(300));
    for n in SIZES {
        for case in cases(n) {
            g.bench_with_input(BenchmarkId::new(case.name, n), &case.before, |b, p| {
                b.iter(|| {
                    keys.iter()
                        .map(|k| p.partition(black_box(k)))
                        .sum::<usize>()
                })
            });
        }
        let rr = RoundRobinPartitioner::with_partitions(n).unwrap();
        g.bench_with_input(BenchmarkId::new("round robin", n), &rr, |b, p| {
            b.iter(|| {
                keys.iter()
                    .map(|k| Partitioner::<u64>::partition(p, black_box(k)))
                    .sum::<usize>()
            })
        });
        let key_hash = ahash::RandomState::with_seeds(1, 2, 3, 4);
        g.bench_with_input(
            BenchmarkId::new("key hash alone (ahash)", n),
            &key_hash,
            |b, h| {
                b.iter(|| {
                    keys.iter()
                        .map(|k| h.hash_one(black_box(k)) as usize)
                        .fold(0usize, usize::wrapping_add)
                })
            },
        );
    }
    g.finish();
}

fn main() {
    balance_table();
    let mut c = Criterion::default().configure_from_args();
    lookups(&mut c);
    c.final_summary();
}
