//! The keyed counter on a real 3-server NATS JetStream cluster: nodes killed, stopped, paused
//! and joining mid-stream, checked by per-key sequence numbers (every event applied at least
//! once, in order per key, duplicates counted).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{nats_server_available, Applied, Cluster, Deployment, NodeProc, Scratch};
use corelane_cluster::Event;
use corelane_nats::{Client, Published};

const PARTITIONS: u32 = 8;
const KEYS: usize = 24;

/// A deployment on `cluster` with R3 streams and a 2 s lease.
fn deployment(cluster: &Cluster, logs: &Scratch, prefix: &str) -> Deployment {
    Deployment {
        servers: cluster.urls(),
        prefix: prefix.into(),
        partitions: PARTITIONS,
        replicas: 3,
        lease_ttl: Duration::from_secs(2),
        logs: logs.0.clone(),
        from_offset: true,
        panic_on: None,
        snapshot_every: None,
        stall: None,
    }
}

/// A tokio runtime and a client, once the cluster accepts the deployment (its JetStream
/// needs a few seconds to elect a leader after start).
fn client(d: &Deployment) -> (tokio::runtime::Runtime, Client) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let client = loop {
        match rt.block_on(Client::connect(&d.servers, d.topology())) {
            Ok(client) => break client,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("waiting for JetStream: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("the cluster never accepted the deployment: {e}"),
        }
    };
    (rt, client)
}

/// Publishes `rounds` events of each key (key by key within a round), pausing `pause` after
/// each round and running `during(round)` before it; returns how many events each key had.
fn publish(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    rounds: u64,
    pause: Duration,
    mut during: impl FnMut(u64),
) -> BTreeMap<String, u64> {
    for n in 0..rounds {
        during(n);
        rt.block_on(async {
            for k in 0..KEYS {
                let event = Event {
                    key: format!("key-{k}"),
                    n,
                };
                send_retrying(client, &event).await;
            }
        });
        std::thread::sleep(pause);
    }
    (0..KEYS).map(|k| (format!("key-{k}"), rounds)).collect()
}

/// Sends `event`, retrying through a server restart (the same message id: no duplicate).
async fn send_retrying(client: &Client, event: &Event) -> Published {
    let id = format!("{}-{}", event.key, event.n);
    let started = Instant::now();
    loop {
        match client.send_with_id(event.key.as_bytes(), event, &id).await {
            Ok(published) => return published,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("retrying a publish: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("publishing failed for a minute: {e}"),
        }
    }
}

/// Waits until every sent event is applied somewhere; then checks order and reports.
fn check(nodes: &[&NodeProc], sent: &BTreeMap<String, u64>, limit: Duration) -> Applied {
    let logs: Vec<_> = nodes.iter().map(|n| n.log.as_path()).collect();
    let started = Instant::now();
    loop {
        let applied = Applied::read(&logs);
        let missing = applied.missing(sent);
        if missing.is_empty() {
            assert!(
                applied.order_violations.is_empty(),
                "per-key order broken: {:?}",
                &applied.order_violations[..applied.order_violations.len().min(10)]
            );
            return applied;
        }
        assert!(
            started.elapsed() < limit,
            "{} events never applied, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_node_s_partitions_move_without_loss_or_reordering() {
    if !nats_server_available() {
        return;
    }
    let cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let d = deployment(&cluster, &logs, "kill");
    let (rt, client) = client(&d);
    let a = d.node("a");
    let mut b = d.node("b");
    common::wait_for_full_ownership(&[&a, &b], PARTITIONS, Duration::from_secs(30));
    let mut killed_at = None;
    let sent = publish(&rt, &client, 60, Duration::from_millis(20), |n| {
        if n == 20 {
            b.kill();
            killed_at = Some(Instant::now());
        }
    });
    let killed_at = killed_at.unwrap();
    let moved = common::wait_for_full_ownership(&[&a], PARTITIONS, Duration::from_secs(30));
    let applied = check(&[&a, &b], &sent, Duration::from_secs(60));
    eprintln!(
        "kill: {} events, {} applied, {} applied twice, partitions moved {:?} after the kill",
        KEYS as u64 * 60,
        applied.lines,
        applied.duplicates(),
        moved - killed_at
    );
    // Lease TTL 2 s plus a renewal tick: the move is bounded by the lease, not by ack_wait.
    assert!(
        moved - killed_at < Duration::from_secs(5),
        "{:?}",
        moved - killed_at
    );
}

#[test]
fn a_graceful_stop_hands_over_at_once_and_a_joining_node_takes_its_share() {
    if !nats_server_available() {
        return;
    }
    let cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let mut d = deployment(&cluster, &logs, "handover");
    // A long lease: a handover that waited for it would fail the timing below.
    d.lease_ttl = Duration::from_secs(6);
    // Partitions that move are replayed from their start (as the example runs by default).
    d.from_offset = false;
    let (rt, client) = client(&d);
    let mut a = d.node("a");
    common::wait_for_full_ownership(&[&a], PARTITIONS, Duration::from_secs(30));
    let mut sent = publish(&rt, &client, 20, Duration::from_millis(10), |_| {});
    // A node joins mid-stream: it gets its share (ceil(8 / 2) at most each) from `a`.
    let b = d.node("b");
    let mut round = 20;
    common::wait_for("b to take its share", Duration::from_secs(20), || {
        publish_round(&rt, &client, round);
        round += 1;
        let share = |n: &NodeProc| n.owned().map_or(0, |(_, owned)| owned.len());
        (1..=4).contains(&share(&b)) && share(&a) + share(&b) == PARTITIONS as usize
    });
    // `a` stops gracefully mid-stream: `b` owns everything well within the 6 s lease.
    let stopped = Instant::now();
    a.stop();
    let took_all = common::wait_for_full_ownership(&[&b], PARTITIONS, Duration::from_secs(30));
    let handover = took_all - stopped;
    for _ in 0..10 {
        publish_round(&rt, &client, round);
        round += 1;
    }
    sent.values_mut().for_each(|n| *n = round);
    let applied = check(&[&a, &b], &sent, Duration::from_secs(60));
    eprintln!(
        "handover: {} events, {} applied twice; all partitions on b {handover:?} after a's stop",
        KEYS as u64 * round,
        applied.duplicates()
    );
    assert!(handover < Duration::from_secs(3), "{handover:?}");
}

/// Publishes event `n` of every key.
fn publish_round(rt: &tokio::runtime::Runtime, client: &Client, n: u64) {
    rt.block_on(async {
        for k in 0..KEYS {
            let event = Event {
                key: format!("key-{k}"),
                n,
            };
            send_retrying(client, &event).await;
        }
    });
}

#[test]
fn a_node_paused_past_its_lease_is_fenced_when_it_resumes() {
    if !nats_server_available() {
        return;
    }
    let cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let d = deployment(&cluster, &logs, "zombie");
    let (rt, client) = client(&d);
    let a = d.node("a");
    let b = d.node("b");
    common::wait_for_full_ownership(&[&a, &b], PARTITIONS, Duration::from_secs(30));
    let mut sent = publish(&rt, &client, 10, Duration::from_millis(10), |_| {});
    // `b` stops (SIGSTOP) with its partitions in hand; `a` takes them once the lease expires.
    common::signal(b.pid(), "STOP");
    let paused = Instant::now();
    let mut round = 10;
    common::wait_for("a to take b's partitions", Duration::from_secs(20), || {
        publish_round(&rt, &client, round);
        round += 1;
        a.owned()
            .is_some_and(|(at, owned)| at > paused && owned.len() == PARTITIONS as usize)
    });
    // `b` comes back believing it still owns them: whatever it commits now is refused.
    common::signal(b.pid(), "CONT");
    for _ in 0..20 {
        publish_round(&rt, &client, round);
        round += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    common::wait_for(
        "b to stop its stale partitions",
        Duration::from_secs(20),
        || {
            let lines = b.lines.lock().unwrap();
            lines
                .iter()
                .any(|(at, l)| *at > paused && (l.starts_with("b fenced") || l == "b owns []"))
        },
    );
    sent.values_mut().for_each(|n| *n = round);
    let applied = check(&[&a, &b], &sent, Duration::from_secs(60));
    eprintln!(
        "zombie: {} events, {} applied twice, b fenced: {}",
        KEYS as u64 * round,
        applied.duplicates(),
        b.lines
            .lock()
            .unwrap()
            .iter()
            .any(|(_, l)| l.starts_with("b fenced"))
    );
}

/// Which side's nats-server a test kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The server the nodes (the consumers) are connected to.
    Nodes,
    /// The server the client publishing the events is connected to.
    Producer,
}

/// Nodes connected to one server, the producer to another (each given every server's URL, its
/// own first); kills `side`'s server with SIGKILL mid-stream and restarts it later. Nothing may be lost or reordered; reports how long
/// publishing stalled.
fn kill_a_server(side: Side, prefix: &str) {
    let mut cluster = Cluster::start();
    let logs = Scratch::new("logs");
    // Every server's URL, `server`'s first: connections are tried in the order given.
    let on = |server: usize| {
        let mut urls: Vec<String> = cluster.servers.iter().map(|s| s.url()).collect();
        urls.rotate_left(server);
        Deployment {
            servers: urls.join(","),
            ..deployment(&cluster, &logs, prefix)
        }
    };
    let (nodes, producer) = (on(1), on(0));
    let (rt, client) = client(&producer);
    let a = nodes.node("a");
    let b = nodes.node("b");
    common::wait_for_full_ownership(&[&a, &b], PARTITIONS, Duration::from_secs(30));
    let victim = if side == Side::Nodes { 1 } else { 0 };
    let (mut down, mut round_started, mut stall) = (None, Instant::now(), Duration::ZERO);
    let sent = publish(&rt, &client, 50, Duration::from_millis(20), |n| {
        stall = stall.max(round_started.elapsed());
        round_started = Instant::now();
        if n == 10 {
            cluster.servers[victim].kill();
            down = Some(Instant::now());
        }
        if n == 30 {
            cluster.servers[victim].start();
        }
    });
    let applied = check(&[&a, &b], &sent, Duration::from_secs(90));
    eprintln!(
        "{side:?} server kill: {} events, {} applied twice, longest publish round {stall:?}, \
         all applied {:?} after the kill",
        KEYS as u64 * 50,
        applied.duplicates(),
        down.unwrap().elapsed()
    );
}

#[test]
fn the_nodes_nats_server_killed_and_restarted_loses_nothing() {
    if !nats_server_available() {
        return;
    }
    kill_a_server(Side::Nodes, "consumers");
}

#[test]
fn the_producers_nats_server_killed_and_restarted_loses_nothing() {
    if !nats_server_available() {
        return;
    }
    kill_a_server(Side::Producer, "producer");
}

#[test]
fn a_lease_bucket_electing_its_leader_costs_the_node_nothing() {
    if !nats_server_available() {
        return;
    }
    let mut cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let d = Deployment {
        // Long enough to outlast the bucket's election.
        lease_ttl: Duration::from_secs(15),
        ..deployment(&cluster, &logs, "leases")
    };
    // A client sets the deployment up.
    let (rt, _client) = client(&d);
    // The server leading the leases bucket's stream dies; the node is on another one.
    let leader = rt.block_on(async {
        let first = d.servers.split(',').next().unwrap();
        let js = async_nats::jetstream::new(async_nats::connect(first).await.unwrap());
        let mut stream = js.get_stream("KV_leases_leases").await.unwrap();
        let info = stream.info().await.unwrap();
        info.cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .expect("a leader")
    });
    let victim = cluster
        .servers
        .iter()
        .position(|s| s.name == leader)
        .expect("the leader is one of ours");
    let mut urls: Vec<String> = cluster.servers.iter().map(|s| s.url()).collect();
    urls.rotate_left(victim + 1);
    let on_survivors = Deployment {
        servers: urls.join(","),
        ..d.clone()
    };
    let a = on_survivors.node("a");
    common::wait_for_full_ownership(&[&a], PARTITIONS, Duration::from_secs(30));
    let (owned_since, _) = a.owned().unwrap();
    cluster.servers[victim].kill();
    // Renewals every 5 s fail while the bucket elects a new leader; the lease holds meanwhile.
    std::thread::sleep(Duration::from_secs(12));
    let (last_change, owned) = a.owned().unwrap();
    assert_eq!(owned, (0..PARTITIONS).collect::<Vec<_>>());
    assert_eq!(
        last_change, owned_since,
        "a gave its partitions up and took them again"
    );
}

#[test]
fn a_full_cluster_restart_loses_nothing() {
    if !nats_server_available() {
        return;
    }
    let mut cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let d = deployment(&cluster, &logs, "restart");
    let (rt, client) = client(&d);
    let a = d.node("a");
    let b = d.node("b");
    common::wait_for_full_ownership(&[&a, &b], PARTITIONS, Duration::from_secs(30));
    let mut sent = publish(&rt, &client, 10, Duration::from_millis(10), |_| {});
    // Every server down at once (SIGKILL), then back on the same stores.
    for server in &mut cluster.servers {
        server.kill();
    }
    std::thread::sleep(Duration::from_secs(1));
    for server in &mut cluster.servers {
        server.start();
    }
    for n in 10..30 {
        publish_round(&rt, &client, n);
    }
    sent.values_mut().for_each(|n| *n = 30);
    let applied = check(&[&a, &b], &sent, Duration::from_secs(120));
    eprintln!(
        "cluster restart: {} events, {} applied twice",
        KEYS as u64 * 30,
        applied.duplicates()
    );
}

#[test]
fn an_ask_reads_its_own_write_and_an_undecodable_message_goes_to_the_dead_letters() {
    if !nats_server_available() {
        return;
    }
    let cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let d = deployment(&cluster, &logs, "ask");
    let (rt, client) = client(&d);
    let a = d.node("a");
    common::wait_for_full_ownership(&[&a], PARTITIONS, Duration::from_secs(30));
    rt.block_on(async {
        let first = d.servers.split(',').next().unwrap();
        let nats = async_nats::connect(first).await.unwrap();
        let mut dead = nats.subscribe("ask.dead").await.unwrap();
        let key = "key-1";
        let partition = client.topology().partition_of(key.as_bytes());
        // Garbage in the key's partition: it must not block the events behind it.
        let js = async_nats::jetstream::new(nats.clone());
        js.publish(format!("ask.p.{partition}"), "not postcard".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let mut last = None;
        for n in 0..5 {
            let event = Event { key: key.into(), n };
            last = Some(send_retrying(&client, &event).await);
        }
        let probe = Event {
            key: key.into(),
            n: 0,
        };
        let count: u64 = client
            .ask(key.as_bytes(), &probe, last, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(count, 5, "the ask saw every event sent before it");
        let letter = tokio::time::timeout(Duration::from_secs(10), futures_next(&mut dead))
            .await
            .expect("a dead letter");
        assert_eq!(&letter.payload[..], b"not postcard");
        let headers = letter.headers.expect("dead-letter headers");
        assert_eq!(
            headers.get("Corelane-Partition").map(|v| v.as_str()),
            Some(partition.to_string().as_str())
        );
    });
    drop(a);
    // Once the server has dropped the killed node's subscriptions, nobody owns the partition:
    // the ask says so when its time is up.
    std::thread::sleep(Duration::from_millis(500));
    let rt2 = tokio::runtime::Runtime::new().unwrap();
    let err = rt2
        .block_on(client.ask::<Event, u64>(
            b"key-1",
            &Event {
                key: "key-1".into(),
                n: 0,
            },
            None,
            Duration::from_secs(5),
        ))
        .unwrap_err();
    assert!(
        matches!(err, corelane_nats::NatsError::NoOwner { .. }),
        "{err}"
    );
}

async fn futures_next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    use futures_util::StreamExt;
    sub.next().await.expect("the subscription is open")
}

/// A node snapshotting every 200 ms that applied every event and snapshotted it all, then was
/// killed; `before_takeover` runs before a second node takes over. Nodes without a snapshot to
/// start from resume after the last commit if `from_offset`, else replay. Returns the second
/// node and how many events it applied, once every key's count it answers is complete.
fn take_over_after_snapshots(
    prefix: &str,
    from_offset: bool,
    before_takeover: impl FnOnce(&Deployment),
) -> (NodeProc, usize) {
    let cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let d = Deployment {
        from_offset,
        snapshot_every: Some(Duration::from_millis(200)),
        ..deployment(&cluster, &logs, prefix)
    };
    let (rt, client) = client(&d);
    let mut a = d.node("a");
    common::wait_for_full_ownership(&[&a], PARTITIONS, Duration::from_secs(30));
    let sent = publish(
        &rt,
        &client,
        SNAPSHOT_ROUNDS,
        Duration::from_millis(10),
        |_| {},
    );
    check(&[&a], &sent, Duration::from_secs(60));
    // Several snapshot intervals after the last event: every partition's snapshot covers all.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(a.said("a snapshots"), "node a stored no snapshot");
    a.kill();
    before_takeover(&d);
    let b = d.node("b");
    common::wait_for_full_ownership(&[&b], PARTITIONS, Duration::from_secs(30));
    for k in 0..KEYS {
        let key = format!("key-{k}");
        let probe = Event {
            key: key.clone(),
            n: 0,
        };
        let count: u64 = rt
            .block_on(client.ask(key.as_bytes(), &probe, None, Duration::from_secs(10)))
            .unwrap();
        assert_eq!(
            count, SNAPSHOT_ROUNDS,
            "{key}: the count after the takeover"
        );
    }
    let applied = Applied::read(&[b.log.as_path()]).lines;
    (b, applied)
}

const SNAPSHOT_ROUNDS: u64 = 20;

#[test]
fn a_node_taking_over_starts_from_the_last_snapshot_instead_of_replaying() {
    if !nats_server_available() {
        return;
    }
    // Without the snapshots the new owner would replay every partition from its start.
    let (_b, replayed) = take_over_after_snapshots("snap", false, |_| {});
    eprintln!(
        "snapshot takeover: {} events, {replayed} applied again by the new owner",
        KEYS as u64 * SNAPSHOT_ROUNDS
    );
    assert!(
        replayed < KEYS * SNAPSHOT_ROUNDS as usize / 2,
        "{replayed} events replayed: the snapshots were not used"
    );
}

#[test]
fn a_snapshot_that_cannot_be_read_is_replaced_by_a_replay() {
    if !nats_server_available() {
        return;
    }
    // Resuming after the last commit would leave the counts empty: the unreadable snapshots
    // must make the new owner replay instead.
    let (b, replayed) = take_over_after_snapshots("snapgone", true, |d| {
        // The snapshots' objects vanish; the offsets still name them.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let first = d.servers.split(',').next().unwrap();
            let js = async_nats::jetstream::new(async_nats::connect(first).await.unwrap());
            let mut objects = js
                .get_stream(format!("OBJ_{}_snapshots", d.prefix))
                .await
                .unwrap();
            objects.purge().await.unwrap();
            assert_eq!(objects.info().await.unwrap().state.messages, 0);
        });
    });
    assert!(
        b.said("b snapshot failures"),
        "b did not count the unreadable snapshots"
    );
    assert_eq!(
        replayed,
        KEYS * SNAPSHOT_ROUNDS as usize,
        "every event replayed once"
    );
}

#[test]
fn a_handler_slower_than_the_lease_costs_its_node_nothing() {
    if !nats_server_available() {
        return;
    }
    let cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let d = Deployment {
        // One event's handler takes twice the 2 s lease.
        stall: Some("key-3:5:4000".into()),
        ..deployment(&cluster, &logs, "slow")
    };
    let (rt, client) = client(&d);
    let a = d.node("a");
    let b = d.node("b");
    common::wait_for_full_ownership(&[&a, &b], PARTITIONS, Duration::from_secs(30));
    let before = (a.owned().unwrap().1, b.owned().unwrap().1);
    let started = Instant::now();
    let sent = publish(&rt, &client, 30, Duration::from_millis(20), |_| {});
    let applied = check(&[&a, &b], &sent, Duration::from_secs(60));
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "the handler stalled"
    );
    // Leases are renewed off the workers' threads: no partition moved, none was fenced, and
    // nothing was applied twice.
    assert_eq!((a.owned().unwrap().1, b.owned().unwrap().1), before);
    assert!(!a.said("a fenced") && !b.said("b fenced"));
    assert_eq!(applied.duplicates(), 0);
}

#[test]
fn events_whose_handler_always_panics_go_to_the_dead_letters_and_their_partition_goes_on() {
    if !nats_server_available() {
        return;
    }
    let cluster = Cluster::start();
    let logs = Scratch::new("logs");
    let mut d = deployment(&cluster, &logs, "poison");
    let poison = "key-0";
    d.panic_on = Some(poison.into());
    let (rt, client) = client(&d);
    let a = d.node("a");
    common::wait_for_full_ownership(&[&a], PARTITIONS, Duration::from_secs(30));
    let mut sent = publish(&rt, &client, 10, Duration::from_millis(20), |_| {});
    let rounds = sent.remove(poison).expect("the key was sent");
    // Every other key, its partition's included, is applied in order after the panics.
    let applied = check(&[&a], &sent, Duration::from_secs(60));
    assert!(!applied.per_key.contains_key(poison));
    let letters = rt.block_on(dead_letters(&d, rounds as usize));
    let partition = client
        .topology()
        .partition_of(poison.as_bytes())
        .to_string();
    let mut seen = Vec::new();
    for (headers, payload) in letters {
        assert_eq!(
            headers.get("Corelane-Reason").map(|v| v.as_str()),
            Some("handler panicked")
        );
        assert_eq!(
            headers.get("Corelane-Partition").map(|v| v.as_str()),
            Some(partition.as_str())
        );
        // The stream message as published: the key's bytes, then the event.
        let (key, event): (Vec<u8>, Event) = postcard::from_bytes(&payload).unwrap();
        assert_eq!((&key[..], event.key.as_str()), (poison.as_bytes(), poison));
        seen.push(event.n);
    }
    assert_eq!(
        seen,
        (0..rounds).collect::<Vec<_>>(),
        "one letter per event, in order"
    );
}

/// The first `count` messages of the deployment's dead-letter stream (waiting up to 30 s for
/// them), with their headers; panics if the stream holds more.
async fn dead_letters(d: &Deployment, count: usize) -> Vec<(async_nats::HeaderMap, bytes::Bytes)> {
    let first = d.servers.split(',').next().unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(first).await.unwrap());
    let mut stream = js.get_stream(format!("{}_dead", d.prefix)).await.unwrap();
    let started = Instant::now();
    loop {
        let held = stream.info().await.unwrap().state.messages as usize;
        if held >= count {
            assert_eq!(held, count, "no more dead letters than failed events");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{held} of {count} dead letters"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for sequence in 1..=count as u64 {
        let msg = stream.get_raw_message(sequence).await.unwrap();
        out.push((msg.headers, msg.payload));
    }
    out
}
