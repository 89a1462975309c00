//! A monitored crossbeam event loop: the one-line change, and a hang inside
//! the loop.
//!
//! A "layout" thread runs a loop over a crossbeam channel. The only line
//! that monitoring changes is the loop's header:
//!
//! ```text
//! for msg in &inbox {                                           // before
//! for msg in handle.event_loop(Msg::annotation).iter(&inbox) {  // after
//! ```
//!
//! The main thread sends it a few quick messages and one reflow that takes
//! 700 ms, past the transient (100 ms) and permanent (400 ms) timeouts, and
//! prints the alerts as they come: transient, permanent (with the layout
//! thread's stack, stuck in `slow_reflow`), and ended.
//!
//! Run it with `cargo run -p hangwatch --example crossbeam_loop --features crossbeam`.
//! It costs what the loop costs plus one notify pair per message.

use std::time::Duration;

use crossbeam_channel::unbounded;
use hangwatch::{AlertKind, Annotation, ComponentId, Monitor, Timeouts};

/// What the layout loop is asked to do.
enum Msg {
    Paint,
    Reflow { took: Duration },
}

impl Msg {
    /// The annotation of the activity that handles this message.
    fn annotation(&self) -> Annotation {
        match self {
            Msg::Paint => Annotation::new("paint"),
            Msg::Reflow { .. } => Annotation::new("reflow"),
        }
    }
}

#[inline(never)]
fn slow_reflow(took: Duration) {
    std::thread::sleep(took);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start()?;

    let (sender, inbox) = unbounded();
    // The monitor runs while a register or a handle lives: keep this one
    // until the alerts are read, since the permanent alert may still be
    // waiting for its stack's symbols when the layout thread ends.
    let layout_register = register.clone();
    let layout = std::thread::Builder::new().name("layout".into()).spawn(
        move || -> Result<(), hangwatch::RegisterError> {
            let handle = layout_register.register_component(
                ComponentId::new("layout", 1),
                Timeouts::new(Duration::from_millis(100), Duration::from_millis(400)),
                None,
            )?;
            for msg in handle.event_loop(Msg::annotation).iter(&inbox) {
                match msg {
                    Msg::Paint => std::thread::sleep(Duration::from_millis(2)),
                    Msg::Reflow { took } => slow_reflow(took),
                }
            }
            Ok(())
        },
    )?;

    for _ in 0..3 {
        sender.send(Msg::Paint)?;
    }
    sender.send(Msg::Reflow {
        took: Duration::from_millis(700),
    })?;
    sender.send(Msg::Paint)?;
    drop(sender);

    let mut ended = false;
    while !ended {
        let alert = alerts.recv_timeout(Duration::from_secs(10))?;
        println!("{alert}");
        ended = matches!(alert.kind, AlertKind::Ended { .. });
    }
    layout.join().map_err(|_| "the layout thread panicked")??;
    drop(register);
    Ok(())
}
