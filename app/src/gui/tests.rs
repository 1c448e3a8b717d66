//! Window tests through egui_kittest: click the button, assert the dialog,
//! the command, the label. The state drawn is the runtime's own state type,
//! built from a real games folder; the demo test runs real peers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use lanspread_core::library::scan_library;
use lanspread_core::{GameCatalog, GameId, Settings, Store};
use lanspread_net::PeerState;
use lanspread_net::Request;
use lanspread_net::discovery::{PeerSource, RemotePeer};
use lanspread_net::download::{DownloadProgress, Phase};
use lanspread_net::proto::AnnouncedGame;
use lanspread_tests::GamesFolder;

use super::log::LogBuffer;
use super::model::{Snapshot, UiCommand};
use super::picker::PresetPicker;
use super::screen::{Screen, Tab};

struct TestWindow {
    screen: Screen,
    snapshot: Snapshot,
    sent: Vec<UiCommand>,
}

fn id(s: &str) -> GameId {
    GameId::parse(s).unwrap()
}

fn announced(catalog: &GameCatalog, game: &str) -> AnnouncedGame {
    AnnouncedGame {
        id: id(game),
        version: catalog.get_str(game).unwrap().version.clone(),
        total_bytes: 305_000,
        manifest_digest: lanspread_core::Blake3Hash::of(game.as_bytes()),
        partial: None,
    }
}

/// A PC with ut2004 downloaded (and shared), q3a installed, cs16 outdated,
/// and two peers that have ut2004 and cs16.
fn party() -> (GamesFolder, Snapshot) {
    let catalog = GameCatalog::embedded().unwrap();
    let folder = GamesFolder::five_states(&catalog);
    let scan = scan_library(folder.path(), &catalog).unwrap();
    let mut peers = BTreeMap::new();
    for (n, name) in ["Alpha", "Bravo"].iter().enumerate() {
        let key = format!("{n:032}");
        peers.insert(
            key.clone(),
            RemotePeer {
                id: key,
                name: (*name).to_owned(),
                // Two PCs: two hosts (one host counts once, whatever
                // number of instances it runs).
                addr: format!("127.0.0.{}:5000", n + 1).parse().unwrap(),
                source: PeerSource::Manual,
                same_catalog: true,
                catalog_fingerprint: [0; 32],
                games: vec![announced(&catalog, "ut2004"), announced(&catalog, "cs16")],
                library_revision: Some(1),
                last_seen: Instant::now(),
            },
        );
    }
    let peer = PeerState {
        peers,
        local_games: vec![announced(&catalog, "q3a"), announced(&catalog, "ut2004")],
        games_dir: Some(folder.path().to_path_buf()),
        library: Some(Arc::new(scan)),
        ..PeerState::default()
    };
    let snapshot = Snapshot {
        catalog: Arc::new(catalog),
        peer,
    };
    (folder, snapshot)
}

fn window(snapshot: Snapshot, picker: PresetPicker) -> Harness<'static, TestWindow> {
    let screen = Screen::new(Settings::default(), LogBuffer::default(), Box::new(picker));
    let state = TestWindow {
        screen,
        snapshot,
        sent: Vec::new(),
    };
    Harness::builder()
        .with_size(egui::vec2(1280.0, 900.0))
        .build_ui_state(
            |ui, w: &mut TestWindow| {
                let commands = w.screen.show(ui, &w.snapshot);
                w.sent.extend(commands);
            },
            state,
        )
}

/// The whole window (the app's own frame function) over a real backend.
fn app_window(
    backend: super::backend::Backend,
    settings: Settings,
) -> Harness<'static, super::LanspreadApp> {
    let screen = Screen::new(
        settings,
        LogBuffer::default(),
        Box::new(PresetPicker::default()),
    );
    let app = super::LanspreadApp {
        screen,
        backend,
        tour: None,
    };
    Harness::builder()
        .with_size(egui::vec2(1280.0, 900.0))
        .build_ui_state(|ui, app: &mut super::LanspreadApp| app.frame(ui), app)
}

fn open_detail(harness: &mut Harness<'static, TestWindow>, search: &str) {
    harness.state_mut().screen.search = search.to_owned();
    harness.run();
    harness.get_by_label("Details").click();
    harness.run();
}

#[test]
fn remove_asks_first_cancel_keeps_the_game_and_confirm_sends_remove() {
    let (_folder, snapshot) = party();
    let mut harness = window(snapshot, PresetPicker::default());
    open_detail(&mut harness, "ut2004");
    assert_eq!(harness.state().screen.selected, Some(id("ut2004")));
    harness.get_by_label("Remove").click();
    harness.run();
    assert!(
        harness
            .query_by_label("Remove Unreal Tournament 2004?")
            .is_some()
    );
    assert!(
        harness
            .query_by_label_contains("will be deleted from this PC")
            .is_some()
    );
    harness.get_by_label("Cancel").click();
    harness.run();
    assert!(
        harness
            .query_by_label("Remove Unreal Tournament 2004?")
            .is_none()
    );
    assert!(
        harness.state().sent.is_empty(),
        "{:?}",
        harness.state().sent
    );

    harness.get_by_label("Remove").click();
    harness.run();
    harness.get_by_label("Yes, remove").click();
    harness.run();
    assert_eq!(
        harness.state().sent,
        vec![UiCommand::Peer(Request::Remove {
            game: id("ut2004"),
            keep_local: false
        })]
    );
    assert!(
        harness
            .query_by_label("Remove Unreal Tournament 2004?")
            .is_none()
    );
}

#[test]
fn the_confirmation_warns_when_peers_are_downloading_from_us() {
    let (_folder, mut snapshot) = party();
    snapshot.peer.transfers.outbound.insert(id("ut2004"), 3);
    let mut harness = window(snapshot, PresetPicker::default());
    open_detail(&mut harness, "ut2004");
    harness.get_by_label("Remove").click();
    harness.run();
    assert!(
        harness
            .query_by_label(
                "3 peers are downloading this game from you; their uploads will be stopped."
            )
            .is_some()
    );
    // Without uploads, no warning.
    harness.state_mut().snapshot.peer.transfers.outbound.clear();
    harness.run();
    assert!(
        harness
            .query_by_label_contains("downloading this game from you")
            .is_none()
    );
}

#[test]
fn cards_follow_the_published_state() {
    let (_folder, snapshot) = party();
    let mut harness = window(snapshot, PresetPicker::default());
    harness.state_mut().screen.search = "ut2004".into();
    harness.run();
    assert!(harness.query_by_label("downloaded").is_some());
    assert!(harness.query_by_label("shared").is_some());
    assert!(harness.query_by_label("ready on 2 PCs").is_some());

    // Uploads start: the sharing indicator counts them.
    harness
        .state_mut()
        .snapshot
        .peer
        .transfers
        .outbound
        .insert(id("ut2004"), 2);
    harness.run();
    assert!(
        harness
            .query_by_label("shared · uploading to 2 PCs now")
            .is_some()
    );

    // An operation starts: hidden from peers.
    harness
        .state_mut()
        .snapshot
        .peer
        .transfers
        .active
        .insert(id("ut2004"));
    harness.run();
    assert!(
        harness
            .query_by_label("not shared while it is being changed")
            .is_some()
    );

    // A download of another game shows its progress.
    harness.state_mut().screen.search = "bzflag".into();
    harness.state_mut().snapshot.peer.downloads.insert(
        "bzflag".into(),
        DownloadProgress {
            game: "bzflag".into(),
            version: "1".into(),
            phase: Phase::Fetching,
            total_bytes: 200,
            done_bytes: 90,
            bytes_per_sec: 1e6,
            eta_secs: Some(250),
            peers: Vec::new(),
            error: None,
            reused_bytes: 0,
        },
    );
    harness.run();
    assert!(harness.query_by_label("downloading 45%").is_some());
    // Time left in words for people.
    assert!(harness.query_by_label_contains("4 min 10 s left").is_some());

    // A first scan hashing a game shows how far it is in the top bar.
    harness.state_mut().snapshot.peer.hashing = Some(lanspread_net::library::HashingProgress {
        game: "q3a".into(),
        files_total: 3,
        files_done: 1,
        bytes_total: 1000 << 20,
        bytes_done: 400 << 20,
        bytes_per_sec: f64::from(900 << 20),
    });
    harness.run();
    assert!(
        harness
            .query_by_label_contains(
                "checking Quake III Arena before sharing it: 40 % (900.0 MiB/s)"
            )
            .is_some()
    );
    harness.state_mut().snapshot.peer.hashing = None;

    // The outdated game offers an update and says why it is not shared.
    harness.state_mut().screen.search = "counter-strike 1.6".into();
    harness.run();
    assert!(harness.query_by_label("update available").is_some());
    assert!(
        harness
            .query_by_label_contains("only the catalog's version is shared")
            .is_some()
    );
}

#[test]
fn search_and_filters_choose_the_cards() {
    let (_folder, snapshot) = party();
    let mut harness = window(snapshot, PresetPicker::default());
    harness.run();
    assert!(
        harness
            .query_by_label("Age of Empires II: The Conquerors")
            .is_some()
    );
    harness.get_by_label("Search").focus();
    harness.get_by_label("Search").type_text("unreal");
    harness.run();
    assert_eq!(harness.state().screen.search, "unreal");
    assert!(harness.query_by_label("Unreal Tournament 2004").is_some());
    assert!(
        harness
            .query_by_label("Age of Empires II: The Conquerors")
            .is_none()
    );
    harness.state_mut().screen.search.clear();
    harness.get_by_label("Installed").click();
    harness.run();
    assert!(harness.query_by_label("Quake III Arena").is_some());
    assert!(harness.query_by_label("Unreal Tournament 2004").is_none());
}

#[test]
fn settings_round_trip_through_the_store() {
    let (folder, snapshot) = party();
    let picked = folder.path().to_path_buf();
    let picker = PresetPicker::answering(vec![picked.clone()]);
    let mut harness = window(snapshot, picker);
    harness.state_mut().screen.tab = Tab::Settings;
    harness.run();
    harness.get_by_label("Browse…").click();
    harness.run();
    harness.get_by_label("Display name").focus();
    harness.get_by_label("Display name").type_text("Fragmaster");
    harness.run();
    harness
        .get_by_label("Find other PCs on the network (mDNS)")
        .click();
    harness.run();
    harness.get_by_label("Save").click();
    harness.run();
    let saved = match harness.state().sent.as_slice() {
        [UiCommand::SaveSettings(settings)] => settings.clone(),
        other => panic!("expected one save, got {other:?}"),
    };
    assert_eq!(saved.games_dir, Some(picked));
    assert_eq!(saved.display_name, "Fragmaster");
    assert!(!saved.discovery_enabled);
    // What the window saves is what the next start reads.
    let data = tempfile::tempdir().unwrap();
    Store::open(data.path())
        .unwrap()
        .save_settings(&saved)
        .unwrap();
    assert_eq!(Store::open(data.path()).unwrap().settings().unwrap(), saved);
}

#[test]
fn first_launch_asks_for_a_games_folder_and_explains_why() {
    let (folder, mut snapshot) = party();
    snapshot.peer.games_dir = None;
    let picker = PresetPicker::answering(vec![folder.path().to_path_buf()]);
    let mut harness = window(snapshot, picker);
    harness.run();
    assert!(
        harness
            .query_by_label_contains("Pick the folder where your games live")
            .is_some()
    );
    harness.get_by_label("Choose a games folder…").click();
    harness.run();
    assert!(matches!(
        harness.state().sent.as_slice(),
        [UiCommand::SaveSettings(s)] if s.games_dir.as_deref() == Some(folder.path())
    ));
}

/// The demo for real: three peers in this process, the window's download
/// command, the card reaching "downloaded", and the bytes checked.
#[test]
fn the_demo_downloads_a_game_from_three_peers() {
    let data = tempfile::tempdir().unwrap();
    let launch = super::backend::Launch {
        data_dir: data.path().to_path_buf(),
        catalog_override: None,
        discovery_off: true,
    };
    let (mut backend, settings) = super::backend::Backend::start(launch, None).unwrap();
    backend.start_demo();
    // The demo's games are made on a worker thread.
    let asked = Instant::now();
    while backend.demo.is_none() {
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "{:?}",
            backend.poll()
        );
        let _ = backend.poll();
        std::thread::sleep(Duration::from_millis(20));
    }
    let demo = backend.demo.as_ref().unwrap();
    assert!(demo.wait_until_shared(Duration::from_secs(60)));
    let mut harness = app_window(backend, settings);
    harness.state_mut().screen.search = "ut2004".into();
    harness.run();
    let started = Instant::now();
    while harness.query_by_label("ready on 3 PCs").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the demo peers never showed up"
        );
        harness.run();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.get_by_label("Download").click();
    harness.run();
    let started = Instant::now();
    while harness.query_by_label("downloaded").is_none()
        && harness.query_by_label("installed").is_none()
    {
        if started.elapsed() > Duration::from_secs(30) {
            let snapshot = harness.state().backend.snapshot();
            panic!(
                "the download never finished: notice {:?}, downloads {:?}",
                harness.state().screen.notice,
                snapshot.peer.downloads
            );
        }
        harness.run();
        std::thread::sleep(Duration::from_millis(50));
    }
    let demo = harness.state().backend.demo.as_ref().unwrap();
    let ours = lanspread_tests::tree_hashes(&demo.own_games.join("ut2004"));
    let theirs = lanspread_tests::tree_hashes(&demo.peer_games(0).join("ut2004"));
    assert_eq!(ours, theirs);
    let snapshot = harness.state().backend.snapshot();
    let progress = &snapshot.peer.downloads["ut2004"];
    assert_eq!(progress.phase, Phase::Done);
    assert_eq!(
        progress.peers.iter().filter(|p| p.bytes > 0).count(),
        3,
        "{:?}",
        progress.peers
    );
}

/// 2,000 catalog games and 50 peers: the window still draws and searches
/// (cards are laid out only where visible). The frame time is printed for
/// the record, never asserted.
#[test]
fn a_big_party_stays_drawable() {
    let mut text = String::from("(edition: \"big\", games: [\n");
    for i in 0..2000 {
        text.push_str(&format!(
            "(id: \"game{i:04}\", title: \"Game {i:04}\", version: \"1\", description: \"d\", genre: \"g\", max_players: 8, approx_size_mib: {}),\n",
            100 + i
        ));
    }
    text.push_str("])");
    let catalog = GameCatalog::parse(&text, "big.ron").unwrap();
    let mut peers = BTreeMap::new();
    for p in 0..50 {
        let key = format!("{p:032}");
        let games = (0..100)
            .map(|g| AnnouncedGame {
                id: id(&format!("game{:04}", (p * 37 + g * 13) % 2000)),
                version: lanspread_core::GameVersion::parse("1").unwrap(),
                total_bytes: 1 << 30,
                manifest_digest: lanspread_core::Blake3Hash::of(&[p as u8]),
                partial: None,
            })
            .collect();
        peers.insert(
            key.clone(),
            RemotePeer {
                id: key,
                name: format!("PC {p}"),
                addr: format!("127.0.0.1:{}", 6000 + p).parse().unwrap(),
                source: PeerSource::Manual,
                same_catalog: true,
                catalog_fingerprint: [0; 32],
                games,
                library_revision: Some(1),
                last_seen: Instant::now(),
            },
        );
    }
    let folder = GamesFolder::new();
    let snapshot = Snapshot {
        catalog: Arc::new(catalog),
        peer: PeerState {
            peers,
            games_dir: Some(folder.path().to_path_buf()),
            ..PeerState::default()
        },
    };
    let mut harness = window(snapshot, PresetPicker::default());
    let mut frames = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        harness.step();
        frames.push(started.elapsed());
    }
    frames.sort();
    eprintln!(
        "2000 games, 50 peers: median frame {:?} (debug build)",
        frames[frames.len() / 2]
    );
    harness.state_mut().screen.search = "game1999".into();
    harness.run();
    assert!(harness.query_by_label("Game 1999").is_some());
    assert!(harness.query_by_label("Game 0001").is_none());
}

#[test]
fn a_pinned_game_says_it_is_verified_against_the_organisers_catalog() {
    let (_folder, mut snapshot) = party();
    let mut harness = window(snapshot.clone(), PresetPicker::default());
    open_detail(&mut harness, "ut2004");
    assert!(
        harness
            .query_by_label_contains("verified against the organiser's catalog")
            .is_none()
    );
    let pins = std::collections::BTreeMap::from([(
        id("ut2004"),
        lanspread_core::Blake3Hash::of(b"the right copy"),
    )]);
    let text = snapshot.catalog.to_ron_with_pins(&pins).unwrap();
    snapshot.catalog = Arc::new(GameCatalog::parse(&text, "pinned.ron").unwrap());
    let mut harness = window(snapshot, PresetPicker::default());
    open_detail(&mut harness, "ut2004");
    assert!(
        harness
            .query_by_label_contains("verified against the organiser's catalog")
            .is_some()
    );
}

#[test]
fn the_update_button_says_what_will_move_once_it_is_known() {
    let (_folder, snapshot) = party();
    let mut harness = window(snapshot, PresetPicker::default());
    open_detail(&mut harness, "counter-strike 1.6");
    // The plan is asked for once, however many frames are drawn; the
    // button says "Update" meanwhile.
    harness.run();
    let asked = harness
        .state()
        .sent
        .iter()
        .filter(|c| **c == UiCommand::Peer(Request::PlanUpdate { game: id("cs16") }))
        .count();
    assert_eq!(asked, 1, "{:?}", harness.state().sent);
    let long = "Update: 48.0 MiB to download, 3.0 GiB reused";
    assert!(harness.query_by_label(long).is_none());
    let version = harness
        .state()
        .snapshot
        .catalog
        .get_str("cs16")
        .unwrap()
        .version
        .to_string();
    harness.state_mut().snapshot.peer.update_plans.insert(
        "cs16".into(),
        (
            version,
            lanspread_net::download::UpdatePlan {
                download_bytes: 48 << 20,
                reused_bytes: 3 << 30,
            },
        ),
    );
    harness.run();
    assert!(harness.query_by_label(long).is_some());
    // A plan made for another catalog version is not shown.
    harness
        .state_mut()
        .snapshot
        .peer
        .update_plans
        .get_mut("cs16")
        .unwrap()
        .0 = "1".into();
    harness.run();
    assert!(harness.query_by_label(long).is_none());
}

#[test]
fn remove_warns_when_this_pc_holds_the_last_copy() {
    let warning = "You are the only PC with Unreal Tournament 2004";
    for others in [0usize, 1, 2] {
        let (_folder, mut snapshot) = party();
        // Keep `others` of the two peers holding ut2004.
        for (n, peer) in snapshot.peer.peers.values_mut().enumerate() {
            if n >= others {
                peer.games.retain(|g| g.id.as_str() != "ut2004");
            }
        }
        let mut harness = window(snapshot, PresetPicker::default());
        open_detail(&mut harness, "ut2004");
        harness.get_by_label("Remove").click();
        harness.run();
        let shown = harness.query_by_label_contains(warning).is_some();
        assert_eq!(shown, others == 0, "{others} other holders");
        if others == 0 {
            let catalog_version = harness
                .state()
                .snapshot
                .catalog
                .get_str("ut2004")
                .unwrap()
                .version
                .to_string();
            let full = format!(
                "You are the only PC with Unreal Tournament 2004 {catalog_version}: after removing it, nobody here can download it."
            );
            assert!(harness.query_by_label(&full).is_some());
        }
    }
    // Two instances on one other host are one other PC: not the last copy.
    let (_folder, mut snapshot) = party();
    for peer in snapshot.peer.peers.values_mut() {
        peer.addr = "127.0.0.9:5000".parse().unwrap();
    }
    let mut harness = window(snapshot, PresetPicker::default());
    open_detail(&mut harness, "ut2004");
    harness.get_by_label("Remove").click();
    harness.run();
    assert!(harness.query_by_label_contains(warning).is_none());
}

#[test]
fn the_detail_view_says_who_holds_which_version_and_who_downloads_from_us() {
    let (_folder, mut snapshot) = party();
    let catalog = snapshot.catalog.clone();
    let peers: Vec<String> = snapshot.peer.peers.keys().cloned().collect();
    // Alpha has the catalog's version; Bravo another version; a third PC
    // is downloading it and has 3 of 4 chunks.
    if let Some(bravo) = snapshot.peer.peers.get_mut(&peers[1]) {
        for game in &mut bravo.games {
            if game.id.as_str() == "ut2004" {
                game.version = lanspread_core::GameVersion::parse("19990101").unwrap();
            }
        }
    }
    let mut have = lanspread_core::download::HaveMap::empty(4);
    for chunk in 0..3 {
        have.set(chunk);
    }
    let mut partial = announced(&catalog, "ut2004");
    partial.partial = Some(lanspread_net::proto::PartialHave {
        have,
        fetching: lanspread_core::download::HaveMap::empty(4),
    });
    let charlie_id = format!("{:032}", 7);
    snapshot.peer.peers.insert(
        charlie_id.clone(),
        RemotePeer {
            id: charlie_id.clone(),
            name: "Charlie".to_owned(),
            addr: "127.0.0.3:5000".parse().unwrap(),
            source: PeerSource::Inbound,
            same_catalog: true,
            catalog_fingerprint: [0; 32],
            games: vec![partial],
            library_revision: Some(1),
            last_seen: Instant::now(),
        },
    );
    snapshot.peer.transfers.outbound.insert(id("ut2004"), 2);
    snapshot
        .peer
        .transfers
        .receivers
        .insert(id("ut2004"), BTreeMap::from([(charlie_id, 2)]));
    let mut harness = window(snapshot, PresetPicker::default());
    open_detail(&mut harness, "ut2004");
    assert!(
        harness
            .query_by_label("Alpha: the catalog's version")
            .is_some()
    );
    assert!(
        harness
            .query_by_label("Bravo: version 19990101 (not the catalog's)")
            .is_some()
    );
    assert!(
        harness
            .query_by_label("Charlie: downloading it, 75 % so far")
            .is_some()
    );
    assert!(harness.query_by_label("Charlie").is_some());
    // Only Alpha holds the catalog's version whole: removing is not the
    // last copy.
    harness.get_by_label("Remove").click();
    harness.run();
    assert!(
        harness
            .query_by_label_contains("You are the only PC")
            .is_none()
    );
}

#[test]
fn update_asks_first_and_confirm_sends_update() {
    let (_folder, snapshot) = party();
    let mut harness = window(snapshot, PresetPicker::default());
    open_detail(&mut harness, "counter-strike 1.6");
    // The card's and the detail view's button: either asks first.
    harness.get_all_by_label("Update").last().unwrap().click();
    harness.run();
    assert!(
        harness
            .query_by_label_contains("Update Counter-Strike")
            .is_some()
    );
    assert!(
        harness
            .query_by_label_contains("already holds is reused, not downloaded")
            .is_some()
    );
    harness.get_by_label("Cancel").click();
    harness.run();
    assert!(
        !harness
            .state()
            .sent
            .iter()
            .any(|c| matches!(c, UiCommand::Peer(Request::Update { game: _ })))
    );
    harness.get_all_by_label("Update").next().unwrap().click();
    harness.run();
    harness.get_by_label("Yes, update").click();
    harness.run();
    assert!(
        harness
            .state()
            .sent
            .contains(&UiCommand::Peer(Request::Update { game: id("cs16") }))
    );
}

#[test]
fn a_copy_newer_than_the_catalog_differs_and_is_not_an_update() {
    let (folder, mut snapshot) = party();
    folder.write_version("cs16", "29990101");
    let scan = scan_library(folder.path(), &snapshot.catalog).unwrap();
    snapshot.peer.library = Some(Arc::new(scan));
    let catalog_version = snapshot
        .catalog
        .get_str("cs16")
        .unwrap()
        .version
        .to_string();
    let mut harness = window(snapshot, PresetPicker::default());
    harness.state_mut().screen.search = "counter-strike 1.6".to_owned();
    harness.run();
    let words = format!("differs from the catalog (29990101 here, catalog {catalog_version})");
    assert!(harness.query_by_label_contains(&words).is_some());
    assert!(
        harness
            .query_by_label_contains("update available")
            .is_none()
    );
    assert!(harness.query_by_label("Update").is_none());
    harness.get_by_label("Details").click();
    harness.run();
    harness
        .get_by_label("Go back to the catalog's version")
        .click();
    harness.run();
    assert!(
        harness
            .query_by_label_contains("Version 29990101 here is newer than the catalog's")
            .is_some()
    );
}

/// The real starter, made slower: the window must keep drawing while it
/// works.
struct SlowStarter(Duration);

impl super::backend::Starter for SlowStarter {
    fn start_peer(
        &self,
        config: lanspread_net::PeerConfig,
        repaint: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> anyhow::Result<lanspread_net::PeerHandle> {
        std::thread::sleep(self.0);
        super::backend::RealStarter.start_peer(config, repaint)
    }

    fn start_demo(
        &self,
        catalog: &GameCatalog,
        percent: &dyn Fn(u8),
    ) -> anyhow::Result<crate::demo::Demo> {
        std::thread::sleep(self.0);
        super::backend::RealStarter.start_demo(catalog, percent)
    }
}

/// A data folder whose saved settings point at `games` with discovery
/// off, and the launch of the window on it.
fn launch_on(
    data: &std::path::Path,
    games: &std::path::Path,
    catalog_override: Option<std::path::PathBuf>,
) -> super::backend::Launch {
    Store::open(data)
        .unwrap()
        .save_settings(&Settings {
            games_dir: Some(games.to_path_buf()),
            discovery_enabled: false,
            ..Settings::default()
        })
        .unwrap();
    super::backend::Launch {
        data_dir: data.to_path_buf(),
        catalog_override,
        discovery_off: true,
    }
}

/// Frames until `done`, or a panic after `within`: how many were drawn
/// and the longest one.
fn frames_until(
    harness: &mut Harness<'static, super::LanspreadApp>,
    within: Duration,
    mut seen: impl FnMut(&Harness<'static, super::LanspreadApp>),
    mut done: impl FnMut(&Harness<'static, super::LanspreadApp>) -> bool,
) -> (usize, Duration) {
    let started = Instant::now();
    let (mut frames, mut longest) = (0, Duration::ZERO);
    while !done(harness) {
        assert!(
            started.elapsed() < within,
            "not done after {within:?}: notice {:?}",
            harness.state().screen.notice
        );
        let frame = Instant::now();
        harness.step();
        longest = longest.max(frame.elapsed());
        frames += 1;
        seen(harness);
        std::thread::sleep(Duration::from_millis(10));
    }
    (frames, longest)
}

#[test]
fn saving_settings_and_starting_the_demo_never_freeze_the_window() {
    const SLOW: Duration = Duration::from_millis(1500);
    let data = tempfile::tempdir().unwrap();
    let games = tempfile::tempdir().unwrap();
    let launch = launch_on(data.path(), games.path(), None);
    let (backend, settings) =
        super::backend::Backend::start_with(launch, None, Arc::new(SlowStarter(SLOW))).unwrap();
    let mut harness = app_window(backend, settings);
    harness.state_mut().screen.tab = Tab::Settings;
    harness.run();

    // A new name: the network part restarts, on a worker thread.
    harness.get_by_label("Display name").focus();
    harness.get_by_label("Display name").type_text("Fragmaster");
    harness.run();
    harness.get_by_label("Save").click();
    let saved_at = Instant::now();
    let mut restarting_seen = false;
    let (frames, longest) = frames_until(
        &mut harness,
        Duration::from_secs(30),
        |h| restarting_seen |= h.query_by_label("restarting the network…").is_some(),
        |h| h.state().screen.notice.as_deref() == Some("Settings saved."),
    );
    let took = saved_at.elapsed();
    eprintln!("settings save: {frames} frames in {took:?}, the longest {longest:?}");
    assert!(took >= SLOW, "the restart was not slowed: {took:?}");
    assert!(restarting_seen, "the window never said it was restarting");
    assert!(frames >= 10, "only {frames} frames in {took:?}");
    assert!(
        longest < Duration::from_millis(500),
        "a frame took {longest:?}"
    );
    assert_eq!(harness.state().backend.snapshot().peer.name, "Fragmaster");

    // Only the upload limit: applied live, no restart at all.
    harness.get_by_label("Always limit uploads to").click();
    harness.run();
    harness.get_by_label("Save").click();
    harness.step();
    let applied = Instant::now();
    assert_eq!(
        harness.state().screen.notice.as_deref(),
        Some("Settings saved; the upload settings apply now.")
    );
    assert!(harness.state().backend.busy().is_none());
    while harness
        .state()
        .backend
        .snapshot()
        .peer
        .sharing
        .limit_bytes_per_sec
        != Some(50 * 125_000)
    {
        assert!(
            applied.elapsed() < Duration::from_secs(1),
            "the limit did not apply"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    harness.run();
    assert!(
        harness
            .query_by_label_contains("uploads limited to 50 Mbit/s")
            .is_some()
    );

    // The demo: its games are made while the window keeps drawing.
    let notice = harness.state_mut().backend.apply(UiCommand::StartDemo);
    harness.state_mut().screen.notice = notice;
    let asked = Instant::now();
    let mut making_seen = false;
    let (frames, longest) = frames_until(
        &mut harness,
        Duration::from_secs(60),
        |h| making_seen |= h.query_by_label_contains("making the demo games").is_some(),
        |h| h.state().backend.demo.is_some() && h.state().backend.busy().is_none(),
    );
    let took = asked.elapsed();
    eprintln!("demo start: {frames} frames in {took:?}, the longest {longest:?}");
    assert!(making_seen, "the window never said it was making the demo");
    assert!(frames >= 10, "only {frames} frames in {took:?}");
    assert!(
        longest < Duration::from_millis(500),
        "a frame took {longest:?}"
    );
}

/// A games folder holding a game of 50,000 files, over a real backend: the
/// window keeps drawing while the first scan hashes it, says how far the
/// scan is, and the card says "shared" once the game is offered.
#[test]
fn a_first_scan_of_50000_files_keeps_the_window_drawing() {
    const FILES: usize = 50_000;
    let catalog = GameCatalog::embedded().unwrap();
    let games = GamesFolder::new();
    let names: Vec<(String, usize)> = (0..FILES)
        .map(|i| (format!("Data/{:03}/file-{i:05}.dat", i % 250), 4096))
        .collect();
    let files: Vec<(&str, usize)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    games
        .add_payload("ut2004", &files, 5)
        .write_catalog_version("ut2004", &catalog);
    let data = tempfile::tempdir().unwrap();
    let launch = launch_on(data.path(), games.path(), None);
    let started = Instant::now();
    let (backend, settings) = super::backend::Backend::start(launch, None).unwrap();
    let mut harness = app_window(backend, settings);
    harness.state_mut().screen.search = "unreal tournament 2004".into();
    let mut progress_seen = false;
    let (frames, longest) = frames_until(
        &mut harness,
        Duration::from_secs(120),
        |h| {
            progress_seen |= h
                .query_by_label_contains("checking Unreal Tournament 2004 before sharing it")
                .is_some();
        },
        |h| h.query_by_label("shared").is_some(),
    );
    let took = started.elapsed();
    eprintln!(
        "{FILES} files: shared {took:?} after the start, {frames} frames, the longest {longest:?}"
    );
    assert!(progress_seen, "the window never said how far the scan was");
    assert!(frames >= 10, "only {frames} frames in {took:?}");
    assert!(
        longest < Duration::from_millis(500),
        "a frame took {longest:?}"
    );
}

/// Play for real: a catalog whose ut2004 starts a small script from
/// `local/`; the card says "running" while the script lives, then offers
/// Play again.
#[cfg(unix)]
#[test]
fn play_starts_the_game_and_the_card_says_running_until_it_ends() {
    let data = tempfile::tempdir().unwrap();
    let catalog_dir = tempfile::tempdir().unwrap();
    let catalog_file = catalog_dir.path().join("party.ron");
    std::fs::write(
        &catalog_file,
        lanspread_tests::catalog_text_with_ut_launch("game.sh", &[]),
    )
    .unwrap();
    let catalog = GameCatalog::from_file(&catalog_file).unwrap();
    let folder = GamesFolder::new();
    folder
        .add_payload("ut2004", &[("ut2004.zip", 4096)], 3)
        .write_catalog_version("ut2004", &catalog)
        .add_local_script(
            "ut2004",
            "game.sh",
            "touch started\nwhile [ ! -e quit ]; do sleep 0.05; done",
        );
    let launch = launch_on(data.path(), folder.path(), Some(catalog_file));
    let (backend, settings) = super::backend::Backend::start(launch, None).unwrap();
    let mut harness = app_window(backend, settings);
    harness.state_mut().screen.search = "ut2004".into();
    frames_until(
        &mut harness,
        Duration::from_secs(20),
        |_| {},
        |h| h.query_by_label("Play").is_some(),
    );
    harness.get_by_label("Play").click();
    let clicked = Instant::now();
    frames_until(
        &mut harness,
        Duration::from_secs(3),
        |_| {},
        |h| h.query_by_label("running").is_some(),
    );
    eprintln!("running shown {:?} after the click", clicked.elapsed());
    let local = folder.path().join("ut2004/local");
    let started = Instant::now();
    while !local.join("started").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the game never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(local.join("quit"), b"").unwrap();
    let quit = Instant::now();
    frames_until(
        &mut harness,
        Duration::from_secs(3),
        |_| {},
        |h| h.query_by_label("running").is_none() && h.query_by_label("Play").is_some(),
    );
    eprintln!("Play back {:?} after the game ended", quit.elapsed());
}

#[test]
fn a_pc_nobody_reaches_is_told_about_the_firewall() {
    let (_folder, mut snapshot) = party();
    let mut harness = window(snapshot.clone(), PresetPicker::default());
    harness.run();
    assert!(
        harness
            .query_by_label_contains("a firewall probably blocks")
            .is_none()
    );
    snapshot.peer.maybe_firewalled = true;
    harness.state_mut().snapshot = snapshot;
    harness.run();
    assert!(
        harness
            .query_by_label_contains("This PC reaches 2 other PCs but none has connected to it")
            .is_some()
    );
    assert!(
        harness
            .query_by_label_contains("Allow an app through firewall")
            .is_some()
    );
}

/// A request that fails comes back as a typed error, and the window says
/// it in words; a typed-in address that is not one is said too (it used to
/// be dropped).
#[test]
fn the_window_says_why_a_request_failed() {
    let data = tempfile::tempdir().unwrap();
    let launch = super::backend::Launch {
        data_dir: data.path().to_path_buf(),
        catalog_override: None,
        discovery_off: true,
    };
    let (mut backend, _) = super::backend::Backend::start(launch, None).unwrap();
    for request in [
        Request::Download { game: id("ut2004") },
        Request::AddPeer {
            target: "not an address".into(),
        },
    ] {
        assert_eq!(backend.apply(UiCommand::Peer(request)), None);
    }
    let asked = Instant::now();
    let mut notices = Vec::new();
    while notices.len() < 2 {
        assert!(asked.elapsed() < Duration::from_secs(10), "{notices:?}");
        notices.extend(backend.poll());
        std::thread::sleep(Duration::from_millis(10));
    }
    notices.sort();
    assert!(
        notices[0].contains("not an address") && notices[0].contains("HOST:PORT"),
        "{notices:?}"
    );
    assert!(notices[1].contains("no games folder"), "{notices:?}");
}
