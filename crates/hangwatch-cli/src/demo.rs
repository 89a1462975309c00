//! `hangwatch demo`: three event-loop threads shaped like a browser's doing
//! jittered work, one of which hangs on purpose. The alerts are printed as
//! they come; a profiling window covers the hang; at the end the demo writes
//! the alerts, a report, a flamegraph and a Firefox Profiler profile, and
//! checks itself.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use hangwatch::stack::NoStack;
use hangwatch::{
    Alert, AlertKind, ComponentId, Control, HangLevel, Monitor, Profile, ProfilingOptions, Register,
};
use hangwatch_export::collapsed::{self, Roots};
use hangwatch_export::report::Report;
use hangwatch_export::{firefox, flamegraph, jsonl, ExportError};

use crate::output::save;

#[derive(clap::Args)]
pub struct Options {
    /// How long the event loops run, in seconds.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Seed for the jitter of the work.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where to write alerts.jsonl, report.txt, hangs.svg and profile.json.
    #[arg(long, default_value = "hangwatch-demo")]
    out: PathBuf,
}

const TRANSIENT: Duration = Duration::from_millis(150);
const PERMANENT: Duration = Duration::from_millis(1000);
/// How long the layout thread hangs.
const HANG: Duration = Duration::from_millis(1600);

/// A task for an event loop: how long its work takes, and whether it is the
/// one that hangs.
#[derive(Clone, Copy)]
enum Task {
    Work(Duration),
    Hang,
}

pub fn run(options: &Options) -> ExitCode {
    if !(options.seconds.is_finite() && options.seconds >= 2.5) {
        eprintln!(
            "hangwatch demo: --seconds must be at least 2.5 (the injected hang lasts {HANG:?})"
        );
        return ExitCode::FAILURE;
    }
    if let Err(error) = std::fs::create_dir_all(&options.out) {
        eprintln!(
            "hangwatch demo: cannot create {}: {error}",
            options.out.display()
        );
        return ExitCode::FAILURE;
    }
    let Monitor {
        register,
        alerts,
        control,
        ..
    } = match Monitor::builder()
        .warm_symbols(true)
        .symbolicate_deadline(Duration::from_secs(5))
        .start()
    {
        Ok(monitor) => monitor,
        Err(error) => {
            eprintln!("hangwatch demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "demo: script, layout and network event loops for {:.1} s; transient timeout {TRANSIENT:?}, \
         permanent {PERMANENT:?}; layout hangs once for {HANG:?}",
        options.seconds
    );
    let started = Instant::now();
    let printer = std::thread::spawn(move || print_alerts(alerts, started));

    let names = ["script", "layout", "network"];
    let mut loops = Vec::new();
    let mut inboxes = Vec::new();
    for name in names {
        let (sender, inbox) = unbounded();
        inboxes.push(sender);
        loops.push(spawn_event_loop(&register, name, inbox));
    }
    drop(register);

    // The driver: jittered tasks for every loop, and one hang for layout,
    // inside a profiling window.
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let run_for = Duration::from_secs_f64(options.seconds);
    let hang_at = Duration::from_millis(800);
    let profile_from = Duration::from_millis(400);
    let profile_until = hang_at + HANG + Duration::from_millis(400);
    let mut hung = false;
    let mut profiling = Profiling::new(control);
    while started.elapsed() < run_for {
        profiling.follow(started.elapsed(), profile_from, profile_until);
        for (i, inbox) in inboxes.iter().enumerate() {
            let task = if i == 1 && !hung && started.elapsed() >= hang_at {
                hung = true;
                Task::Hang
            } else {
                Task::Work(Duration::from_micros(rng.u64(200..=20_000)))
            };
            let _ = inbox.send(task);
        }
        std::thread::sleep(Duration::from_millis(rng.u64(10..=40)));
    }
    let profile = profiling.finish();
    drop(inboxes);
    for event_loop in loops {
        let _ = event_loop.join();
    }
    // Every handle and register is gone: the monitor ends, the alert channel
    // closes, and the printer returns what it saw.
    let seen = printer.join().unwrap_or_default();
    let written = write_outputs(&options.out, &seen, profile.as_ref());
    let checked = check(&seen);
    if written && checked {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The profiling window: started and stopped as the driver's clock passes.
struct Profiling {
    control: Control,
    on: bool,
    profile: Option<Profile>,
}

impl Profiling {
    fn new(control: Control) -> Profiling {
        Profiling {
            control,
            on: false,
            profile: None,
        }
    }

    fn follow(&mut self, now: Duration, from: Duration, until: Duration) {
        if !self.on && self.profile.is_none() && now >= from {
            match self.control.start_profiling(ProfilingOptions::default()) {
                Ok(()) => {
                    self.on = true;
                    println!(
                        "[{:>6.3} s] profiling every thread at 100 Hz",
                        now.as_secs_f64()
                    );
                }
                Err(error) => eprintln!("demo: profiling unavailable: {error}"),
            }
        } else if self.on && now >= until {
            self.stop();
            println!("[{:>6.3} s] profiling stopped", now.as_secs_f64());
        }
    }

    fn stop(&mut self) {
        self.on = false;
        match self.control.stop_profiling() {
            Ok(profile) => self.profile = Some(profile),
            Err(error) => eprintln!("demo: profiling failed: {error}"),
        }
    }

    fn finish(mut self) -> Option<Profile> {
        if self.on {
            self.stop();
        }
        self.profile
    }
}

/// Writes the four files; says where, or what went wrong.
fn write_outputs(out: &Path, alerts: &[Alert], profile: Option<&Profile>) -> bool {
    let mut saved = vec![
        save(&out.join("alerts.jsonl"), "alerts", |file| {
            jsonl::write(alerts, file)
        }),
        save(&out.join("report.txt"), "the report", |file| {
            write!(file, "{}", Report::from_alerts(alerts)).map_err(ExportError::Write)
        }),
    ];
    match profile {
        Some(profile) => {
            let stacks = collapsed::from_profile(profile, Roots::Component);
            let title = "hangwatch demo: every thread at 100 Hz around the hang";
            saved.push(save(&out.join("hangs.svg"), "the flamegraph", |file| {
                flamegraph::write(&stacks, title, file)
            }));
            saved.push(save(
                &out.join("profile.json"),
                "the Firefox profile",
                |file| {
                    firefox::from_profile("hangwatch-demo", std::process::id(), profile).write(file)
                },
            ));
        }
        None => saved.push(Err(
            "no profile was taken: hangs.svg and profile.json are missing".into(),
        )),
    }
    let mut ok = true;
    for line in saved {
        match line {
            Ok(line) => println!("demo: {line}"),
            Err(line) => {
                eprintln!("demo: {line}");
                ok = false;
            }
        }
    }
    ok
}

fn spawn_event_loop(
    register: &Register,
    name: &'static str,
    inbox: Receiver<Task>,
) -> std::thread::JoinHandle<()> {
    let register = register.clone();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let handle = match register.register_component(
                ComponentId::new(name, 1),
                TRANSIENT,
                PERMANENT,
                None,
            ) {
                Ok(handle) => handle,
                Err(error) => {
                    eprintln!("demo: {name} could not register: {error}");
                    return;
                }
            };
            for task in inbox {
                match task {
                    Task::Work(span) => {
                        let _busy = handle.activity("handle task");
                        do_work(span);
                    }
                    Task::Hang => {
                        let _busy = handle.activity("reflow");
                        reflow_stuck_on_lock();
                    }
                }
            }
        })
        .expect("spawn an event loop")
}

/// Busy work: part computing, part sleeping, like a real task.
fn do_work(span: Duration) {
    let start = Instant::now();
    while start.elapsed() < span / 2 {
        std::hint::spin_loop();
    }
    std::thread::sleep(span / 2);
}

/// The injected hang: a reflow waiting on a lock another thread holds.
#[inline(never)]
fn reflow_stuck_on_lock() {
    let lock = Arc::new(Mutex::new(()));
    let holder = {
        let lock = lock.clone();
        let (taken, is_taken) = crossbeam_channel::bounded(0);
        let holder = std::thread::spawn(move || {
            let _guard = lock.lock();
            let _ = taken.send(());
            std::thread::sleep(HANG);
        });
        let _ = is_taken.recv();
        holder
    };
    let _guard = lock.lock();
    let _ = holder.join();
}

fn print_alerts(alerts: Receiver<Alert>, started: Instant) -> Vec<Alert> {
    let mut seen = Vec::new();
    for alert in alerts {
        println!("[{:>6.3} s] {alert}", started.elapsed().as_secs_f64());
        seen.push(alert);
    }
    seen
}

/// The demo's self-check: layout raised transient, permanent and ended, in
/// that order, with a plausible duration, and its permanent alert's stack
/// names the hung function (where this platform can sample stacks); nobody
/// else raised anything.
fn check(seen: &[Alert]) -> bool {
    let layout = ComponentId::new("layout", 1);
    let kinds: Vec<AlertKind> = seen
        .iter()
        .filter(|a| a.component == layout)
        .map(|a| a.kind)
        .collect();
    let expected = [
        AlertKind::Transient,
        AlertKind::Permanent,
        AlertKind::Ended {
            worst: HangLevel::Permanent,
        },
    ];
    let others = seen.iter().filter(|a| a.component != layout).count();
    let duration = seen
        .iter()
        .find(|a| matches!(a.kind, AlertKind::Ended { .. }))
        .map(|a| a.duration);
    let duration_ok = duration.is_some_and(|d| d >= HANG.mul_f64(0.8) && d <= HANG.mul_f64(1.2));
    let permanent = seen.iter().find(|a| a.kind == AlertKind::Permanent);
    let stack_ok = permanent.is_some_and(|alert| match (&alert.stack, &alert.no_stack) {
        (Some(stack), _) => stack.frames.iter().any(|f| {
            f.function
                .as_deref()
                .is_some_and(|name| name.contains("reflow_stuck_on_lock"))
        }),
        (None, Some(NoStack::Unsupported(_))) => true,
        _ => false,
    });
    let ok = kinds == expected && others == 0 && duration_ok && stack_ok;
    println!(
        "demo: layout raised {} of 3 expected alerts (hang of {}, {} in the stack), other loops \
         raised {others}: {}",
        kinds.len(),
        duration.map_or("?".to_owned(), |d| format!("{d:.2?}")),
        if stack_ok {
            "hung function"
        } else {
            "NO hung function"
        },
        if ok { "ok" } else { "FAILED" }
    );
    ok
}
