//! The `hub_child_bytes` target: bytes a child sends on its stream, decoded
//! by the hub's [`Inbox`] message by message (postcard envelopes, pieces glued
//! back, JSON payloads), then what the hub's caller makes of the payloads.
//!
//! # Input
//!
//! A sequence of messages, each a 2-byte little-endian length followed by
//! that many bytes (fewer if the input ends first): the bytes of one
//! ipc-channel message, as [`frame`] lays them out. A last single byte is
//! left out.

use hangwatch::{Profile, Stats};
use hangwatch_export::collapsed::{self, Prefix};
use hangwatch_export::{firefox, trace_event};
use hangwatch_hub::protocol::Reply;
use hangwatch_hub::test_util::{Delivery, Inbox};
use ipc_channel::ipc::IpcMessage;

use crate::round_trip::alerts_read_back;

/// Feeds each message of `data` to one [`Inbox`], as the hub's thread does
/// for one child, and asserts:
///
/// - an undecodable message says why;
/// - a delivered alert is written as JSON lines and read back unchanged
///   (what the demo does with a child's alerts before `hangwatch report`);
/// - a delivered stats or profile payload decodes or fails without a panic,
///   and a profile is exported (collapsed stacks of the whole window and of
///   its hangs, Firefox profile, trace) as the demo exports it.
pub fn check(data: &[u8]) {
    let mut inbox = Inbox::default();
    for message in messages(data) {
        match inbox.take(IpcMessage::from_data(message.to_vec())) {
            Delivery::Undecodable(detail) => assert!(!detail.is_empty()),
            Delivery::Alert(alert) => alerts_read_back(&[alert]),
            Delivery::Reply { reply, .. } => payload(&reply),
            Delivery::Piece | Delivery::Goodbye => {}
        }
    }
}

fn payload(reply: &Reply) {
    match reply {
        Reply::Stats(Ok(json)) => {
            let _: Result<Stats, _> = json.decode();
        }
        Reply::StopProfiling(Ok(json)) => {
            if let Ok(profile) = json.decode() {
                export(&profile);
            }
        }
        _ => {}
    }
}

fn export(profile: &Profile) {
    collapsed::from_profile(profile, Prefix::Process("fuzz"));
    collapsed::from_profile_hangs(profile, Prefix::Component);
    firefox::Builder::new("fuzz")
        .profile("child", 1, profile)
        .build()
        .to_json()
        .expect("a profile encodes");
    trace_event::from_profile("child", 1, profile)
        .to_json()
        .expect("a trace encodes");
}

/// The messages of a fuzz input (see the [module docs](self)).
pub fn messages(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (length, rest) = data.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
        let (message, rest) = rest.split_at(length);
        data = rest;
        Some(message)
    })
}

/// One fuzz input of `messages`, each the bytes of one ipc-channel message
/// (at most 65,535 bytes).
pub fn frame(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut input = Vec::new();
    for message in messages {
        let length = u16::try_from(message.len()).expect("a message of at most 65,535 bytes");
        input.extend_from_slice(&length.to_le_bytes());
        input.extend_from_slice(message);
    }
    input
}
