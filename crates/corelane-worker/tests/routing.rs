//! A worker's `Context::send_partitioned` routes by whatever partitioner the pool was built with,
//! to the worker the pool itself would pick.

use std::sync::{Arc, Mutex};

use corelane_partition::{
    ConsistentHashPartitioner, FnPartitioner, JumpPartitioner, RangePartitioner, Resize,
    StableHashPartitioner,
};
use corelane_worker::Dispatch;
use corelane_worker::{BoxError, Context, Pool, Reply, SendError, Worker};

/// Where each routed key landed: (worker index, key).
type Landed<K> = Arc<Mutex<Vec<(usize, K)>>>;

enum Msg<K> {
    /// Route `K` onwards from inside a handler, and answer what the context said.
    Forward(K, Reply<Result<(), String>>),
    /// A routed key, recorded by the worker that got it.
    Arrived(K),
    /// Route `K` by a key of another type than the pool's; answer whether that was unroutable.
    ForwardOther(K, Reply<bool>),
}

struct Router<K> {
    landed: Landed<K>,
}

impl<K: std::hash::Hash + Clone + Send + 'static> Worker for Router<K> {
    type Message = Msg<K>;
    type State = ();
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
    fn handle(&mut self, _: &mut (), msg: Msg<K>, ctx: &mut Context<'_, Self>) {
        match msg {
            Msg::Forward(key, reply) => {
                let sent = ctx.send_partitioned(&key, Msg::Arrived(key.clone()));
                reply.send(sent.map_err(|e| e.to_string()));
            }
            Msg::Arrived(key) => self.landed.lock().unwrap().push((ctx.index(), key)),
            Msg::ForwardOther(key, reply) => {
                let other = ctx.send_partitioned("a string key", Msg::Arrived(key));
                reply.send(matches!(other, Err(SendError::Unroutable(_))));
            }
        }
    }
}

/// Forwards every key through worker 0's context, then checks each landed where `expect` says.
fn routes<K, P>(
    pool: Pool<Router<K>, P>,
    landed: &Landed<K>,
    keys: &[K],
    expect: impl Fn(&K) -> usize,
) where
    K: std::hash::Hash + Clone + Send + Ord + std::fmt::Debug + 'static,
    P: Resize + Send + Sync + 'static,
{
    for key in keys {
        let answer = pool.ask_to(0, |r| Msg::Forward(key.clone(), r)).unwrap();
        assert_eq!(answer, Ok(()), "{key:?}");
    }
    pool.flush().unwrap();
    let mut got = landed.lock().unwrap().clone();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let mut want: Vec<(usize, K)> = keys.iter().map(|k| (expect(k), k.clone())).collect();
    want.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got, want);
    pool.shutdown().unwrap();
}

fn spawn<K, P>(
    builder: corelane_worker::PoolBuilder<Router<K>, P>,
) -> (Pool<Router<K>, P>, Landed<K>)
where
    K: std::hash::Hash + Clone + Send + 'static,
    P: Resize + Send + Sync + 'static,
{
    let landed: Landed<K> = Arc::default();
    let l = landed.clone();
    let pool = builder
        .spawn(move |_| Router { landed: l.clone() })
        .unwrap();
    (pool, landed)
}

#[test]
fn a_range_partitioner_routes_from_a_context() {
    let range = RangePartitioner::new(vec![10u64, 20]).unwrap(); // [..10) [10..20) [20..)
    let (pool, landed) = spawn(Pool::builder().workers(3).partitioner_for::<u64, _>(range));
    routes(pool, &landed, &[3u64, 10, 15, 25, 99], |&k| match k {
        ..10 => 0,
        10..20 => 1,
        _ => 2,
    });
}

#[test]
fn a_function_partitioner_routes_from_a_context() {
    let by_hundreds = FnPartitioner::new(2, |k: &u64| (*k / 100) as usize).unwrap();
    let (pool, landed) = spawn(
        Pool::builder()
            .workers(2)
            .partitioner_for::<u64, _>(by_hundreds),
    );
    routes(pool, &landed, &[1u64, 99, 100, 250, 301], |&k| {
        (k / 100) as usize % 2
    });
}

#[test]
fn a_stable_hash_partitioner_routes_from_a_context() {
    let stable = StableHashPartitioner::with_partitions(2).unwrap();
    let expect = stable;
    let (pool, landed) = spawn(
        Pool::builder()
            .workers(2)
            .partitioner_for::<String, _>(stable),
    );
    let keys: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    routes(pool, &landed, &keys, |k| {
        corelane_partition::Partitioner::<String>::partition(&expect, k)
    });
}

#[test]
fn hash_partitioners_route_from_a_context_as_the_pool_does() {
    let keys: Vec<String> = (0..40).map(|i| format!("order-{i}")).collect();
    let (pool, landed) = spawn(
        Pool::builder()
            .workers(3)
            .partitioner(JumpPartitioner::with_partitions(3).unwrap()),
    );
    let owners: Vec<usize> = keys.iter().map(|k| pool.worker_for(k)).collect();
    routes(pool, &landed, &keys, |k| {
        owners[keys.iter().position(|x| x == k).unwrap()]
    });

    let (pool, landed) = spawn(
        Pool::builder()
            .workers(2)
            .partitioner(ConsistentHashPartitioner::new(2).unwrap()),
    );
    let owners: Vec<usize> = (0u64..40).map(|k| pool.worker_for(&k)).collect();
    routes(pool, &landed, &(0u64..40).collect::<Vec<_>>(), |&k| {
        owners[k as usize]
    });
}

#[test]
fn a_key_of_another_type_than_the_partitioners_is_unroutable() {
    let range = RangePartitioner::new(vec![10u64]).unwrap();
    let (pool, _landed) = spawn(Pool::builder().workers(2).partitioner_for::<u64, _>(range));
    assert!(pool.ask_to(0, |r| Msg::ForwardOther(5u64, r)).unwrap());
    pool.shutdown().unwrap();
}
