//! The hub's symbolizer: one thread that names the frames of every child.
//!
//! Children started by a hub send their stacks normalized (each frame its
//! module's path and build id and an offset in it; see
//! [`hangwatch::Symbolication::Elsewhere`]), so no child opens a symbol
//! table. This thread owns one [`Symbolizer`] for all of them: its caches
//! are per module file, so N children of one binary cost one set of symbol
//! tables, read once, however many children come and go.
//!
//! It sits between the hub's loop and the parent's event stream: the loop
//! writes events to a bounded stream that this thread reads, in order; it
//! names the frames of each alert that needs it and passes every event on,
//! in the same order, to the parent's stream. A slow name lookup (a cold
//! binary, a debuginfod download) delays the events behind it, never the
//! hub's loop: both streams drop their oldest event rather than wait, and
//! the drops are counted together in
//! [`HubCounters::events_dropped`](crate::HubCounters::events_dropped).
//!
//! When a child connects, the thread reads the symbols of the child's
//! program (unless it has them already), while the child starts up: its
//! first alert is then named as fast as the later ones.
//!
//! Profiles come back from [`Hub::stop_profiling`](crate::Hub::stop_profiling)
//! through the same thread (the caller waits for them anyway), so that they
//! share the caches.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use hangwatch::stack::symbolize::Symbolizer;
use hangwatch::Profile;

use crate::event::{EventSink, HubEvent};

/// A handle on the symbolizer thread, for profiles.
#[derive(Clone)]
pub(crate) struct Names {
    profiles: Sender<(Profile, Sender<Profile>)>,
}

impl Names {
    /// Starts the thread between `raw` (the loop's events) and a new event
    /// stream of `capacity`, which it returns.
    pub(crate) fn start(
        raw: Receiver<HubEvent>,
        capacity: usize,
        dropped: Arc<AtomicU64>,
    ) -> std::io::Result<(Names, Receiver<HubEvent>)> {
        let (named, events) = EventSink::new(capacity, dropped);
        let (profiles, profile_requests) = unbounded();
        std::thread::Builder::new()
            .name("hangwatch-hub-symbols".into())
            .spawn(move || run(raw, profile_requests, named))?;
        Ok((Names { profiles }, events))
    }

    /// `profile` with its frames named; as it came if the thread is gone.
    pub(crate) fn profile(&self, profile: Profile) -> Profile {
        let (reply, answer) = bounded(1);
        let kept = profile.clone();
        match self.profiles.send((profile, reply)) {
            Ok(()) => answer.recv().unwrap_or(kept),
            Err(_) => kept,
        }
    }
}

/// Reads the symbols of child `pid`'s program while the child starts up,
/// before its first hang (the hub and its children share a machine, so the
/// child's executable is `/proc/PID/exe`). A program whose symbols are
/// already read costs a lookup in the cache.
fn warm_for(symbolizer: &mut Symbolizer, pid: u32) {
    if let Ok(program) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        // A failure shows again, per frame, as missing names.
        let _ = symbolizer.preload_file(&program);
    }
}

fn run(
    raw: Receiver<HubEvent>,
    mut profiles: Receiver<(Profile, Sender<Profile>)>,
    mut named: EventSink,
) {
    let mut symbolizer = Symbolizer::new();
    loop {
        select! {
            recv(raw) -> event => {
                let Ok(mut event) = event else { return };
                match &mut event {
                    HubEvent::Alert(child_alert) => {
                        if let Some(stack) = &mut child_alert.alert.stack {
                            symbolizer.symbolize_stack(stack);
                        }
                        named.send(event);
                    }
                    HubEvent::Connected(child) => {
                        let pid = child.pid;
                        named.send(event);
                        warm_for(&mut symbolizer, pid);
                    }
                    _ => named.send(event),
                }
            }
            recv(profiles) -> request => {
                let Ok((mut profile, reply)) = request else {
                    // Every `Hub` handle is gone; the loop's end follows.
                    profiles = crossbeam_channel::never();
                    continue;
                };
                symbolizer.symbolize_profile(&mut profile);
                let _ = reply.send(profile);
            }
        }
    }
}
