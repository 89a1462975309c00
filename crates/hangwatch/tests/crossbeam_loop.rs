//! The crossbeam integration (feature `crossbeam`): a monitored loop raises
//! alerts for a message it hangs on, named after that message, and none
//! while it waits for messages; the same through `select!`, `recv_timeout`
//! and a fixed annotation; a loop that ends leaves its component waiting.

mod common;

use std::thread::JoinHandle;
use std::time::Duration;

use common::{expect_alert, expect_silence, ms};
use crossbeam_channel::{select, unbounded, Receiver};
use hangwatch::{AlertKind, Annotation, ComponentId, HangLevel, Monitor, Register, Timeouts};

/// Runs `body` on a thread registered as `id` (transient 50 ms, permanent 5 s).
fn component(
    register: &Register,
    id: &ComponentId,
    body: impl FnOnce(&hangwatch::Handle) + Send + 'static,
) -> JoinHandle<()> {
    let register = register.clone();
    let id = id.clone();
    std::thread::spawn(move || {
        let handle = register
            .register_component(id, Timeouts::new(ms(50), Duration::from_secs(5)), None)
            .expect("registers");
        body(&handle);
    })
}

enum Job {
    Quick,
    Slow(Duration),
}

fn job_label(job: &Job) -> Annotation {
    match job {
        Job::Quick => Annotation::new("quick job"),
        Job::Slow(_) => Annotation::new("slow job"),
    }
}

fn run(job: Job) {
    match job {
        Job::Quick => {}
        Job::Slow(took) => std::thread::sleep(took),
    }
}

#[test]
fn a_hang_inside_the_loop_is_named_after_its_message_and_waiting_is_not_a_hang() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let id = ComponentId::new("jobs", 1);
    let (jobs, inbox) = unbounded();
    let worker = component(&register, &id, move |handle| {
        for job in handle.event_loop(job_label).iter(&inbox) {
            run(job);
        }
    });

    // Quick jobs, then the loop blocks on an empty channel for longer than
    // the transient timeout: no alert.
    for _ in 0..20 {
        jobs.send(Job::Quick).unwrap();
    }
    expect_silence(&alerts, ms(200));

    // A slow job: the activity lasts while it is handled.
    jobs.send(Job::Slow(ms(200))).unwrap();
    let transient = expect_alert(&alerts, &id, AlertKind::Transient);
    assert_eq!(transient.annotation.as_deref(), Some("slow job"));
    let ended = expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Transient,
        },
    );
    // At least the transient timeout: a pause of the whole process (see
    // the crate docs) would not count toward it.
    assert!(ended.duration >= ms(50), "{ended}");
    assert_eq!(ended.annotation.as_deref(), Some("slow job"));

    // Back to waiting: quiet again, and the loop ends with its channel.
    expect_silence(&alerts, ms(150));
    drop(jobs);
    worker.join().unwrap();
}

#[test]
fn select_recv_timeout_and_a_fixed_annotation_are_monitored_too() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();

    // select! over two channels, annotated from the event it returned.
    enum Event {
        Input(Duration),
        Tick,
        Closed,
    }
    let id = ComponentId::new("select", 1);
    let (input, inputs) = unbounded::<Duration>();
    let (tick, ticks) = unbounded::<()>();
    let selecting = component(&register, &id, move |handle| {
        let events = handle.event_loop(|event: &Event| match event {
            Event::Input(_) => "input",
            Event::Tick => "tick",
            Event::Closed => "closing",
        });
        loop {
            let event = events.wait(|| {
                select! {
                    recv(inputs) -> took => took.map_or(Event::Closed, Event::Input),
                    recv(ticks) -> t => t.map_or(Event::Closed, |()| Event::Tick),
                }
            });
            match event {
                Event::Input(took) => std::thread::sleep(took),
                Event::Tick => {}
                Event::Closed => break,
            }
        }
    });
    tick.send(()).unwrap();
    input.send(ms(150)).unwrap();
    let transient = expect_alert(&alerts, &id, AlertKind::Transient);
    assert_eq!(transient.annotation.as_deref(), Some("input"));
    assert!(matches!(
        expect_alert(
            &alerts,
            &id,
            AlertKind::Ended {
                worst: HangLevel::Transient
            }
        )
        .kind,
        AlertKind::Ended { .. }
    ));
    drop((input, tick));
    selecting.join().unwrap();

    // recv_timeout with a fixed annotation: the time-outs leave the loop
    // waiting, so idling through several of them raises nothing.
    let id = ComponentId::new("timeouts", 1);
    let (work, inbox) = unbounded::<Duration>();
    let timing_out = component(&register, &id, move |handle| {
        let events = handle.event_loop("fixed label");
        let mut idle_turns = 0;
        loop {
            match events.recv_timeout(&inbox, ms(30)) {
                Ok(took) => std::thread::sleep(took),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => idle_turns += 1,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        assert!(idle_turns > 0);
    });
    expect_silence(&alerts, ms(200));
    work.send(ms(150)).unwrap();
    let transient = expect_alert(&alerts, &id, AlertKind::Transient);
    assert_eq!(transient.annotation.as_deref(), Some("fixed label"));
    expect_alert(
        &alerts,
        &id,
        AlertKind::Ended {
            worst: HangLevel::Transient,
        },
    );
    drop(work);
    timing_out.join().unwrap();
}

#[test]
fn a_loop_that_breaks_out_leaves_its_component_waiting() {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().stacks(false).start().unwrap();
    let id = ComponentId::new("breaks", 1);
    let (sender, inbox): (_, Receiver<u32>) = unbounded();
    let (done, finished) = unbounded();
    let worker = component(&register, &id, move |handle| {
        for n in handle.event_loop("count").iter(&inbox) {
            if n == 3 {
                break; // mid-activity: dropping the event loop ends it
            }
        }
        // Not in the loop any more, and not hung: no alert for this.
        std::thread::sleep(ms(200));
        done.send(()).unwrap();
    });
    for n in 0..5 {
        sender.send(n).unwrap();
    }
    finished.recv_timeout(common::GENEROUS).unwrap();
    expect_silence(&alerts, ms(50));
    worker.join().unwrap();
}
