//! A hub and real child processes: alerts, control, profiling, and faults.
//!
//! The children are this test binary run again (see `common`).
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use hangwatch::{AlertKind, HangLevel, ProfilingOptions};
use hangwatch_hub::{ControlError, Hub, HubEvent};
use hangwatch_test_support::eventually;

/// Not a test: the entry point of the child processes.
#[test]
fn child_role() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        std::process::exit(run_role(&role));
    }
}

/// The kinds of `component`'s alerts, leaving out `stack` follow-ups (a
/// stack the hub named after its alert had left).
fn kinds(alerts: &[&hangwatch::Alert], component: &str) -> Vec<AlertKind> {
    alerts
        .iter()
        .filter(|a| a.component.name == component)
        .filter(|a| !matches!(a.kind, AlertKind::Stack { .. }))
        .map(|a| a.kind)
        .collect()
}

/// The frame named `function` in the stack of the permanent alert among
/// `alerts`, or in the `stack` alert that followed it.
fn permanent_frame<'a>(
    alerts: &[&'a hangwatch::Alert],
    function: &str,
) -> Option<&'a hangwatch::Frame> {
    alerts
        .iter()
        .filter(|a| {
            matches!(
                a.kind,
                AlertKind::Permanent
                    | AlertKind::Stack {
                        of: HangLevel::Permanent
                    }
            )
        })
        .filter_map(|a| a.stack.as_ref())
        .flat_map(|stack| &stack.frames)
        .find(|f| f.function.as_deref().is_some_and(|n| n.contains(function)))
}

#[test]
fn two_children_deliver_their_hangs_with_pids_names_and_stats() {
    let hub = Hub::start().unwrap();
    let mut one = hub.spawn("content-1", &mut child_command("hangs")).unwrap();
    let mut two = hub.spawn("content-2", &mut child_command("hangs")).unwrap();
    let (pid_one, pid_two) = (one.id(), two.id());

    // Each child: layout#1 transient then ended; script#1 transient,
    // permanent, ended.
    let complete = |events: &[HubEvent], pid| {
        let alerts = alerts_of(events, pid);
        kinds(&alerts, "layout").len() + kinds(&alerts, "script").len() >= 5
            && (cfg!(not(all(
                target_os = "linux",
                any(target_arch = "x86_64", target_arch = "aarch64")
            ))) || permanent_frame(&alerts, "stuck_in_a_long_task").is_some())
    };
    let events = gather(&hub, |events| {
        complete(events, pid_one) && complete(events, pid_two)
    });
    let names: Vec<(u32, &str)> = connected(&events)
        .iter()
        .map(|c| (c.pid, c.name.as_str()))
        .collect();
    assert!(names.contains(&(pid_one, "content-1")), "{names:?}");
    assert!(names.contains(&(pid_two, "content-2")), "{names:?}");
    for event in &events {
        if let HubEvent::Alert(alert) = event {
            let expected = if alert.child.pid == pid_one {
                "content-1"
            } else {
                "content-2"
            };
            assert_eq!(alert.child.name, expected, "{alert}");
        }
    }
    for pid in [pid_one, pid_two] {
        let alerts = alerts_of(&events, pid);
        assert_eq!(
            kinds(&alerts, "layout"),
            [
                AlertKind::Transient,
                AlertKind::Ended {
                    worst: HangLevel::Transient
                }
            ],
            "{alerts:#?}"
        );
        assert_eq!(
            kinds(&alerts, "script"),
            [
                AlertKind::Transient,
                AlertKind::Permanent,
                AlertKind::Ended {
                    worst: HangLevel::Permanent
                }
            ],
            "{alerts:#?}"
        );
        let ended = alerts
            .iter()
            .find(|a| {
                matches!(
                    a.kind,
                    AlertKind::Ended {
                        worst: HangLevel::Permanent
                    }
                )
            })
            .unwrap();
        assert!(ended.duration >= ms(850), "{ended}");
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        {
            // Normalized in the child (the hub told it to), named by the
            // hub (on the alert, or in a `stack` alert after it): the frame
            // still says where it came from.
            let hung = permanent_frame(&alerts, "stuck_in_a_long_task")
                .unwrap_or_else(|| panic!("{alerts:#?}"));
            assert!(
                hung.build_id.is_some() && hung.module_path.is_some() && hung.line.is_some(),
                "{hung:#?}"
            );
        }

        // Stats from the child.
        let stats = hub.stats(pid).unwrap();
        let mut components: Vec<String> =
            stats.components.iter().map(|c| c.id.to_string()).collect();
        components.sort();
        assert_eq!(components, ["layout#1", "script#1"]);
        let script = stats
            .components
            .iter()
            .find(|c| c.id.name == "script")
            .unwrap();
        assert_eq!((script.transient_alerts, script.permanent_alerts), (1, 1));
        assert_eq!(stats.alerts_sent, 5);
    }

    let reports = hub.exit_all().unwrap();
    assert_eq!(reports.len(), 2);
    for (child, report) in reports {
        assert_eq!(report.unwrap().signalled, 2, "{child}");
    }
    assert!(wait_exit(&mut one).success());
    assert!(wait_exit(&mut two).success());
    let events = gather(&hub, |events| {
        left(events, pid_one) == 1 && left(events, pid_two) == 1
    });
    // No alert for work that did not hang.
    assert!(alerts_of(&events, pid_one).is_empty(), "{events:#?}");
    assert!(alerts_of(&events, pid_two).is_empty(), "{events:#?}");
    let counters = hub.counters().unwrap();
    assert_eq!(
        (counters.connected, counters.left, counters.gone),
        (2, 2, 0)
    );
    assert_eq!(counters.alerts, 10);
    hub.shutdown().unwrap();
}

/// A child told to leave symbolication elsewhere, under a hub that does not
/// symbolicate: its frames cross unnamed but normalized, and another
/// process (this one) names them from that alone.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
fn normalized_frames_cross_unnamed_and_are_named_elsewhere() {
    use hangwatch::{Symbolication, Symbolizer};

    let hub = hangwatch_hub::HubBuilder::new()
        .symbolicate(false)
        .start()
        .unwrap();
    let mut command = child_command("hangs");
    command.env(Symbolication::ENV, "elsewhere");
    let mut child = hub.spawn("content", &mut command).unwrap();
    let pid = child.id();
    let events = gather(&hub, |events| {
        alerts_of(events, pid)
            .iter()
            .any(|a| a.kind == AlertKind::Permanent)
    });
    let permanent = alerts_of(&events, pid)
        .into_iter()
        .find(|a| a.kind == AlertKind::Permanent)
        .unwrap();
    let stack = permanent.stack.as_ref().expect("a stack");
    assert!(
        stack.frames.iter().all(|f| f.function.is_none()),
        "named in the child: {permanent}"
    );
    let exe = std::env::current_exe().unwrap();
    let own = stack
        .frames
        .iter()
        .filter(|f| f.module_path.as_deref() == exe.to_str())
        .count();
    assert!(own > 0, "no frame of the test binary: {permanent}");
    assert!(
        stack
            .frames
            .iter()
            .filter(|f| f.module_path.is_some())
            .all(|f| f.build_id.is_some() && f.module_offset.is_some()),
        "{stack:#?}"
    );
    let named = Symbolizer::new().symbolize_frames(&stack.frames);
    assert!(
        named.iter().any(|f| f
            .function
            .as_deref()
            .is_some_and(|n| n.contains("stuck_in_a_long_task"))
            && f.file
                .as_deref()
                .is_some_and(|file| file.ends_with("common/mod.rs"))),
        "{named:#?}"
    );
    hub.exit_all().unwrap();
    assert!(wait_exit(&mut child).success());
    hub.shutdown().unwrap();
}

#[test]
fn exit_is_confirmed_across_processes() {
    let hub = Hub::start().unwrap();
    let mut one = hub.spawn("idle-1", &mut child_command("idle")).unwrap();
    let mut two = hub.spawn("idle-2", &mut child_command("idle")).unwrap();
    gather(&hub, |events| connected(events).len() == 2);
    // A child connects as soon as its monitor runs; wait until its
    // components have registered too.
    for pid in [one.id(), two.id()] {
        eventually(
            GENEROUS,
            &format!("child {pid} to register its 3 components"),
            || hub.stats(pid).unwrap().components.len(),
            |&registered| registered >= 3,
        );
    }

    // One child by pid: its three exit signals ran, and it says so.
    let report = hub.exit(one.id()).unwrap();
    assert_eq!(report.signalled, 3);
    assert!(report.panicked.is_empty());
    // The child exits 0 only if every component got its signal.
    assert!(wait_exit(&mut one).success());
    gather(&hub, |events| left(events, one.id()) == 1);
    assert_eq!(hub.children().unwrap().len(), 1);

    // Then every child left: only the other one.
    let reports = hub.exit_all().unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0.pid, two.id());
    assert_eq!(reports[0].1.as_ref().unwrap().signalled, 3);
    assert!(wait_exit(&mut two).success());
    gather(&hub, |events| left(events, two.id()) == 1);

    // A child that has left cannot be asked anything.
    assert_eq!(
        hub.exit(one.id()),
        Err(ControlError::UnknownChild { pid: one.id() })
    );
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
fn profiling_across_processes_returns_one_profile_per_child() {
    let hub = Hub::start().unwrap();
    let mut one = hub.spawn("busy-1", &mut child_command("busy")).unwrap();
    let mut two = hub.spawn("busy-2", &mut child_command("busy")).unwrap();
    gather(&hub, |events| connected(events).len() == 2);

    let options = ProfilingOptions {
        rate_hz: 200,
        ..ProfilingOptions::default()
    };
    let started = hub.start_profiling_all(options).unwrap();
    assert_eq!(started.len(), 2);
    for (child, result) in &started {
        assert!(result.is_ok(), "{child}: {result:?}");
    }
    std::thread::sleep(ms(800));
    let profiles = hub.stop_profiling_all().unwrap();
    assert_eq!(profiles.len(), 2);
    let mut pids: Vec<u32> = profiles.iter().map(|(child, _)| child.pid).collect();
    pids.sort();
    let mut expected = vec![one.id(), two.id()];
    expected.sort();
    assert_eq!(pids, expected);
    for (child, profile) in profiles {
        let profile = profile.unwrap_or_else(|e| panic!("{child}: {e}"));
        assert_eq!(profile.threads.len(), 2, "{child}");
        for thread in &profile.threads {
            assert!(
                thread.samples.len() >= 10,
                "{child}: {} has {} samples",
                thread.component,
                thread.samples.len()
            );
            let named = thread.samples.iter().any(|sample| {
                profile.frames_of(sample).any(|frame| {
                    frame
                        .function
                        .as_deref()
                        .is_some_and(|f| f.contains("busy_profiled_work"))
                })
            });
            assert!(
                named,
                "{child}: no sample of {} names its work",
                thread.component
            );
        }
    }
    // Profiling is off again in each child.
    assert!(matches!(
        hub.stop_profiling(one.id()),
        Err(ControlError::Profiling { .. })
    ));

    hub.exit_all().unwrap();
    assert!(wait_exit(&mut one).success());
    assert!(wait_exit(&mut two).success());
}

#[test]
fn a_killed_child_is_reported_once_while_the_other_keeps_reporting() {
    let hub = Hub::start().unwrap();
    let mut doomed = hub.spawn("doomed", &mut child_command("stream")).unwrap();
    let mut other = hub.spawn("other", &mut child_command("stream")).unwrap();
    let (doomed_pid, other_pid) = (doomed.id(), other.id());
    gather(&hub, |events| {
        alerts_of(events, doomed_pid).len() >= 2 && alerts_of(events, other_pid).len() >= 2
    });

    doomed.kill().unwrap(); // SIGKILL, mid-stream
    doomed.wait().unwrap();
    let mut after_gone = 0;
    let events = gather(&hub, |events| {
        if gone(events, doomed_pid) == 0 {
            return false;
        }
        if let Some(HubEvent::Alert(alert)) = events.last() {
            if alert.child.pid == other_pid {
                after_gone += 1;
            }
        }
        after_gone >= 3
    });
    let more = gather_for(&hub, ms(500));
    assert_eq!(gone(&events, doomed_pid) + gone(&more, doomed_pid), 1);
    assert_eq!(gone(&events, other_pid) + gone(&more, other_pid), 0);
    let last = events
        .iter()
        .find_map(|e| match e {
            HubEvent::ProcessGone { child, last } if child.pid == doomed_pid => Some(last),
            _ => None,
        })
        .unwrap();
    assert!(last.alerts >= 2, "{last:?}");
    assert!(last.last_alert.is_some(), "{last:?}");
    assert_eq!(hub.counters().unwrap().gone, 1);

    // Requests to the dead child fail at once; the other one answers.
    let start = Instant::now();
    assert_eq!(
        hub.stats(doomed_pid).unwrap_err(),
        ControlError::UnknownChild { pid: doomed_pid }
    );
    assert!(start.elapsed() < ms(1000));
    assert_eq!(hub.stats(other_pid).unwrap().components.len(), 1);
    assert_eq!(hub.exit(other_pid).unwrap().signalled, 1);
    assert!(wait_exit(&mut other).success());
    gather(&hub, |events| left(events, other_pid) == 1);
}

#[test]
fn a_stopped_child_times_out_without_stalling_the_others() {
    let hub = Hub::builder().request_timeout(ms(700)).start().unwrap();
    let mut stopped = hub.spawn("stopped", &mut child_command("stream")).unwrap();
    let mut running = hub.spawn("running", &mut child_command("stream")).unwrap();
    let (stopped_pid, running_pid) = (stopped.id(), running.id());
    gather(&hub, |events| connected(events).len() == 2);

    signal("-STOP", stopped_pid);
    // `kill` returns once the signal is sent; each thread stops when the
    // kernel next gets to it. A request sent before the last one stopped
    // could still be answered.
    wait_stopped(stopped_pid);
    let start = Instant::now();
    assert_eq!(
        hub.stats(stopped_pid).unwrap_err(),
        ControlError::TimedOut {
            pid: stopped_pid,
            timeout: ms(700)
        }
    );
    assert!(start.elapsed() < ms(5000));
    // Meanwhile the other child answers and its alerts keep coming.
    assert!(hub.stats(running_pid).is_ok());
    gather(&hub, |events| alerts_of(events, running_pid).len() >= 3);

    signal("-CONT", stopped_pid);
    // Its late answer is dropped; a new request is answered.
    eventually(
        GENEROUS,
        "the resumed child to answer again",
        || hub.stats(stopped_pid),
        Result::is_ok,
    )
    .expect("the child answered");
    hub.exit_all().unwrap();
    assert!(wait_exit(&mut stopped).success());
    assert!(wait_exit(&mut running).success());
}

/// Waits until every thread of `pid` is stopped (state `T` in its
/// `/proc/PID/task/TID/stat`).
fn wait_stopped(pid: u32) {
    // Each thread's state, `None` where it cannot be read.
    let states = || -> Vec<Option<String>> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the child's threads");
        tasks
            .filter_map(Result::ok)
            .map(|task| {
                let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
                let end = stat.rfind(')')?;
                stat[end + 1..].split_whitespace().next().map(str::to_owned)
            })
            .collect()
    };
    eventually(
        ms(10_000),
        &format!("every thread of child {pid} to stop (state T)"),
        states,
        |states| states.iter().all(|state| state.as_deref() == Some("T")),
    );
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("the kill command");
    assert!(status.success());
}

#[test]
fn a_dead_hub_leaves_its_children_working() {
    // The hub runs in a process of its own, with one child; the child
    // writes its verdict to a file, since it outlives its parent.
    let result = scratch_file("survivor");
    let mut hub = child_command("hub")
        .env(RESULT_ENV, &result)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = hub.stdout.take().unwrap();
    let (lines, ready) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + GENEROUS;
    let child_pid: u32 = loop {
        let line = ready
            .recv_deadline(deadline)
            .expect("the hub process to say it is ready");
        // libtest may have printed the test's name on the same line.
        if let Some((_, pid)) = line.split_once("ready ") {
            break pid.trim().parse().unwrap();
        }
    };
    assert!(child_pid > 0);

    hub.kill().unwrap(); // SIGKILL: no goodbye to anyone
    hub.wait().unwrap();

    let verdict = eventually(
        GENEROUS,
        "the surviving child to write its verdict",
        || std::fs::read_to_string(&result),
        Result::is_ok,
    )
    .expect("the verdict was read");
    let _ = std::fs::remove_file(&result);
    assert!(verdict.starts_with("ok "), "{verdict}");
    eprintln!("the survivor: {verdict}");
}
