//! Many processes, one hub: hangwatch alerts and control across processes,
//! over [ipc-channel](https://docs.rs/ipc-channel).
//!
//! A program made of several processes (a browser's content processes, a
//! server's workers) runs an ordinary [`hangwatch::Monitor`] in each child
//! and one [`Hub`] in the parent. Each child's [`Bridge`] forwards its
//! monitor's alerts to the hub and carries the hub's control requests to
//! its monitor. The hub gives out every child's alerts, tagged with the
//! child's pid and name, on one receiver, in the order it got them, and
//! tells when a child dies.
//!
//! It follows the pattern of the monitor itself, *share your sender, keep
//! your receiver*: the hub keeps the receiving half of every child's stream
//! and serves them all from one plain loop over an `IpcReceiverSet`; each
//! child keeps the receiving half of its control channel.
//!
//! # The parent
//!
//! ```no_run
//! use std::process::Command;
//! use hangwatch_hub::{Hub, HubEvent};
//!
//! let hub = Hub::start()?;
//! let mut child = hub.spawn("content-1", &mut Command::new("./content-process"))?;
//! for event in hub.events() {
//!     match event {
//!         HubEvent::Alert(alert) => eprintln!("{alert}"),
//!         HubEvent::ProcessGone { child, last } => {
//!             eprintln!("{child} died; its last alert: {:?}", last.last_alert);
//!         }
//!         HubEvent::Left { .. } => break,
//!         _ => {}
//!     }
//! }
//! child.wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Control requests name a child by pid: [`Hub::exit`] (exit signals, with
//! the [`ExitReport`](hangwatch::ExitReport) as confirmation),
//! [`Hub::stats`], [`Hub::start_profiling`] and [`Hub::stop_profiling`]
//! (the [`Profile`](hangwatch::Profile) comes back), and the same on every
//! child at once ([`Hub::exit_all`], ...). Each waits at most the hub's
//! request timeout: a child that is gone or stuck fails the call.
//!
//! # The child
//!
//! ```no_run
//! use hangwatch::Monitor;
//! use hangwatch_hub::Bridge;
//!
//! let Monitor { register, alerts, control, thread, .. } = Monitor::builder().start()?;
//! // Started by a hub (HANGWATCH_HUB is set)? Then report to it.
//! let bridge = Bridge::connect_from_env(alerts, control.clone()).ok();
//! // ... register components with `register`, run them ...
//! # drop(register);
//! thread.join().ok();
//! if let Some(bridge) = bridge {
//!     bridge.close(); // goodbye: the hub reports that this child left
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Symbolication
//!
//! A child's stacks cross *normalized*: each frame is its module's path and
//! build id and an offset in the module, and the hub names them, on a
//! thread of its own, with one symbolizer for every child
//! ([`HubBuilder::symbolicate`], on by default). Symbol tables, which for a
//! large binary with debug info are hundreds of megabytes, are then read
//! once for all the children of one binary, in the hub, rather than once per
//! child; and a child's first alert is not held while its own tables load.
//! The hub reads a child's program's symbols as the child connects. Children
//! the hub starts get `HANGWATCH_SYMBOLICATION=elsewhere`, which is the
//! default of their monitor's builder (see
//! [`hangwatch::Symbolication`]); a child that names its own frames
//! ([`Builder::symbolication`](hangwatch::Builder::symbolication)) sends
//! them named, and the hub leaves named frames as they are. Debug files are
//! found beside the modules, under `/usr/lib/debug` and, with this crate's
//! `debuginfod` feature, from the debuginfod servers of `DEBUGINFOD_URLS`.
//!
//! # Faults
//!
//! | fault | noticed by | what happens |
//! |---|---|---|
//! | a child dies (SIGKILL, crash) | the hub's select: the child's stream closes with no goodbye | one [`HubEvent::ProcessGone`] with the child's [`LastState`]; its pending requests fail with [`ControlError::ChildGone`]; the hub goes on with the others |
//! | a child stops (SIGSTOP, hung bridge) | the caller's timeout | requests to it fail with [`ControlError::TimedOut`]; only that child's link thread waits on it |
//! | the hub dies | the child's bridge: a send fails, or its control channel closes | [`Bridge::hub_connected`] turns false, the bridge stops sending; the child's monitor and components go on untouched |
//! | a peer sends bytes that do not decode | the receiver's decode | [`HubEvent::Undecodable`] (and a counter) on the hub, a counter on the child; the message is dropped, never a panic |
//! | an invited child never connects | the hub's connect timeout | [`HubEvent::NeverConnected`]; the invitation is withdrawn |
//! | the parent stops reading events | the event stream is full | the oldest event is dropped and counted |
//!
//! The protocol itself, message by message, is in [`protocol`].
//!
//! # Platforms
//!
//! ipc-channel carries the messages: on Linux (and FreeBSD, OpenBSD,
//! illumos) over unix `SOCK_SEQPACKET` sockets, with shared memory in memfd
//! regions; on macOS over Mach ports; on Windows over named pipes. On
//! Android and iOS, and with its `force-inprocess` feature, ipc-channel
//! only works within one process, so a hub cannot reach another process
//! there. This crate is developed and tested on Linux x86-64; stacks and
//! profiles come from hangwatch's sampler, which is Linux-only for now.
//!
//! # Trust, and the limits of ipc-channel
//!
//! A child's `pid` and program are what it says about itself; a hub trusts
//! its children that far (they are processes it started). It does not trust
//! their bytes: a message that does not decode is reported and dropped,
//! never a panic, and no message carries a channel handle (whose index
//! ipc-channel would look up unchecked). What lies below ipc-channel's API is
//! out of this crate's reach:
//!
//! - A message that carries file descriptors the protocol has no place for
//!   trips an assertion in debug builds of ipc-channel 0.23
//!   (servo/servo#33738). The hub catches one such panic, but two in one
//!   message abort the process; this workspace builds ipc-channel without
//!   debug assertions, and a program that embeds a hub should too:
//!   `[profile.dev.package.ipc-channel] debug-assertions = false`. Without
//!   the assertion the descriptors are left open.
//! - A peer that writes to the socket without ipc-channel (a forged
//!   fragment header) can make ipc-channel's receive panic or allocate what
//!   the header claims.
//! - ipc-channel leaks a file descriptor when `connect` fails: a child that
//!   tries a stale invitation, or a hub withdrawing an invitation already
//!   used.
//! - Sends to a peer that is gone fail with `EPIPE`, an error because Rust
//!   programs ignore `SIGPIPE`; a program that restores its default action
//!   is killed by it instead.

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod child;
mod error;
mod event;
mod hub;
pub mod protocol;

pub use crate::child::{Bridge, BridgeBuilder, BridgeCounters};
pub use crate::error::{ConnectError, ControlError, HubError, HubGone};
pub use crate::event::{ChildAlert, ChildInfo, HubCounters, HubEvent, LastState};
pub use crate::hub::{Answers, Hub, HubBuilder, Invitation};
pub use crate::protocol::{HUB_ENV, PROTOCOL_VERSION};

/// Not API: for hangwatch-hub's own tests and the fuzz targets (feature
/// `test-util`).
///
/// The hub's decoding of a child's stream, which they feed bytes as a child
/// would send them (`ipc_channel::ipc::IpcMessage`s, from an ipc-channel of
/// the version this crate uses), through the same code the hub runs. It
/// follows no semver.
#[cfg(feature = "test-util")]
pub mod test_util {
    pub use crate::hub::{Delivery, Inbox};
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_handles_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<crate::Hub>();
        shareable::<crate::Bridge>();
        shareable::<crate::HubEvent>();
    }
}
