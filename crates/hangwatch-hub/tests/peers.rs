//! Peers that do not play by the rules, in one process: a hand-made child
//! that sends bytes of the wrong shape to a hub, and a hand-made hub that
//! does the same to a child's bridge. Neither side panics or stops.

use std::time::{Duration, Instant, SystemTime};

use hangwatch::{
    Alert, AlertKind, ComponentId, ComponentState, ComponentStats, Monitor, Stats, Timeouts,
};
use hangwatch_hub::protocol::{
    cut_into_pieces, ChildMsg, Hello, HubMsg, Json, Reply, Request, PIECE_BYTES, PROTOCOL_VERSION,
};
use hangwatch_hub::{Bridge, ConnectError, Hub, HubEvent};
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};

const GENEROUS: Duration = Duration::from_secs(20);

fn next_event(hub: &Hub) -> HubEvent {
    hub.events()
        .recv_timeout(GENEROUS)
        .expect("an event from the hub")
}

fn alert(n: u64) -> Alert {
    let mut alert = Alert::new(
        ComponentId::new("fake", n),
        AlertKind::Transient,
        Duration::from_millis(120),
        SystemTime::now(),
    );
    alert.annotation = Some("hand-made".into());
    alert
}

/// A child made by hand: connects to `server`, says hello with a control
/// server of its own, and waits for the hub's welcome.
fn fake_child(server: &str, pid: u32) -> (IpcSender<ChildMsg>, IpcReceiver<HubMsg>) {
    let stream = IpcSender::<ChildMsg>::connect(server.to_owned()).unwrap();
    let (control, control_name) = IpcOneShotServer::<HubMsg>::new().unwrap();
    stream
        .send(ChildMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            pid,
            program: "fake".into(),
            control: control_name,
        }))
        .unwrap();
    let (requests, welcome) = control.accept().unwrap();
    assert_eq!(
        welcome,
        HubMsg::Welcome {
            protocol: PROTOCOL_VERSION
        }
    );
    (stream, requests)
}

#[test]
fn undecodable_bytes_from_a_peer_are_reported_and_dropped() {
    let hub = Hub::start().unwrap();

    // A first message that is not a hello of this protocol: the connection
    // is refused, and said so.
    let invitation = hub.invite("garbled-hello").unwrap();
    let raw = IpcSender::<Vec<u8>>::connect(invitation.server_name().to_owned()).unwrap();
    raw.send(vec![0xff; 12]).unwrap();
    match next_event(&hub) {
        HubEvent::Undecodable {
            invitation,
            child: None,
            detail,
        } => {
            assert_eq!(invitation, "garbled-hello");
            assert!(!detail.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }

    // A proper child that then sends garbage between good alerts.
    let invitation = hub.invite("garbler").unwrap();
    let (stream, _requests) = fake_child(invitation.server_name(), 4242);
    match next_event(&hub) {
        HubEvent::Connected(child) => {
            assert_eq!((child.pid, child.name.as_str()), (4242, "garbler"));
            assert_eq!(child.program, "fake");
        }
        other => panic!("unexpected {other:?}"),
    }
    stream
        .send(ChildMsg::Alert(Json::encode(&alert(1)).unwrap()))
        .unwrap();
    // The same channel, typed as something else: bytes that are no
    // `ChildMsg` (an enum tag far past the last variant, raw bytes).
    let as_number = stream.clone().to_opaque().to::<u64>();
    as_number.send(u64::MAX).unwrap();
    let as_bytes = stream.clone().to_opaque().to::<Vec<u8>>();
    // (Its length, 200, comes first: read as an enum tag, it is past the
    // last variant.)
    as_bytes.send(vec![0xff; 200]).unwrap();
    // A well-formed message whose alert is not one.
    stream
        .send(ChildMsg::Alert(Json::from_text("{\"not\": 1}".into())))
        .unwrap();
    // A reply to a request the hub never made: dropped quietly.
    stream
        .send(ChildMsg::Reply {
            id: 999,
            reply: Reply::SetEnabled(Ok(())),
        })
        .unwrap();
    stream
        .send(ChildMsg::Alert(Json::encode(&alert(2)).unwrap()))
        .unwrap();

    let mut got = Vec::new();
    while got.len() < 5 {
        got.push(next_event(&hub));
    }
    assert!(
        matches!(&got[0], HubEvent::Alert(a) if a.alert.component.number == 1),
        "{got:#?}"
    );
    for event in &got[1..4] {
        assert!(
            matches!(event, HubEvent::Undecodable { child: Some(c), .. } if c.pid == 4242),
            "{got:#?}"
        );
    }
    assert!(
        matches!(&got[4], HubEvent::Alert(a) if a.alert.component.number == 2),
        "{got:#?}"
    );

    // The hub goes on: it still counts, answers, and notices the peer leave.
    let counters = hub.counters().unwrap();
    assert_eq!(counters.undecodable, 4);
    assert_eq!(counters.alerts, 2);
    assert_eq!(counters.children, 1);
    stream.send(ChildMsg::Goodbye).unwrap();
    drop((stream, as_number, as_bytes));
    match next_event(&hub) {
        HubEvent::Left { child, last } => {
            assert_eq!(child.pid, 4242);
            assert_eq!(last.undecodable, 3);
            assert_eq!(last.alerts, 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    hub.shutdown().unwrap();
}

#[test]
fn a_message_carrying_unexpected_channels_is_dropped_not_fatal() {
    // ipc-channel 0.23 asserts, in debug builds, when a message carries
    // channels nobody took: with two, the second assertion would abort the
    // process. The workspace builds ipc-channel without debug assertions,
    // and the hub catches a panic from decoding in any case.
    let hub = Hub::start().unwrap();
    let invitation = hub.invite("smuggler").unwrap();
    let (stream, _requests) = fake_child(invitation.server_name(), 77);
    assert!(matches!(next_event(&hub), HubEvent::Connected(_)));
    let (one, _kept_one) = ipc::channel::<u8>().unwrap();
    let (two, _kept_two) = ipc::channel::<u8>().unwrap();
    let as_channels = stream
        .clone()
        .to_opaque()
        .to::<(IpcSender<u8>, IpcSender<u8>)>();
    as_channels.send((one, two)).unwrap();
    stream
        .send(ChildMsg::Alert(Json::encode(&alert(3)).unwrap()))
        .unwrap();
    assert!(matches!(next_event(&hub), HubEvent::Undecodable { .. }));
    assert!(matches!(next_event(&hub), HubEvent::Alert(_)));
    hub.shutdown().unwrap();
}

#[test]
fn a_child_drops_undecodable_requests_and_goes_on() {
    // A real monitor and bridge in this process, and a hub made by hand.
    let (server, server_name) = IpcOneShotServer::<ChildMsg>::new().unwrap();
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let bridge = Bridge::connect(&server_name, alerts, control.clone()).unwrap();
    let (stream, hello) = server.accept().unwrap();
    let ChildMsg::Hello(hello) = hello else {
        panic!("expected a hello, got {hello:?}");
    };
    assert_eq!(hello.pid, std::process::id());
    let requests = IpcSender::<HubMsg>::connect(hello.control).unwrap();
    requests
        .send(HubMsg::Welcome {
            protocol: PROTOCOL_VERSION,
        })
        .unwrap();
    let garbage = requests.clone().to_opaque().to::<Vec<u8>>();
    garbage.send(vec![0xee; 9]).unwrap();
    requests
        .send(HubMsg::Request {
            id: 7,
            request: Request::Stats,
        })
        .unwrap();
    match stream.try_recv_timeout(GENEROUS).unwrap() {
        ChildMsg::Reply {
            id: 7,
            reply: Reply::Stats(Ok(stats)),
        } => assert!(stats.decode().unwrap().enabled),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(bridge.counters().undecodable, 1);
    assert_eq!(bridge.counters().requests, 1);
    assert!(bridge.hub_connected());

    // The monitor ends: the bridge says goodbye; the hand-made hub closes
    // the control channel, which releases the bridge's control thread.
    drop(register);
    thread.join().unwrap();
    assert_eq!(
        stream.try_recv_timeout(GENEROUS).unwrap(),
        ChildMsg::Goodbye
    );
    drop((requests, garbage));
    let start = Instant::now();
    let counters = bridge.close();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(!counters.hub_connected);
    drop(control);
}

#[test]
fn a_child_without_a_hub_gets_an_error_and_keeps_its_monitor() {
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = Monitor::builder().stacks(false).start().unwrap();
    std::env::remove_var(hangwatch_hub::HUB_ENV);
    let error = Bridge::connect_from_env(alerts.clone(), control.clone())
        .err()
        .unwrap();
    assert!(matches!(error, ConnectError::NoHub), "{error}");
    assert!(error.to_string().contains("HANGWATCH_HUB"));
    let error = Bridge::connect("/nonexistent/hangwatch-hub", alerts, control.clone())
        .err()
        .unwrap();
    assert!(matches!(error, ConnectError::Connect { .. }), "{error}");
    assert!(control.stats().is_ok());
    drop(register);
    thread.join().unwrap();
}

#[test]
fn an_invitation_nobody_uses_is_reported_and_withdrawn() {
    let hub = Hub::builder()
        .connect_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    let invitation = hub.invite("no-show").unwrap();
    match next_event(&hub) {
        HubEvent::NeverConnected { invitation, waited } => {
            assert_eq!(invitation, "no-show");
            assert!(waited >= Duration::from_millis(150));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Too late: the server is gone.
    std::thread::sleep(Duration::from_millis(100));
    assert!(IpcSender::<ChildMsg>::connect(invitation.server_name().to_owned()).is_err());
    assert_eq!(hub.counters().unwrap().invitations, 0);
}

#[test]
fn a_hub_gone_before_it_welcomed_leaves_the_child_alone() {
    // A hub that takes the hello and dies: the child's sends fail, the
    // bridge says the hub is gone, the monitor goes on.
    let (server, server_name) = IpcOneShotServer::<ChildMsg>::new().unwrap();
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let bridge = Bridge::connect(&server_name, alerts, control.clone()).unwrap();
    let (stream, _hello) = server.accept().unwrap();
    drop(stream);
    let handle = register
        .register_component(
            ComponentId::new("alone", 1),
            Timeouts::new(Duration::from_millis(30), Duration::from_secs(5)),
            None,
        )
        .unwrap();
    // Hang until the bridge has tried to send and noticed.
    let deadline = Instant::now() + GENEROUS;
    while bridge.hub_connected() {
        assert!(Instant::now() < deadline, "the bridge never noticed");
        let _busy = handle.activity("hang");
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(bridge.counters().not_forwarded >= 1);
    assert!(control.stats().unwrap().alerts_sent >= 1);
    drop(handle);
    drop(register);
    thread.join().unwrap();
    let start = Instant::now();
    bridge.close();
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// An annotation long enough to need several pieces.
fn long_label() -> &'static str {
    let text: String = (0..30_000).map(|n| format!("{n} ")).collect();
    assert!(text.len() > 2 * PIECE_BYTES);
    Box::leak(text.into_boxed_str())
}

#[test]
fn a_bridge_sends_a_long_alert_in_pieces() {
    let (server, server_name) = IpcOneShotServer::<ChildMsg>::new().unwrap();
    let Monitor {
        register,
        alerts,
        control,
        thread,
        ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let bridge = Bridge::connect(&server_name, alerts, control.clone()).unwrap();
    let (stream, _hello) = server.accept().unwrap();
    let label = long_label();
    let handle = register
        .register_component(
            ComponentId::new("wordy", 1),
            Timeouts::new(Duration::from_millis(20), Duration::from_secs(5)),
            None,
        )
        .unwrap();
    {
        let _busy = handle.activity(label);
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut pieces = Vec::new();
    let alert = loop {
        match stream.try_recv_timeout(GENEROUS).unwrap() {
            ChildMsg::AlertPiece(piece) => pieces.push(piece),
            ChildMsg::Alert(last) => break last,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pieces.len() >= 2, "{} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.len() <= PIECE_BYTES));
    let whole: Json<Alert> = Json::from_text(pieces.concat() + alert.text());
    let alert = whole.decode().unwrap();
    assert_eq!(alert.annotation.as_deref(), Some(label));
    drop((handle, register));
    thread.join().unwrap();
    drop(bridge);
}

#[test]
fn a_hub_glues_pieces_back_together() {
    let hub = Hub::start().unwrap();
    let invitation = hub.invite("wordy").unwrap();
    let (stream, requests) = fake_child(invitation.server_name(), 5151);
    assert!(matches!(next_event(&hub), HubEvent::Connected(_)));

    // A long alert, cut into pieces, with pieces of a reply nobody asked
    // for in between: those are dropped with their reply.
    let label = long_label();
    let mut long = alert(1);
    long.annotation = Some(label.into());
    let (pieces, last) = cut_into_pieces(Json::encode(&long).unwrap().text().to_owned());
    for (n, piece) in pieces.into_iter().enumerate() {
        stream.send(ChildMsg::AlertPiece(piece)).unwrap();
        if n == 0 {
            stream
                .send(ChildMsg::ReplyPiece {
                    id: 12345,
                    text: "{\"stray".into(),
                })
                .unwrap();
        }
    }
    stream.send(ChildMsg::Alert(Json::from_text(last))).unwrap();
    match next_event(&hub) {
        HubEvent::Alert(got) => assert_eq!(got.alert.annotation.as_deref(), Some(label)),
        other => panic!("unexpected {other:?}"),
    }

    // A long reply: stats of many components, asked for by the hub.
    let asking = std::thread::scope(|scope| {
        let asking = scope.spawn(|| hub.stats(5151));
        let HubMsg::Request { id, request } = requests.try_recv_timeout(GENEROUS).unwrap() else {
            panic!("expected a request");
        };
        assert_eq!(request, Request::Stats);
        let mut stats = Stats::default();
        for n in 0..3000 {
            stats.components.push({
                let mut component =
                    ComponentStats::new(ComponentId::new("many", n), ComponentState::Waiting);
                component.thread = Some(format!("thread-{n}"));
                component.transient_alerts = n;
                component.longest_hang = Duration::from_millis(n);
                component
            });
        }
        let mut reply = Reply::Stats(Ok(Json::encode(&stats).unwrap()));
        let payload = reply.payload_mut().unwrap();
        let (pieces, last) = cut_into_pieces(std::mem::take(payload));
        *payload = last;
        assert!(pieces.len() >= 3);
        for text in pieces {
            stream.send(ChildMsg::ReplyPiece { id, text }).unwrap();
        }
        stream.send(ChildMsg::Reply { id, reply }).unwrap();
        asking.join().unwrap()
    });
    let stats = asking.unwrap();
    assert_eq!(stats.components.len(), 3000);
    assert_eq!(stats.components[2999].transient_alerts, 2999);
    assert_eq!(hub.counters().unwrap().undecodable, 0);
    hub.shutdown().unwrap();
}
