//! A child's stream as the hub's thread reads it: bytes to [`ChildMsg`]s,
//! pieces glued back into their payloads, alerts decoded from their JSON.
//!
//! Every message a connected child sends goes through [`Inbox::take`], one
//! at a time, in the order it came. The inbox holds only the pieces of the
//! payloads under way (see [pieces](crate::protocol#pieces)); it has no
//! channel, clock or thread, so the fuzz targets and the hostile-input tests
//! feed it bytes directly, through the same code the hub runs.
//!
//! Nothing here trusts the bytes: whatever they are, `take` returns a
//! [`Delivery`], [`Delivery::Undecodable`] with the reason when they are
//! not what the protocol allows, and never panics.

use std::panic::{catch_unwind, AssertUnwindSafe};

use hangwatch::Alert;
use ipc_channel::ipc::IpcMessage;

use crate::protocol::{ChildMsg, Reply, MAX_PAYLOAD_BYTES};

/// The payloads under way on one child's stream.
#[derive(Default)]
pub struct Inbox {
    /// Pieces of the next alert.
    alert_pieces: Assembly,
    /// Pieces of the next reply, with its request's number.
    reply_pieces: Option<(u64, Assembly)>,
}

/// What one message from a child amounts to.
#[derive(Debug)]
pub enum Delivery {
    /// A piece of a payload, kept until the message that completes it.
    Piece,
    /// A whole alert.
    Alert(Alert),
    /// A whole answer to the request numbered `id`; its JSON payload, if any,
    /// is decoded by the caller that asked for it.
    Reply {
        /// The number of the request, as the child gave it.
        id: u64,
        /// The answer.
        reply: Reply,
    },
    /// The child is ending normally.
    Goodbye,
    /// Not a message of this protocol, one a stream may not carry here, or a
    /// payload too long or not what it claims to be: why. It is dropped.
    Undecodable(String),
}

impl Inbox {
    /// Takes in the next message from the child.
    pub fn take(&mut self, message: IpcMessage) -> Delivery {
        let message = match decode(message) {
            Ok(message) => message,
            Err(detail) => return Delivery::Undecodable(detail),
        };
        match message {
            ChildMsg::AlertPiece(piece) => {
                self.alert_pieces.add(&piece);
                Delivery::Piece
            }
            ChildMsg::Alert(mut json) => {
                if !self.alert_pieces.finish(json.text_mut()) {
                    return Delivery::Undecodable(too_long("an alert"));
                }
                match json.decode() {
                    Ok(alert) => Delivery::Alert(alert),
                    Err(error) => {
                        Delivery::Undecodable(format!("an alert that is not one: {error}"))
                    }
                }
            }
            ChildMsg::ReplyPiece { id, text } => {
                let pieces = match &mut self.reply_pieces {
                    Some((of, pieces)) if *of == id => pieces,
                    // Pieces of an earlier reply that never came are dropped.
                    other => &mut other.insert((id, Assembly::default())).1,
                };
                pieces.add(&text);
                Delivery::Piece
            }
            ChildMsg::Reply { id, mut reply } => {
                if let Some((of, mut pieces)) = self.reply_pieces.take() {
                    let whole = match reply.payload_mut() {
                        Some(payload) if of == id => pieces.finish(payload),
                        _ => true,
                    };
                    if !whole {
                        return Delivery::Undecodable(too_long("a reply"));
                    }
                }
                Delivery::Reply { id, reply }
            }
            ChildMsg::Goodbye => Delivery::Goodbye,
            ChildMsg::Hello(_) | ChildMsg::Withdrawn => {
                Delivery::Undecodable("a handshake message in the middle of a stream".to_owned())
            }
        }
    }
}

/// A JSON payload being glued back together from its pieces.
#[derive(Default)]
struct Assembly {
    text: String,
    /// It grew past the limit: its pieces are dropped, and so is its
    /// message.
    overflowed: bool,
}

impl Assembly {
    /// Adds a piece, unless the payload has grown too long.
    fn add(&mut self, piece: &str) {
        if self.overflowed || self.text.len() + piece.len() > MAX_PAYLOAD_BYTES {
            self.overflowed = true;
            self.text = String::new();
        } else {
            self.text.push_str(piece);
        }
    }

    /// Puts the pieces in front of the last one, and starts afresh. False if
    /// the payload overflowed, and its message is to be dropped.
    fn finish(&mut self, last: &mut String) -> bool {
        let Assembly {
            mut text,
            overflowed,
        } = std::mem::take(self);
        if overflowed || text.len() + last.len() > MAX_PAYLOAD_BYTES {
            return false;
        }
        if !text.is_empty() {
            text.push_str(last);
            *last = text;
        }
        true
    }
}

fn too_long(what: &str) -> String {
    format!("{what} longer than {MAX_PAYLOAD_BYTES} bytes; dropped")
}

/// A child's message, or why it is not one. Never panics: ipc-channel
/// 0.23 asserts (in debug builds) when a message carries file descriptors
/// nobody took, which a hostile peer could arrange; that is caught here and
/// reported like any other undecodable message.
fn decode(message: IpcMessage) -> Result<ChildMsg, String> {
    match catch_unwind(AssertUnwindSafe(move || message.to::<ChildMsg>())) {
        Ok(Ok(message)) => Ok(message),
        Ok(Err(error)) => Err(format!("not a message of this protocol ({error:?})")),
        Err(_) => Err(
            "ipc-channel failed on it: it carried file descriptors the protocol has \
                       no place for"
                .to_owned(),
        ),
    }
}
