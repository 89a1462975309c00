//! Alerts with stacks: the hung thread's own stack, symbolicated, on the
//! permanent alert; raw frames when symbolication is out of time; a reason
//! when there is no stack.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{expect_alert, ms, GENEROUS};
use hangwatch::{AlertKind, ComponentId, HangLevel, Monitor, NoStack, Register, Timeouts};
use hangwatch_test_support::eventually;

/// Runs a component whose single activity blocks in `stuck_in_a_test_function`
/// until `release` is dropped.
fn hang_in_named_function(
    register: &Register,
    id: ComponentId,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (release, released) = mpsc::channel::<()>();
    let register = register.clone();
    let thread = std::thread::spawn(move || {
        let handle = register
            .register_component(id, Timeouts::new(ms(50), ms(200)), None)
            .unwrap();
        let _busy = handle.activity("test hang");
        stuck_in_a_test_function(&released);
    });
    (release, thread)
}

#[inline(never)]
fn stuck_in_a_test_function(released: &mpsc::Receiver<()>) {
    let _ = std::hint::black_box(released).recv();
}

#[test]
fn a_permanent_alert_names_the_function_the_thread_is_stuck_in() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder()
        .symbolicate_deadline(GENEROUS)
        .start()
        .unwrap();
    let id = ComponentId::new("stuck", 1);
    let (release, thread) = hang_in_named_function(&register, id.clone());

    let transient = expect_alert(&alerts, &id, AlertKind::Transient);
    assert!(
        transient.stack.is_none() && transient.no_stack.is_none(),
        "transient alerts carry no stack by default"
    );
    let permanent = expect_alert(&alerts, &id, AlertKind::Permanent);
    let stack = permanent
        .stack
        .as_ref()
        .unwrap_or_else(|| panic!("no stack: {permanent}"));
    let frame = stack
        .frames
        .iter()
        .find(|f| {
            f.function
                .as_deref()
                .is_some_and(|name| name.ends_with("stuck_in_a_test_function"))
        })
        .unwrap_or_else(|| panic!("the stack does not name the hung function:\n{stack}"));
    assert!(
        frame
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("tests/stacks.rs")),
        "{frame}"
    );
    assert!(frame.line.is_some(), "{frame}");
    // Innermost first: the blocking call sits above the hung function.
    let position = stack.frames.iter().position(|f| f == frame).unwrap();
    assert!(position > 0, "{stack}");

    drop(release);
    thread.join().unwrap();
    expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    );
}

#[test]
fn transient_alerts_carry_a_stack_when_asked() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder()
        .stack_on_transient(true)
        .symbolicate_deadline(GENEROUS)
        .start()
        .unwrap();
    let id = ComponentId::new("early", 1);
    let (release, thread) = hang_in_named_function(&register, id.clone());
    let transient = expect_alert(&alerts, &id, AlertKind::Transient);
    let stack = transient.stack.expect("a stack on the transient alert");
    assert!(
        stack.frames.iter().any(|f| f
            .function
            .as_deref()
            .is_some_and(|n| n.contains("stuck_in_a_test_function"))),
        "{stack}"
    );
    drop(release);
    thread.join().unwrap();
}

#[test]
fn an_alert_does_not_wait_past_its_wait_for_a_stack() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder()
        .symbolicate_deadline(Duration::ZERO)
        .start()
        .unwrap();
    let id = ComponentId::new("raw", 1);
    let (release, thread) = hang_in_named_function(&register, id.clone());
    expect_alert(&alerts, &id, AlertKind::Transient);
    let permanent = expect_alert(&alerts, &id, AlertKind::Permanent);
    // It left with what was ready: nothing yet, or the unwound stack with
    // raw addresses; never after its symbols.
    match (&permanent.stack, &permanent.no_stack) {
        (None, Some(NoStack::Follows)) => {}
        (Some(stack), None) => {
            assert!(!stack.frames.is_empty());
            assert!(stack.frames.iter().all(|f| f.function.is_none()), "{stack}");
        }
        _ => panic!("{permanent}"),
    }
    // Its symbolicated stack follows, in an alert of its own that repeats it.
    let stack = common::next_alert(&alerts, "the permanent alert's stack");
    assert_eq!(
        stack.kind,
        AlertKind::Stack {
            of: HangLevel::Permanent
        },
        "{stack}"
    );
    assert_eq!(
        (stack.started_ns, stack.raised_ns, stack.time),
        (permanent.started_ns, permanent.raised_ns, permanent.time)
    );
    let frames = &stack.stack.as_ref().expect("the stack").frames;
    assert!(
        frames.iter().any(|f| f
            .function
            .as_deref()
            .is_some_and(|n| n.ends_with("stuck_in_a_test_function"))),
        "{stack}"
    );
    drop(release);
    thread.join().unwrap();
}

#[test]
fn without_stacks_the_alert_says_why() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let id = ComponentId::new("plain", 1);
    let (release, thread) = hang_in_named_function(&register, id.clone());
    expect_alert(&alerts, &id, AlertKind::Transient);
    let permanent = expect_alert(&alerts, &id, AlertKind::Permanent);
    assert!(permanent.stack.is_none());
    assert!(
        matches!(permanent.no_stack, Some(NoStack::Disabled(_))),
        "{permanent}"
    );
    drop(release);
    thread.join().unwrap();
}

#[test]
fn the_ended_alert_waits_behind_the_permanent_one() {
    // The hang ends while the permanent alert waits for its stack: the
    // alerts still leave in the order they were raised.
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = Monitor::builder().start().unwrap();
    let id = ComponentId::new("ordered", 1);
    let handle = register
        .register_component(id.clone(), Timeouts::new(ms(20), ms(40)), None)
        .unwrap();
    for round in 1..=5 {
        handle.notify_activity("short hang");
        // End the hang as soon as the monitor has raised the permanent
        // alert, typically while its stack is still being symbolicated.
        eventually(
            GENEROUS,
            &format!("the permanent alert of round {round}"),
            || control.stats().unwrap().components[0].permanent_alerts,
            |&raised| raised >= round,
        );
        handle.notify_wait();
        // A permanent alert held past its symbolication deadline leaves
        // with its raw stack and the symbolicated one follows, possibly
        // after the ended alert or in the next round: a follow-up may come
        // anywhere after the first permanent alert, never before it.
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            let alert = common::next_alert(&alerts, "an alert");
            if common::is_follow_up(&alert) {
                assert!(
                    round > 1 || kinds.contains(&AlertKind::Permanent),
                    "a follow-up before its alert: {alert}"
                );
            } else {
                kinds.push(alert.kind);
            }
        }
        assert_eq!(
            kinds,
            vec![
                AlertKind::Transient,
                AlertKind::Permanent,
                AlertKind::Ended {
                    worst: HangLevel::Permanent
                }
            ]
        );
    }
}
