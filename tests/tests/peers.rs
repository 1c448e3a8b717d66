//! Real peers over loopback QUIC: libraries, operations, cancellation and
//! hostile requests. Each peer is a full runtime with its own data folder.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use lanspread_core::{GameCatalog, GameId, GameVersion, OperationGuard};
use lanspread_net::api;
use lanspread_net::client::{ChunkAsk, ClientError, PeerClient, read_exact};
use lanspread_net::endpoint::{MAX_REQUESTS_PER_CONNECTION, TlsIdentity, open_endpoint};
use lanspread_net::proto::{
    self, ByteRange, ErrorCode, MAX_RESPONSE_FRAME_BYTES, RESET_CANCELLED, RESET_STALLED, Request,
    Response,
};
use lanspread_tests::{GamesFolder, TestPeer};

const BIG_FILE_BYTES: usize = 12 * 1024 * 1024;

fn catalog() -> GameCatalog {
    GameCatalog::embedded().unwrap()
}

fn game(id: &str) -> GameId {
    GameId::parse(id).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A bare client endpoint, as a hostile or a plain peer would have.
async fn connect(addr: SocketAddr) -> PeerClient {
    let endpoint = open_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &TlsIdentity::generate().unwrap(),
    )
    .unwrap();
    PeerClient::connect(&endpoint, addr).await.unwrap()
}

/// A seeder of ut2004 with one big file, waiting until it announces it.
fn big_seeder(catalog: &GameCatalog) -> (GamesFolder, TestPeer) {
    let folder = GamesFolder::new();
    folder
        .add_payload(
            "ut2004",
            &[("big.bin", BIG_FILE_BYTES), ("small.txt", 1000)],
            9,
        )
        .write_catalog_version("ut2004", catalog);
    let peer = TestPeer::start(Some(folder.path()), catalog, &[]);
    assert!(
        peer.handle
            .wait_until(Duration::from_secs(10), |s| s.local_games.len() == 1),
        "the seeder never announced its game"
    );
    (folder, peer)
}

/// A plain chunk request (not part of a swarm).
fn ask<'a>(
    game: &'a GameId,
    version: &'a GameVersion,
    path: &'a str,
    offset: u64,
    len: u64,
) -> ChunkAsk<'a> {
    ChunkAsk {
        game,
        version,
        ranges: vec![ByteRange {
            path: path.to_owned(),
            offset,
            len,
        }],
        swarm: false,
    }
}

#[test]
fn two_peers_see_each_others_shareable_games_only() {
    let catalog = catalog();
    let five = GamesFolder::five_states(&catalog);
    let other = GamesFolder::new();
    other
        .add_payload("aoe2", &[("aoe2.zip", 4000)], 11)
        .write_catalog_version("aoe2", &catalog);
    let a = TestPeer::start(Some(five.path()), &catalog, &[]);
    let b = TestPeer::start(Some(other.path()), &catalog, &[a.addr()]);
    let a_addr = a.addr();
    let b_addr = b.addr();
    // B found A by address; A learns B's address the same way.
    assert!(b.waits_to_see(a_addr, &["q3a", "ut2004"], Duration::from_secs(10)));
    a.handle
        .ask_blocking(api::Request::AddPeer {
            target: b_addr.to_string(),
        })
        .unwrap();
    assert!(a.waits_to_see(b_addr, &["aoe2"], Duration::from_secs(10)));
    // Neither the outdated cs16 nor the incomplete aoe2 of A is announced.
    let state = b.handle.state();
    let seen_a = state.peers.values().find(|p| p.addr == a_addr).unwrap();
    assert!(
        seen_a
            .games
            .iter()
            .all(|g| g.id.as_str() != "cs16" && g.id.as_str() != "aoe2")
    );
    assert!(seen_a.same_catalog);
    let ut = seen_a
        .games
        .iter()
        .find(|g| g.id.as_str() == "ut2004")
        .unwrap();
    assert_eq!(ut.total_bytes, 305_000);

    // A's library changes: a new game appears, and B sees it promptly.
    five.add_payload("bf2", &[("bf2.zip", 3000)], 12)
        .write_catalog_version("bf2", &catalog);
    a.handle.send(api::Request::Rescan).unwrap();
    let changed = Instant::now();
    assert!(b.waits_to_see(a_addr, &["bf2", "q3a", "ut2004"], Duration::from_secs(3)));
    eprintln!("library change seen after {:?}", changed.elapsed());

    // A stops: it drops off B's list.
    drop(a);
    assert!(
        b.handle
            .wait_until(Duration::from_secs(5), |s| s.peers.is_empty())
    );
}

/// A with the five-states folder, B knowing A's address and seeing its
/// q3a and ut2004; then an operation on A's ut2004, which B sees hidden.
struct UnderOperation {
    a: TestPeer,
    b: TestPeer,
    operation: OperationGuard,
    /// A's games folder, deleted when dropped.
    _five: GamesFolder,
}

fn ut2004_under_an_operation() -> UnderOperation {
    let catalog = catalog();
    let five = GamesFolder::five_states(&catalog);
    let a = TestPeer::start(Some(five.path()), &catalog, &[]);
    let b = TestPeer::start(None, &catalog, &[a.addr()]);
    assert!(b.waits_to_see(a.addr(), &["q3a", "ut2004"], Duration::from_secs(10)));

    let transfers = a.handle.transfers().clone();
    let operation = runtime()
        .block_on(transfers.begin_operation(&game("ut2004")))
        .unwrap();
    let started = Instant::now();
    assert!(b.waits_to_see(a.addr(), &["q3a"], Duration::from_secs(3)));
    eprintln!("hidden from the peer after {:?}", started.elapsed());
    UnderOperation {
        a,
        b,
        operation,
        _five: five,
    }
}

#[test]
fn a_game_under_an_operation_disappears_from_peers_and_comes_back() {
    let peers = ut2004_under_an_operation();
    drop(peers.operation);
    let (a, b) = (&peers.a, &peers.b);
    assert!(b.waits_to_see(a.addr(), &["q3a", "ut2004"], Duration::from_secs(3)));
}

/// A scan that runs while an operation holds a game leaves the game out
/// (its files may be half rewritten); when the operation ends, the game is
/// scanned again and announced at once, not at the next timed rescan (10 s).
#[test]
fn a_game_a_scan_skipped_under_an_operation_comes_back_when_it_ends() {
    let peers = ut2004_under_an_operation();
    let (a, b) = (&peers.a, &peers.b);
    // A rescan while the operation runs skips ut2004. Nothing tells the
    // outside when it is done; a scan of this folder takes milliseconds.
    a.handle.send(api::Request::Rescan).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(peers.operation);
    let ended = Instant::now();
    assert!(b.waits_to_see(a.addr(), &["q3a", "ut2004"], Duration::from_secs(3)));
    eprintln!(
        "announced again {:?} after the operation ended",
        ended.elapsed()
    );
}

#[test]
fn an_operation_cancels_a_live_transfer_within_a_second_and_waits_for_zero() {
    let catalog = catalog();
    let (_folder, seeder) = big_seeder(&catalog);
    let ut = game("ut2004");
    let version = catalog.expected_version(&ut).unwrap().clone();
    let transfers = seeder.handle.transfers().clone();
    let rt = runtime();
    rt.block_on(async {
        let client = connect(seeder.addr()).await;
        let mut recv = client
            .open_chunk(&ask(&ut, &version, "big.bin", 0, BIG_FILE_BYTES as u64))
            .await
            .unwrap();
        let mut first = vec![0u8; 64 * 1024];
        read_exact(&mut recv, &mut first).await.unwrap();
        // The receiver now stops reading. Give the server time to fill the
        // flow-control window, so it is blocked in a send, not a disk read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(transfers.snapshot().outbound_count(&ut), 1);

        let started = Instant::now();
        let operation =
            tokio::time::timeout(Duration::from_secs(1), transfers.begin_operation(&ut))
                .await
                .expect("the operation proceeds within a second")
                .unwrap();
        let waited = started.elapsed();
        assert_eq!(transfers.snapshot().outbound_count(&ut), 0);
        eprintln!("operation proceeded {waited:?} after it started");

        // The receiver learns why: a reset with the cancellation code.
        let mut rest = vec![0u8; BIG_FILE_BYTES - first.len()];
        match read_exact(&mut recv, &mut rest).await {
            Err(ClientError::Reset(code)) => assert_eq!(code, u64::from(RESET_CANCELLED)),
            other => panic!("expected a reset, got {other:?}"),
        }
        // While the operation runs, new requests are refused as busy.
        let err = client
            .chunk(&ask(&ut, &version, "small.txt", 0, 10), &AtomicU64::new(0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Busy));
        drop(operation);
        let bytes = client
            .chunk(&ask(&ut, &version, "small.txt", 0, 10), &AtomicU64::new(0))
            .await
            .unwrap();
        assert_eq!(bytes.len(), 10);
    });
}

#[test]
fn a_receiver_that_stops_reading_does_not_hold_the_transfer_forever() {
    let catalog = catalog();
    let (_folder, seeder) = big_seeder(&catalog);
    let ut = game("ut2004");
    let version = catalog.expected_version(&ut).unwrap().clone();
    let transfers = seeder.handle.transfers().clone();
    let rt = runtime();
    rt.block_on(async {
        let client = connect(seeder.addr()).await;
        let mut recv = client
            .open_chunk(&ask(&ut, &version, "big.bin", 0, BIG_FILE_BYTES as u64))
            .await
            .unwrap();
        let mut first = vec![0u8; 1024];
        read_exact(&mut recv, &mut first).await.unwrap();
        assert_eq!(transfers.snapshot().outbound_count(&ut), 1);
        let stalled_at = Instant::now();
        let mut updates = transfers.subscribe();
        tokio::time::timeout(
            lanspread_net::serve::STALL_TIMEOUT + Duration::from_secs(5),
            updates.wait_for(|s| s.outbound_count(&ut) == 0),
        )
        .await
        .expect("the stalled transfer is given up")
        .unwrap();
        eprintln!("stalled transfer ended after {:?}", stalled_at.elapsed());
        let mut rest = vec![0u8; BIG_FILE_BYTES - first.len()];
        match read_exact(&mut recv, &mut rest).await {
            Err(ClientError::Reset(code)) => assert_eq!(code, u64::from(RESET_STALLED)),
            other => panic!("expected a reset, got {other:?}"),
        }
    });
}

/// Sends raw bytes as a request and reads the first response frame.
async fn raw(client: &PeerClient, bytes: &[u8]) -> Response {
    let (mut send, mut recv) = client.connection().open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    proto::read_frame(&mut recv, MAX_RESPONSE_FRAME_BYTES)
        .await
        .unwrap()
}

async fn framed(request: &Request) -> Vec<u8> {
    let mut bytes = Vec::new();
    proto::write_frame(&mut bytes, request).await.unwrap();
    bytes
}

fn code_of(response: &Response) -> ErrorCode {
    match response {
        Response::Error(error) => error.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn hostile_requests_get_typed_errors_and_the_server_keeps_serving() {
    let catalog = catalog();
    let (folder, seeder) = big_seeder(&catalog);
    let ut = game("ut2004");
    let version = catalog.expected_version(&ut).unwrap().clone();
    // A secret beside the games folder that no request may reach.
    std::fs::write(folder.path().join("secret.txt"), b"top secret").unwrap();
    let rt = runtime();
    rt.block_on(async {
        let hostile = connect(seeder.addr()).await;
        let range = |path: &str, offset: u64| ByteRange {
            path: path.to_owned(),
            offset,
            len: 5,
        };
        let ranges = |ranges: Vec<ByteRange>| Request::Chunk {
            game: ut.clone(),
            version: version.clone(),
            ranges,
            swarm: false,
        };
        let chunk = |path: &str, version: &GameVersion| Request::Chunk {
            game: ut.clone(),
            version: version.clone(),
            ranges: vec![range(path, 0)],
            swarm: false,
        };
        let cases = [
            (chunk("../secret.txt", &version), ErrorCode::BadPath),
            (chunk("../../etc/passwd", &version), ErrorCode::BadPath),
            (chunk("/etc/passwd", &version), ErrorCode::BadPath),
            (chunk("C:/Windows/win.ini", &version), ErrorCode::BadPath),
            (chunk("version.ini", &version), ErrorCode::NotInManifest),
            (chunk("not-there.bin", &version), ErrorCode::NotInManifest),
            (
                chunk("small.txt", &GameVersion::parse("19990101").unwrap()),
                ErrorCode::WrongVersion,
            ),
            (ranges(vec![range("small.txt", 999)]), ErrorCode::BadRequest),
            // A piece is checked whole: one bad range refuses it all.
            (
                ranges(vec![range("small.txt", 0), range("../secret.txt", 0)]),
                ErrorCode::BadPath,
            ),
            (ranges(Vec::new()), ErrorCode::BadRequest),
            (
                ranges(vec![
                    range("small.txt", 0);
                    proto::MAX_CHUNK_REQUEST_RANGES + 1
                ]),
                ErrorCode::BadRequest,
            ),
            (
                Request::Manifest {
                    game: game("not-in-catalog"),
                    version: version.clone(),
                },
                ErrorCode::UnknownGame,
            ),
            (
                Request::Manifest {
                    game: game("cs16"),
                    version: catalog.expected_version(&game("cs16")).unwrap().clone(),
                },
                ErrorCode::WrongVersion,
            ),
        ];
        for (request, expected) in cases {
            let response = raw(&hostile, &framed(&request).await).await;
            assert_eq!(code_of(&response), expected, "{request:?}");
        }
        // An oversized frame is refused from its length prefix alone.
        let mut oversized = (proto::MAX_REQUEST_FRAME_BYTES + 1).to_le_bytes().to_vec();
        oversized.extend_from_slice(&[0u8; 64]);
        assert_eq!(
            code_of(&raw(&hostile, &oversized).await),
            ErrorCode::FrameTooLarge
        );
        // Garbage that is not a request.
        assert_eq!(
            code_of(&raw(&hostile, &[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).await),
            ErrorCode::BadRequest
        );

        // Too many requests at once: hold long-polls open, then one more.
        let revision = hostile.library(None).await.unwrap().revision;
        let mut held = Vec::new();
        for _ in 0..MAX_REQUESTS_PER_CONNECTION {
            let (mut send, recv) = hostile.connection().open_bi().await.unwrap();
            let poll = framed(&Request::Library {
                newer_than: Some(revision),
            })
            .await;
            send.write_all(&poll).await.unwrap();
            let _ = send.finish();
            held.push((send, recv));
        }
        // Give the server a moment to take them all in.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let over = raw(
            &hostile,
            &framed(&Request::Library { newer_than: None }).await,
        )
        .await;
        assert_eq!(code_of(&over), ErrorCode::TooManyStreams);
        drop(held);

        // Nothing was written anywhere, and the server still serves others.
        assert_eq!(
            std::fs::read(folder.path().join("secret.txt")).unwrap(),
            b"top secret"
        );
        let honest = connect(seeder.addr()).await;
        let manifest = honest.manifest(&ut, &version).await.unwrap();
        let entry = manifest
            .files
            .iter()
            .find(|f| f.path.as_str() == "small.txt")
            .unwrap();
        let bytes = honest
            .chunk(
                &ask(&ut, &version, "small.txt", 0, entry.len_bytes),
                &AtomicU64::new(0),
            )
            .await
            .unwrap()
            .to_vec();
        assert_eq!(lanspread_core::Blake3Hash::of(&bytes), entry.chunks[0].hash);
        let on_disk = std::fs::read(folder.game_dir("ut2004").join("small.txt")).unwrap();
        assert_eq!(bytes, on_disk);
    });
}

#[test]
fn state_changes_wake_the_gui_and_upload_counts_are_published() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let catalog = catalog();
    let (_folder, seeder) = big_seeder(&catalog);
    let ut = game("ut2004");
    let version = catalog.expected_version(&ut).unwrap().clone();

    // A GUI-like peer: its repaint hook runs when its state changes.
    let repaints = Arc::new(AtomicUsize::new(0));
    let hook = {
        let repaints = repaints.clone();
        Arc::new(move || {
            repaints.fetch_add(1, Ordering::SeqCst);
        })
    };
    let mut config = lanspread_net::PeerConfig::loopback(catalog.clone());
    config.manual_peers = vec![seeder.addr().to_string()];
    let gui = lanspread_net::PeerHandle::start(config, Some(hook)).unwrap();
    assert!(gui.wait_until(Duration::from_secs(10), |s| s.peers.len() == 1));
    // The hook runs on the runtime's own task, right after the change.
    let asked = Instant::now();
    while repaints.load(Ordering::SeqCst) == 0 {
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "no repaint was requested"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // An upload shows up in the seeder's published state and as an event.
    let mut events = seeder.handle.subscribe_events();
    let mut state = seeder.handle.watch_state();
    let rt = runtime();
    rt.block_on(async {
        let client = connect(seeder.addr()).await;
        let mut recv = client
            .open_chunk(&ask(&ut, &version, "big.bin", 0, BIG_FILE_BYTES as u64))
            .await
            .unwrap();
        let mut first = vec![0u8; 1024];
        read_exact(&mut recv, &mut first).await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(3),
            state.wait_for(|s| s.transfers.outbound_count(&ut) == 1),
        )
        .await
        .unwrap()
        .unwrap();
        let seen_event = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                if let Ok(lanspread_net::Event::Transfers(snapshot)) = events.recv().await
                    && snapshot.outbound_count(&ut) == 1
                {
                    break;
                }
            }
        })
        .await;
        assert!(seen_event.is_ok(), "no upload-count event");
        drop(recv);
        drop(client);
    });
}

/// The "same catalog" flag follows `catalog load` on either side, without a
/// reconnect: the new catalog moves the library revision, so a peer waiting
/// on the long-poll hears of it at once.
#[test]
fn same_catalog_follows_a_catalog_loaded_while_running() {
    let embedded = catalog();
    let a = TestPeer::start(None, &embedded, &[]);
    let b = TestPeer::start(None, &embedded, &[a.addr()]);
    let same = |who: &TestPeer, addr: SocketAddr, expect: bool| {
        who.handle.wait_until(Duration::from_secs(3), |s| {
            s.peers
                .values()
                .any(|p| p.addr == addr && p.same_catalog == expect)
        })
    };
    a.handle
        .ask_blocking(api::Request::AddPeer {
            target: b.addr().to_string(),
        })
        .unwrap();
    // Each past the other's first library answer, agreeing.
    for (who, other) in [(&a, b.addr()), (&b, a.addr())] {
        assert!(who.handle.wait_until(Duration::from_secs(3), |s| {
            s.peers
                .values()
                .any(|p| p.addr == other && p.library_revision.is_some() && p.same_catalog)
        }));
    }

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("party.ron");
    let text = lanspread_core::catalog::EMBEDDED_CATALOG_RON.replacen(
        &format!(
            "version: \"{}\"",
            embedded.get_str("ut2004").unwrap().version
        ),
        "version: \"20991231\"",
        1,
    );
    std::fs::write(&other, text).unwrap();
    let load = |who: &TestPeer| {
        who.ask(api::Request::LoadCatalog {
            path: other.clone(),
        })
        .blocking_wait()
        .unwrap()
    };

    load(&a);
    let loaded = Instant::now();
    assert!(same(&b, a.addr(), false), "B sees A's new catalog");
    println!(
        "B saw A's new catalog {:?} after the load",
        loaded.elapsed()
    );
    assert!(
        same(&a, b.addr(), false),
        "A judges B against its new catalog"
    );

    load(&b);
    assert!(
        same(&b, a.addr(), true),
        "both on the new catalog agree again"
    );
    assert!(same(&a, b.addr(), true));
}

/// Three PCs fetch from one seeder whose uploads are capped, asking for 1,
/// 2 and 8 chunks at once: each gets about a third of the cap, and none
/// waits a second for its next byte.
#[test]
fn a_capped_seeder_shares_its_uplink_per_pc_not_per_request() {
    const CAP_BYTES_PER_SEC: u64 = 3_000_000;
    const CHUNK: u64 = 1024 * 1024;
    let catalog = catalog();
    let folder = GamesFolder::new();
    folder
        .add_payload("ut2004", &[("big.bin", BIG_FILE_BYTES)], 9)
        .write_catalog_version("ut2004", &catalog);
    let seeder = TestPeer::start_with(Some(folder.path()), &catalog, &[], |config| {
        config.upload_limit_bytes_per_sec = Some(CAP_BYTES_PER_SEC);
    });
    assert!(
        seeder
            .handle
            .wait_until(Duration::from_secs(10), |s| s.local_games.len() == 1)
    );
    let ut = game("ut2004");
    let version = catalog.expected_version(&ut).unwrap().clone();
    let at_once = [1usize, 2, 8];
    let received: std::sync::Arc<Vec<AtomicU64>> =
        std::sync::Arc::new(at_once.iter().map(|_| AtomicU64::new(0)).collect());
    let read = || -> Vec<u64> {
        received
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    };
    let rt = runtime();
    let (shares, longest_waits) = rt.block_on(async {
        let mut lanes = tokio::task::JoinSet::new();
        for (pc, &n) in at_once.iter().enumerate() {
            let client = connect(seeder.addr()).await;
            for lane in 0..n {
                let (client, received) = (client.clone(), received.clone());
                let (ut, version) = (ut.clone(), version.clone());
                lanes.spawn(async move {
                    let chunks = BIG_FILE_BYTES as u64 / CHUNK;
                    for k in (lane as u64..).step_by(n) {
                        let chunk = ask(&ut, &version, "big.bin", (k % chunks) * CHUNK, CHUNK);
                        client.chunk(&chunk, &received[pc]).await.unwrap();
                    }
                });
            }
        }
        // Past the first second (bursts and handshakes), for four seconds.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = read();
        let mut last = start.clone();
        let mut last_change = vec![Instant::now(); at_once.len()];
        let mut longest = vec![Duration::ZERO; at_once.len()];
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = read();
            for pc in 0..at_once.len() {
                if now[pc] != last[pc] {
                    last_change[pc] = Instant::now();
                }
                longest[pc] = longest[pc].max(last_change[pc].elapsed());
            }
            last = now;
        }
        lanes.abort_all();
        let got: Vec<u64> = last.iter().zip(&start).map(|(a, b)| a - b).collect();
        (got, longest)
    });
    let total: u64 = shares.iter().sum();
    eprintln!("bytes per PC: {shares:?} of {total}; longest waits {longest_waits:?}");
    assert!(
        total as f64 > 0.8 * 4.0 * CAP_BYTES_PER_SEC as f64,
        "the cap was not used: {total} bytes in 4 s"
    );
    for (pc, (&got, wait)) in shares.iter().zip(&longest_waits).enumerate() {
        let share = got as f64 / total as f64;
        assert!(
            (0.2..=0.47).contains(&share),
            "the PC asking {} chunks at once got {:.0} % of the uplink",
            at_once[pc],
            share * 100.0
        );
        assert!(
            *wait < Duration::from_secs(1),
            "the PC asking {} chunks at once waited {wait:?} for a byte",
            at_once[pc]
        );
    }
}

/// A PC that answers hellos with another PC's id (public in its mDNS name)
/// is refused: the id is the certificate's, which it cannot prove. The
/// honest PC is listed, at its own address, whichever came first.
#[test]
fn a_peer_claiming_another_pcs_id_is_refused() {
    let catalog = catalog();
    let honest = TestPeer::start(None, &catalog, &[]);
    let honest_id = honest.handle.peer_id();
    let mut claimed = [0u8; 16];
    for (i, byte) in claimed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&honest_id[2 * i..2 * i + 2], 16).unwrap();
    }
    // The impostor: a bare endpoint with its own certificate that answers
    // every hello with the honest PC's id.
    let rt = runtime();
    let impostor = rt.block_on(async {
        open_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &TlsIdentity::generate().unwrap(),
        )
        .unwrap()
    });
    let impostor_addr = impostor.local_addr().unwrap();
    let hellos = std::sync::Arc::new(AtomicU64::new(0));
    let answered = hellos.clone();
    rt.spawn(async move {
        while let Some(incoming) = impostor.accept().await {
            let answered = answered.clone();
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                // Other requests (the library long-poll) are held unanswered,
                // so a session that took the lie would stay.
                let mut held = Vec::new();
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let request = proto::read_frame::<Request>(&mut recv, 1 << 16).await;
                    if !matches!(request, Ok(Request::Hello(_))) {
                        held.push((send, recv));
                        continue;
                    }
                    if let Ok(Request::Hello(theirs)) = request {
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let lie = lanspread_net::proto::PeerHello {
                            peer_id: claimed,
                            ..theirs
                        };
                        let _ = proto::write_frame(&mut send, &Response::Hello(lie)).await;
                        let _ = send.finish();
                    }
                }
            });
        }
    });
    // The impostor is asked first; the honest PC is added once it lied.
    let watcher = TestPeer::start(None, &catalog, &[impostor_addr]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while hellos.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the impostor was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    watcher
        .handle
        .ask_blocking(api::Request::AddPeer {
            target: honest.addr().to_string(),
        })
        .unwrap();
    assert!(
        watcher.handle.wait_until(Duration::from_secs(10), |s| s
            .peers
            .get(&honest_id)
            .is_some_and(|p| p.addr == honest.addr())),
        "the honest PC is listed at its own address"
    );
    assert!(
        !watcher
            .handle
            .state()
            .peers
            .values()
            .any(|p| p.addr == impostor_addr),
        "the impostor is not listed"
    );
    // The other way round: a client claiming the honest id in its hello
    // is refused by a server.
    rt.block_on(async {
        let client = connect(honest.addr()).await;
        let hello = lanspread_net::proto::PeerHello {
            peer_id: claimed,
            name: "impostor".into(),
            protocol_version: lanspread_net::proto::PROTOCOL_VERSION,
            catalog_fingerprint: [0; 32],
            listen_port: 1,
        };
        match client.hello(&hello).await {
            Err(ClientError::Refused(error)) => assert_eq!(error.code, ErrorCode::BadRequest),
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
}

/// One host opening 300 connections (from 300 ports) takes at most its
/// share of a seeder's slots: a PC at another address still gets its
/// manifest.
#[test]
fn three_hundred_connections_from_one_host_leave_room_for_the_others() {
    let catalog = catalog();
    let (_folder, seeder) = big_seeder(&catalog);
    let ut = game("ut2004");
    let version = catalog.expected_version(&ut).unwrap().clone();
    let rt = runtime();
    rt.block_on(async {
        // The flood comes from 127.0.0.2: another host, as far as counts go.
        let identity = TlsIdentity::generate().unwrap();
        let mut flood = Vec::new();
        let mut accepted = 0;
        for _ in 0..300 {
            let endpoint = open_endpoint("127.0.0.2:0".parse().unwrap(), &identity).unwrap();
            if let Ok(client) = PeerClient::connect(&endpoint, seeder.addr()).await {
                accepted += 1;
                flood.push((endpoint, client));
            }
        }
        assert!(
            accepted <= lanspread_net::endpoint::MAX_CONNECTIONS_PER_HOST,
            "{accepted} connections from one host"
        );
        let honest = connect(seeder.addr()).await;
        let manifest = honest.manifest(&ut, &version).await.unwrap();
        assert_eq!(manifest.files.len(), 2);
        drop(flood);
    });
}

/// A first scan reports how far hashing is (game, files, bytes, speed)
/// while it runs, and nothing once the game is shared.
#[test]
fn a_first_scan_reports_its_hashing_progress() {
    let catalog = catalog();
    let folder = GamesFolder::new();
    folder
        .add_payload(
            "ut2004",
            &[
                ("a.pak", 200 << 20),
                ("b.pak", 200 << 20),
                ("c.pak", 200 << 20),
            ],
            9,
        )
        .write_catalog_version("ut2004", &catalog);
    let peer = TestPeer::start(Some(folder.path()), &catalog, &[]);
    let mut seen = Vec::new();
    assert!(
        peer.handle.wait_until(Duration::from_secs(60), |s| {
            if let Some(h) = &s.hashing {
                seen.push(h.clone());
            }
            !s.local_games.is_empty() && s.hashing.is_none()
        }),
        "the game was never shared"
    );
    assert!(!seen.is_empty(), "no progress was reported");
    for progress in &seen {
        assert_eq!(progress.game, "ut2004");
        assert_eq!(progress.files_total, 3);
        assert_eq!(progress.bytes_total, 600 << 20);
        assert!(progress.bytes_done <= progress.bytes_total);
    }
    eprintln!(
        "{} reports, last {:?}",
        seen.len(),
        seen.last()
            .map(|p| (p.files_done, p.bytes_done, p.bytes_per_sec as u64))
    );
}

/// A Remove that starts while the library scan hashes the game (its first
/// scan): the scan is told to stop and the Remove waits until it let go of
/// the files (Windows refuses to move a folder with files open in it),
/// then succeeds; the hashing does not run on over the removed game.
#[test]
fn a_remove_during_the_first_hash_stops_the_scan_and_waits_for_it() {
    let catalog = catalog();
    let folder = GamesFolder::new();
    folder
        .add_payload("ut2004", &[("small.txt", 1000)], 9)
        .write_catalog_version("ut2004", &catalog);
    // A big file that costs nothing to write: seconds of hashing.
    let big = std::fs::File::create(folder.path().join("ut2004/big.bin")).unwrap();
    big.set_len(6 << 30).unwrap();
    drop(big);
    let peer = TestPeer::start(Some(folder.path()), &catalog, &[]);
    let ut = GameId::parse("ut2004").unwrap();
    assert!(
        peer.handle.wait_until(Duration::from_secs(30), |s| {
            s.hashing.as_ref().is_some_and(|h| h.bytes_done > 0)
                && s.transfers.scanning.contains(&ut)
        }),
        "the scan never got going"
    );
    let asked = Instant::now();
    let answer = peer
        .ask(api::Request::Remove {
            game: ut.clone(),
            keep_local: false,
        })
        .blocking_wait();
    let took = asked.elapsed();
    assert!(answer.is_ok(), "{answer:?}");
    assert!(!folder.path().join("ut2004").exists());
    let state = peer.handle.state();
    eprintln!(
        "removed {took:?} after it was asked, mid-hash; hashing now {:?}",
        state.hashing
    );
    assert!(
        took < Duration::from_secs(2),
        "the remove waited for the whole hash: {took:?}"
    );
    assert!(!state.transfers.scanning.contains(&ut));
    assert!(
        peer.handle
            .wait_until(Duration::from_secs(1), |s| s.hashing.is_none()),
        "the hashing ran on over the removed game"
    );
}

/// Two PCs that reach each other: each sees the other connect in (the one
/// typed follows back), so neither suspects a firewall.
#[test]
fn peers_that_reach_each_other_know_it() {
    let catalog = catalog();
    let a = TestPeer::start(None, &catalog, &[]);
    let b = TestPeer::start(None, &catalog, &[a.addr()]);
    for (name, peer) in [("a", &a), ("b", &b)] {
        assert!(
            peer.handle
                .wait_until(Duration::from_secs(5), |s| s.reached_by_peers),
            "{name} never saw a peer connect in"
        );
        assert!(!peer.handle.state().maybe_firewalled);
    }
}

/// A client that opens more streams than a connection may use (33, one
/// over the limit) and never reads an answer cannot hold the serving PC:
/// its shutdown returns within 15 s.
#[test]
fn a_client_that_never_reads_does_not_hold_up_shutdown() {
    let catalog = catalog();
    let (_folder, seeder) = big_seeder(&catalog);
    let ut = GameId::parse("ut2004").unwrap();
    let version = catalog.get_str("ut2004").unwrap().version.clone();
    let rt = runtime();
    let (_client, _streams) = rt.block_on(async {
        let client = connect(seeder.addr()).await;
        let mut streams = Vec::new();
        for _ in 0..=lanspread_net::endpoint::MAX_REQUESTS_PER_CONNECTION {
            let Ok((mut send, recv)) = client.connection().open_bi().await else {
                break;
            };
            let request = Request::Chunk {
                game: ut.clone(),
                version: version.clone(),
                ranges: vec![ByteRange {
                    path: "big.bin".into(),
                    offset: 0,
                    len: BIG_FILE_BYTES as u64,
                }],
                swarm: false,
            };
            proto::write_frame(&mut send, &request).await.unwrap();
            let _ = send.finish();
            // Kept open, never read.
            streams.push((send, recv));
        }
        assert_eq!(
            streams.len(),
            lanspread_net::endpoint::MAX_REQUESTS_PER_CONNECTION + 1
        );
        (client, streams)
    });
    // The seeder is now blocked on full streams.
    std::thread::sleep(Duration::from_secs(1));
    let stopping = Instant::now();
    drop(seeder);
    let took = stopping.elapsed();
    eprintln!("shutdown with 33 unread streams took {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}
