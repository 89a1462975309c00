//! Hostile bytes from a child, without libFuzzer: every seed of the
//! `hub_child_bytes` fuzz corpus (`fuzz/corpus/`), and deterministic mutants
//! of them, go through the fuzz target's own check (`hangwatch_fuzz_checks::hub`),
//! which feeds them to the hub's [`Inbox`] message by message; none may
//! panic, and the well-formed seeds must decode without an error.
//!
//! The seeds are sequences of real messages, encoded as ipc-channel encodes
//! them (postcard), made here by the ignored test `write_the_corpus`
//! (`cargo test -p hangwatch-hub --features test-util --test hostile_bytes --
//! --ignored`); once committed they stay as they are while
//! `PROTOCOL_VERSION` does, so the well-formed ones also check that what
//! earlier builds of this version sent still decodes (protocol 2 rewrote
//! them). Other files in the corpus
//! (inputs found by fuzzing) are fed as they are.

use std::time::{Duration, SystemTime};

use hangwatch::{
    Alert, AlertKind, ComponentId, ExitReport, Frame, HangLevel, HangMarker, NoStack, Profile,
    ProfiledThread, Stack, Stats,
};
use hangwatch_fuzz_checks::{hub, smoke};
use hangwatch_hub::protocol::{ChildMsg, Hello, Json, RemoteError, Reply, PROTOCOL_VERSION};
use hangwatch_hub::test_util::{Delivery, Inbox};
use ipc_channel::ipc::IpcMessage;

/// Mutants of the seeds: about 1.5 s in a debug build (most stop at the
/// postcard envelope, which is cheap).
const MUTANTS: usize = 20_000;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn frame(name: &str) -> Frame {
    Frame {
        address: 0x5555_0000_1000 + name.len() as u64,
        module: Some("content".into()),
        module_offset: Some(0x1000 + name.len() as u64),
        function: Some(name.into()),
        file: Some("src/child.rs".into()),
        line: Some(42),
        ..Frame::default()
    }
}

fn stack() -> Stack {
    Stack {
        frames: [
            "syscall",
            "std::sync::Mutex<T>::lock",
            "content::layout::reflow",
        ]
        .map(frame)
        .to_vec(),
        truncated: false,
        ..Stack::default()
    }
}

fn alert(kind: AlertKind, ms: u64, with_stack: bool) -> Alert {
    let mut alert = Alert::new(
        ComponentId::new("layout", 1),
        kind,
        Duration::from_millis(ms),
        t0() + Duration::from_millis(ms),
    );
    alert.annotation = Some("reflow".into());
    alert.thread = Some("layout".into());
    alert.stack = with_stack.then(stack);
    alert
}

fn profile() -> Profile {
    let mut profile = Profile::new(t0(), Duration::from_millis(10));
    profile.duration = Duration::from_millis(40);
    let samples = (0..3)
        .map(|i| profile.sample(Duration::from_millis(10 * i), &stack()))
        .collect();
    profile.threads = vec![ProfiledThread {
        component: ComponentId::new("layout", 1),
        thread: Some("layout".into()),
        tid: 7,
        samples,
        hangs: vec![HangMarker {
            start: Duration::from_millis(5),
            duration: Duration::from_millis(30),
            level: HangLevel::Transient,
            annotation: Some("reflow".into()),
            ended: true,
        }],
    }];
    profile
}

/// A message as ipc-channel puts it on the wire.
fn encode(message: &ChildMsg) -> Vec<u8> {
    postcard::to_stdvec(message).unwrap()
}

fn json<T: serde::Serialize>(value: &T) -> Json<T> {
    Json::encode(value).unwrap()
}

/// `text` cut in three: two pieces sent ahead, and the last one.
fn three_pieces(text: &str) -> (String, String, String) {
    let (a, b) = (text.len() / 3, 2 * text.len() / 3);
    (text[..a].into(), text[a..b].into(), text[b..].into())
}

/// The seeds: `ok-` ones as a child's bridge sends them, the others broken
/// in the ways a stream from a buggy or hostile child can be.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let transient = alert(AlertKind::Transient, 250, false);
    let permanent = alert(AlertKind::Permanent, 1000, true);
    let ended = alert(
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
        1600,
        false,
    );
    let (a, b, last) = three_pieces(json(&permanent).text());
    let stats = {
        let mut stats = Stats::default();
        stats.enabled = true;
        stats.looks = 7;
        stats.alerts_sent = 3;
        stats
    };
    let (s1, s2, s_last) = three_pieces(json(&stats).text());
    let mut exit_report = ExitReport::default();
    exit_report.signalled = 4;
    exit_report.panicked = vec![ComponentId::new("script", 2)];
    let (p1, p2, p_last) = three_pieces(json(&profile()).text());
    let mut no_stack = alert(AlertKind::Permanent, 1000, false);
    no_stack.no_stack = Some(NoStack::UnwindFailed("no CFI for 0x1234".into()));
    let good_alert = encode(&ChildMsg::Alert(json(&transient)));
    let mut absurd = profile();
    absurd.threads[0].hangs[0].start = Duration::from_secs(15_000_000_000_000_000_000);
    absurd.threads[0].hangs[0].duration = Duration::from_secs(15_000_000_000_000_000_000);
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "ok-alerts.bin",
            vec![
                good_alert.clone(),
                encode(&ChildMsg::Alert(json(&permanent))),
                encode(&ChildMsg::Alert(json(&ended))),
                encode(&ChildMsg::Alert(json(&no_stack))),
                encode(&ChildMsg::Goodbye),
            ],
        ),
        (
            "ok-alert-in-pieces.bin",
            vec![
                encode(&ChildMsg::AlertPiece(a)),
                encode(&ChildMsg::AlertPiece(b)),
                encode(&ChildMsg::Alert(Json::from_text(last))),
            ],
        ),
        (
            "ok-replies.bin",
            vec![
                encode(&ChildMsg::Reply {
                    id: 1,
                    reply: Reply::Exit(Ok(exit_report)),
                }),
                encode(&ChildMsg::ReplyPiece { id: 2, text: s1 }),
                encode(&ChildMsg::ReplyPiece { id: 2, text: s2 }),
                encode(&ChildMsg::Reply {
                    id: 2,
                    reply: Reply::Stats(Ok(Json::from_text(s_last))),
                }),
                encode(&ChildMsg::Reply {
                    id: 3,
                    reply: Reply::SetEnabled(Ok(())),
                }),
                encode(&ChildMsg::Reply {
                    id: 4,
                    reply: Reply::StartProfiling(Err(RemoteError::StacksOff)),
                }),
                encode(&ChildMsg::Reply {
                    id: 5,
                    reply: Reply::Stats(Err(RemoteError::Encode("no room".into()))),
                }),
            ],
        ),
        (
            "ok-profile.bin",
            vec![
                encode(&ChildMsg::ReplyPiece { id: 9, text: p1 }),
                encode(&ChildMsg::ReplyPiece { id: 9, text: p2 }),
                encode(&ChildMsg::Reply {
                    id: 9,
                    reply: Reply::StopProfiling(Ok(Json::from_text(p_last))),
                }),
            ],
        ),
        (
            "handshake-mid-stream.bin",
            vec![
                encode(&ChildMsg::Hello(Hello {
                    protocol: PROTOCOL_VERSION,
                    pid: 4242,
                    program: "content".into(),
                    control: "/tmp/nowhere\0".into(),
                })),
                encode(&ChildMsg::Withdrawn),
                good_alert.clone(),
            ],
        ),
        (
            "garbage.bin",
            vec![
                vec![0xff; 12],
                vec![200, 1, 2, 3],
                good_alert[..good_alert.len() / 2].to_vec(),
                Vec::new(),
                encode(&ChildMsg::Alert(Json::from_text(
                    "{\"not\": \"an alert\"}".into(),
                ))),
                encode(&ChildMsg::Alert(Json::from_text(
                    json(&transient).text().replace("250.0", "1e309"),
                ))),
                good_alert,
            ],
        ),
        (
            "pieces-astray.bin",
            vec![
                encode(&ChildMsg::ReplyPiece {
                    id: 1,
                    text: "{\"looks\":".into(),
                }),
                encode(&ChildMsg::ReplyPiece {
                    id: 2,
                    text: "[[[[".into(),
                }),
                encode(&ChildMsg::Reply {
                    id: 1,
                    reply: Reply::Stats(Ok(json(&stats))),
                }),
                encode(&ChildMsg::AlertPiece("{\"component\":".into())),
                encode(&ChildMsg::Reply {
                    id: 3,
                    reply: Reply::SetEnabled(Err(RemoteError::MonitorGone)),
                }),
                encode(&ChildMsg::Alert(json(&ended))),
            ],
        ),
        (
            "absurd-profile.bin",
            vec![encode(&ChildMsg::Reply {
                id: 1,
                reply: Reply::StopProfiling(Ok(json(&absurd))),
            })],
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, messages)| (name, hub::frame(&messages)))
        .collect()
}

#[test]
#[ignore = "writes the seeds into fuzz/corpus; run by hand when they change"]
fn write_the_corpus() {
    let corpus = smoke::corpus("hub_child_bytes");
    std::fs::create_dir_all(&corpus).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(corpus.join(name), bytes).unwrap();
    }
}

/// Every message of a well-formed seed is taken in, and what comes out
/// decodes.
fn well_formed(name: &str, input: &[u8]) {
    let mut inbox = Inbox::default();
    let mut whole = 0;
    for message in hub::messages(input) {
        match inbox.take(IpcMessage::from_data(message.to_vec())) {
            Delivery::Undecodable(detail) => panic!("{name}: {detail}"),
            Delivery::Reply { reply, .. } => {
                whole += 1;
                match reply {
                    Reply::Stats(Ok(json)) => drop(json.decode().unwrap()),
                    Reply::StopProfiling(Ok(json)) => drop(json.decode().unwrap()),
                    _ => {}
                }
            }
            Delivery::Alert(_) => whole += 1,
            Delivery::Piece | Delivery::Goodbye => {}
        }
    }
    assert!(whole > 0, "{name}: nothing came out");
}

#[test]
fn the_hub_survives_hostile_bytes_from_a_child() {
    smoke::hostile(
        "hub_child_bytes",
        MUTANTS,
        0x6875_6220_6279_7465,
        hub::check,
        well_formed,
    );
}
