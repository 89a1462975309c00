//! Hang alerts in the program's logs: with the `tracing` feature on, every
//! alert is also a `tracing` event, so installing a subscriber is all it
//! takes.
//!
//! ```text
//! cargo run -p hangwatch --example tracing_log --features tracing
//! ```
//!
//! A "parser" thread hangs once for 600 ms (transient timeout 100 ms,
//! permanent 300 ms); `tracing_subscriber::fmt` prints the events, one line
//! each, at WARN (transient), ERROR (permanent, with the top frame of the
//! program's own code: `tracing_log::parse_a_huge_document`) and INFO
//! (ended), with their fields:
//!
//! ```text
//! WARN hangwatch: transient hang component=parser#1 kind="transient" level="transient" annotation="parse" duration_ms=100.1 thread="parser"
//! ERROR hangwatch: permanent hang component=parser#1 kind="permanent" ... top_frame="tracing_log::parse_a_huge_document"
//! INFO hangwatch: hang ended component=parser#1 kind="ended" level="permanent" annotation="parse" duration_ms=600.4 thread="parser"
//! ```
//!
//! The events are emitted on the monitor's thread, one per alert; the
//! components pay nothing for them.

use std::time::Duration;

use hangwatch::{AlertKind, ComponentId, Monitor, Timeouts};

#[inline(never)]
fn parse_a_huge_document() {
    std::thread::sleep(Duration::from_millis(600));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The subscriber: the global default, since the events come from the
    // monitor's own thread.
    tracing_subscriber::fmt().with_ansi(false).init();

    let Monitor {
        register, alerts, ..
    } = Monitor::builder().start()?;
    let parser_register = register.clone();
    let parser = std::thread::Builder::new().name("parser".into()).spawn(
        move || -> Result<(), hangwatch::RegisterError> {
            let handle = parser_register.register_component(
                ComponentId::new("parser", 1),
                Timeouts::new(Duration::from_millis(100), Duration::from_millis(300)),
                None,
            )?;
            let _busy = handle.activity("parse");
            parse_a_huge_document();
            Ok(())
        },
    )?;
    parser.join().map_err(|_| "the parser thread panicked")??;

    // The alerts still arrive on the channel too; here they only tell us
    // when we have seen them all.
    while !matches!(
        alerts.recv_timeout(Duration::from_secs(10))?.kind,
        AlertKind::Ended { .. }
    ) {}
    drop(register);
    Ok(())
}
