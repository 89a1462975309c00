//! Every message that crosses the process boundary, and how it is encoded.
//!
//! # Channels
//!
//! A child and its hub share two ipc-channel channels. Each side keeps the
//! receiving half of one and holds the sending half of the other:
//!
//! | channel | sender (who writes) | receiver (who reads) | messages |
//! |---|---|---|---|
//! | the child's stream | the child's bridge (its alert thread and its control thread) | the hub's thread, in its [`IpcReceiverSet`](ipc_channel::ipc::IpcReceiverSet) | [`ChildMsg`] |
//! | the child's control channel | the hub (one writer thread per child) | the child's control thread | [`HubMsg`] |
//!
//! # Handshake
//!
//! 1. The hub opens an `IpcOneShotServer<ChildMsg>` per child it invites and
//!    hands its name to the child in the [`HUB_ENV`] environment variable
//!    (or however the program likes).
//! 2. The child connects to it, opens an `IpcOneShotServer<HubMsg>` of its
//!    own, and sends [`ChildMsg::Hello`] with its pid, its program's name and
//!    that server's name. The channel the child connected through *is* the
//!    child's stream from then on: the hub's `accept` returns its receiver.
//! 3. The hub checks [`Hello::protocol`], connects to the child's server and
//!    sends [`HubMsg::Welcome`]. That channel is the child's control channel.
//!
//! No channel handle ever travels inside a message: each side connects to a
//! server by name. So no bytes a peer sends can make ipc-channel look up a
//! file descriptor that is not there (a malformed handle index panics inside
//! ipc-channel 0.23), and decoding a message can only fail with an error.
//!
//! # Requests
//!
//! The hub sends [`HubMsg::Request`] with a number of its choosing; the
//! child's control thread performs it on its monitor's
//! [`Control`](hangwatch::Control) and answers with [`ChildMsg::Reply`]
//! carrying the same number. A child answers requests one at a time, in the
//! order they came. The hub may give up on a request (it times out); a late
//! reply is then dropped.
//!
//! # Ending
//!
//! A child that ends normally (its monitor ended, or it closed its bridge)
//! sends [`ChildMsg::Goodbye`] last on its alert thread. The hub then stops
//! writing to the child, which ends the child's control thread once it has
//! answered what it was asked; when every sender of the stream is closed the
//! hub reports that the child left. A stream that closes with no goodbye is
//! a process that died: the hub reports it as gone.
//!
//! # Pieces
//!
//! ipc-channel on Linux sends a message larger than the socket buffer in
//! fragments, and its receiver reads every fragment after the first one
//! *blocking*. A child stopped in the middle of sending a large profile
//! would then hold up the hub's thread, and every other child with it. So
//! no message a child sends is large: a JSON payload longer than
//! [`PIECE_BYTES`] is cut into pieces sent ahead of it
//! ([`ChildMsg::AlertPiece`], [`ChildMsg::ReplyPiece`]), and the message
//! itself carries the last piece. Each thread of the child sends its pieces
//! and their message back to back, and alerts and replies have pieces of
//! their own kind, so the two threads' messages can interleave freely. The
//! hub glues the pieces back together, up to [`MAX_PAYLOAD_BYTES`] per
//! payload; past that it reports the payload as undecodable and drops it.
//!
//! # Encoding
//!
//! ipc-channel encodes messages with postcard, which is not self-describing:
//! it cannot decode serde's flattened fields or internally tagged enums,
//! which hangwatch's [`Alert`], [`Stats`] and [`Profile`] use for their
//! stable JSON form. Those cross as that JSON text ([`Json`]) inside the
//! postcard envelope; everything else here is plain data, hangwatch's
//! [`ProfilingOptions`] and [`ExitReport`] among it. Plain data has no field
//! names on the wire, so a field hangwatch adds to those two changes the
//! protocol: a test holds their bytes at this [`PROTOCOL_VERSION`]. A message that does
//! not decode, at either level, is an error the receiver reports and drops.
//!
//! # Invariants
//!
//! - No message type here holds an ipc-channel handle (see the handshake).
//! - [`Hello`] is the first message on a stream, [`ChildMsg::Goodbye`] the
//!   last one the alert thread sends; [`HubMsg::Welcome`] is the first
//!   message on a control channel.
//! - Every reply's number is one the hub sent; the hub ignores others.
//! - No message a child sends carries more than [`PIECE_BYTES`] of JSON;
//!   a piece is followed, from the same thread, by more pieces of the same
//!   payload and then by the message that completes it.
//! - Changing any type here, in shape or meaning, bumps [`PROTOCOL_VERSION`].

use hangwatch::{Alert, ExitReport, Profile, ProfilingError, ProfilingOptions, Stats};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// The version of this protocol. A hub turns away a child that speaks
/// another one.
pub const PROTOCOL_VERSION: u32 = 2;

/// The environment variable that carries the hub's server name to a child.
pub const HUB_ENV: &str = "HANGWATCH_HUB";

/// The longest piece of a JSON payload sent in one message, in bytes: well
/// under the smallest socket buffer ipc-channel meets on Linux by default
/// (208 KiB), so that every message is read in one go.
pub const PIECE_BYTES: usize = 32 * 1024;

/// The longest JSON payload, in bytes, a hub glues back together from
/// pieces.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Cuts `text` into pieces of at most [`PIECE_BYTES`] (on character
/// boundaries): the pieces to send ahead, and the last piece.
pub fn cut_into_pieces(mut text: String) -> (Vec<String>, String) {
    let mut pieces = Vec::new();
    while text.len() > PIECE_BYTES {
        let mut end = PIECE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let rest = text.split_off(end);
        pieces.push(std::mem::replace(&mut text, rest));
    }
    (pieces, text)
}

/// What a child sends the hub, on the child's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChildMsg {
    /// The first message: who the child is and where to reach it.
    Hello(Hello),
    /// A piece of the JSON text of the next [`ChildMsg::Alert`], which
    /// carries the last piece. See [pieces](self#pieces).
    AlertPiece(String),
    /// An alert raised by the child's monitor, its stack (if any) as the
    /// child's monitor gave it: named, or normalized for the hub to name.
    Alert(Json<Alert>),
    /// A piece of the JSON payload of the next [`ChildMsg::Reply`] numbered
    /// `id`, which carries the last piece. See [pieces](self#pieces).
    ReplyPiece {
        /// The number of the request.
        id: u64,
        /// The piece.
        text: String,
    },
    /// The answer to the request numbered `id`.
    Reply {
        /// The number of the request, as the hub sent it.
        id: u64,
        /// The answer.
        reply: Reply,
    },
    /// The child is ending normally; nothing more comes from its alert
    /// thread.
    Goodbye,
    /// Sent by a hub to its own one-shot server, to stop waiting for a child
    /// that never came. A child never sends it.
    Withdrawn,
}

/// Who a child is, and where the hub can reach its control thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol the child speaks: [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The child's process id.
    pub pid: u32,
    /// The child's program: its executable's file name.
    pub program: String,
    /// The name of the child's `IpcOneShotServer<HubMsg>`.
    pub control: String,
}

/// What the hub sends a child, on the child's control channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HubMsg {
    /// The first message: the hub has taken the child on.
    Welcome {
        /// The protocol the hub speaks.
        protocol: u32,
    },
    /// Something for the child's monitor to do.
    Request {
        /// A number the reply will carry.
        id: u64,
        /// What to do.
        request: Request,
    },
}

/// A request to a child's monitor: one method of its
/// [`Control`](hangwatch::Control).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// [`Control::exit`](hangwatch::Control::exit).
    Exit,
    /// [`Control::stats`](hangwatch::Control::stats).
    Stats,
    /// [`Control::set_enabled`](hangwatch::Control::set_enabled).
    SetEnabled(bool),
    /// [`Control::start_profiling`](hangwatch::Control::start_profiling).
    StartProfiling(ProfilingOptions),
    /// [`Control::stop_profiling`](hangwatch::Control::stop_profiling).
    StopProfiling,
}

/// A child's answer to a [`Request`], variant for variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Request::Exit`].
    Exit(Result<ExitReport, RemoteError>),
    /// To [`Request::Stats`].
    Stats(Result<Json<Stats>, RemoteError>),
    /// To [`Request::SetEnabled`].
    SetEnabled(Result<(), RemoteError>),
    /// To [`Request::StartProfiling`].
    StartProfiling(Result<(), RemoteError>),
    /// To [`Request::StopProfiling`].
    StopProfiling(Result<Json<Profile>, RemoteError>),
}

impl Reply {
    /// The JSON payload of a successful answer, if it has one.
    pub fn payload_mut(&mut self) -> Option<&mut String> {
        match self {
            Reply::Stats(Ok(json)) => Some(&mut json.text),
            Reply::StopProfiling(Ok(json)) => Some(&mut json.text),
            _ => None,
        }
    }
}

/// Why a child's monitor could not do what it was asked: hangwatch's
/// [`MonitorGone`](hangwatch::MonitorGone) and [`ProfilingError`], as plain
/// data, and a payload the child could not encode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteError {
    /// The child's monitor is no longer running.
    MonitorGone,
    /// [`ProfilingError::StacksOff`].
    StacksOff,
    /// [`ProfilingError::AlreadyProfiling`].
    AlreadyProfiling,
    /// [`ProfilingError::NotProfiling`].
    NotProfiling,
    /// [`ProfilingError::InvalidOptions`].
    InvalidOptions,
    /// The child could not encode its answer.
    Encode(String),
}

impl From<hangwatch::MonitorGone> for RemoteError {
    fn from(_: hangwatch::MonitorGone) -> RemoteError {
        RemoteError::MonitorGone
    }
}

impl From<ProfilingError> for RemoteError {
    fn from(error: ProfilingError) -> RemoteError {
        match error {
            ProfilingError::MonitorGone(_) => RemoteError::MonitorGone,
            ProfilingError::StacksOff => RemoteError::StacksOff,
            ProfilingError::AlreadyProfiling => RemoteError::AlreadyProfiling,
            ProfilingError::NotProfiling => RemoteError::NotProfiling,
            ProfilingError::InvalidOptions => RemoteError::InvalidOptions,
            // A variant hangwatch added and this protocol does not carry yet:
            // the hub's bug, said as such.
            other => {
                RemoteError::Encode(format!("a profiling error with no variant here: {other}"))
            }
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::MonitorGone => write!(f, "{}", hangwatch::MonitorGone),
            RemoteError::StacksOff => write!(f, "{}", ProfilingError::StacksOff),
            RemoteError::AlreadyProfiling => write!(f, "{}", ProfilingError::AlreadyProfiling),
            RemoteError::NotProfiling => write!(f, "{}", ProfilingError::NotProfiling),
            RemoteError::InvalidOptions => write!(f, "{}", ProfilingError::InvalidOptions),
            RemoteError::Encode(detail) => write!(
                f,
                "the child could not encode its answer ({detail}); this is a bug in hangwatch-hub"
            ),
        }
    }
}

/// A value of type `T` as its JSON text.
///
/// Encoded with [`Json::encode`], read back with [`Json::decode`]. The text
/// is not checked on arrival: a peer may send anything, so `decode` returns
/// an error rather than trusting it.
pub struct Json<T> {
    text: String,
    kind: PhantomData<fn() -> T>,
}

impl<T: Serialize> Json<T> {
    /// `value` as JSON.
    pub fn encode(value: &T) -> Result<Json<T>, serde_json::Error> {
        serde_json::to_string(value).map(Json::from_text)
    }
}

impl<T: DeserializeOwned> Json<T> {
    /// The value back, or why the text is not a `T`.
    pub fn decode(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.text)
    }
}

impl<T> Json<T> {
    /// Any text, unchecked: what a peer might send.
    pub fn from_text(text: String) -> Json<T> {
        Json {
            text,
            kind: PhantomData,
        }
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The JSON text, to change: to glue pieces back, or cut them off.
    pub fn text_mut(&mut self) -> &mut String {
        &mut self.text
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Json<T> {
        Json::from_text(self.text.clone())
    }
}

impl<T> PartialEq for Json<T> {
    fn eq(&self, other: &Json<T>) -> bool {
        self.text == other.text
    }
}

impl<T> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Json").field(&self.text).finish()
    }
}

impl<T> Serialize for Json<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de, T> Deserialize<'de> for Json<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json<T>, D::Error> {
        String::deserialize(deserializer).map(Json::from_text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use hangwatch::{AlertKind, ComponentId, HangLevel};

    use super::*;

    fn alert() -> Alert {
        let mut alert = Alert::new(
            ComponentId::new("layout", 1),
            AlertKind::Ended {
                worst: HangLevel::Permanent,
            },
            Duration::from_millis(1200),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        alert.annotation = Some("reflow".into());
        alert.thread = Some("layout".into());
        alert
    }

    #[test]
    fn an_alert_crosses_as_json_and_comes_back_equal() {
        let message = ChildMsg::Alert(Json::encode(&alert()).unwrap());
        let bytes = postcard_like_round_trip(&message);
        match bytes {
            ChildMsg::Alert(json) => assert_eq!(json.decode().unwrap(), alert()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_that_is_not_the_type_is_an_error() {
        let json: Json<Alert> = Json::from_text("{\"not\": \"an alert\"}".into());
        assert!(json.decode().is_err());
    }

    #[test]
    fn stats_cross_as_json() {
        let stats = {
            let mut stats = Stats::default();
            stats.looks = 7;
            stats
        };
        let back = Json::encode(&stats).unwrap().decode().unwrap();
        assert_eq!(back.looks, 7);
    }

    #[test]
    fn options_and_reports_cross_as_plain_data() {
        let options = ProfilingOptions {
            rate_hz: 997,
            max_duration: Duration::from_millis(12_345),
            stack_bytes: 4096,
        };
        let request = HubMsg::Request {
            id: 1,
            request: Request::StartProfiling(options),
        };
        let (sender, receiver) = ipc_channel::ipc::channel::<HubMsg>().unwrap();
        sender.send(request.clone()).unwrap();
        assert_eq!(receiver.recv().unwrap(), request);
        let mut report = ExitReport::default();
        report.signalled = 3;
        report.panicked = vec![ComponentId::new("script", 2)];
        let message = ChildMsg::Reply {
            id: 2,
            reply: Reply::Exit(Ok(report)),
        };
        assert_eq!(postcard_like_round_trip(&message), message);
    }

    /// `ProfilingOptions` and `ExitReport` are hangwatch's types and cross
    /// as postcard, which has no field names: a field hangwatch adds changes
    /// these bytes, and then [`PROTOCOL_VERSION`] must change with them
    /// (bump it, then update the bytes here).
    #[test]
    fn the_plain_data_core_types_keep_their_wire_bytes_at_this_protocol_version() {
        assert_eq!(
            PROTOCOL_VERSION, 2,
            "update the bytes below with the version"
        );
        let options = ProfilingOptions {
            rate_hz: 997,
            max_duration: Duration::from_millis(12_345),
            stack_bytes: 4096,
        };
        let mut report = ExitReport::default();
        report.signalled = 3;
        report.panicked = vec![ComponentId::new("script", 2)];
        let options = postcard::to_stdvec(&options).unwrap();
        let report = postcard::to_stdvec(&report).unwrap();
        assert_eq!(
            options, OPTIONS_BYTES,
            "ProfilingOptions changed on the wire: {options:?}"
        );
        assert_eq!(
            report, REPORT_BYTES,
            "ExitReport changed on the wire: {report:?}"
        );
    }

    const OPTIONS_BYTES: &[u8] = &[229, 7, 0, 0, 0, 0, 128, 28, 200, 64, 128, 32];
    const REPORT_BYTES: &[u8] = &[3, 1, 6, 115, 99, 114, 105, 112, 116, 2];

    #[test]
    fn pieces_glue_back_into_the_text() {
        let text: String = "añb€".repeat(PIECE_BYTES / 3);
        let (pieces, last) = cut_into_pieces(text.clone());
        assert!(pieces.len() >= 2);
        assert!(pieces
            .iter()
            .all(|p| p.len() <= PIECE_BYTES && !p.is_empty()));
        assert!(last.len() <= PIECE_BYTES);
        assert_eq!(pieces.concat() + &last, text);
        let (pieces, last) = cut_into_pieces("short".into());
        assert!(pieces.is_empty());
        assert_eq!(last, "short");
    }

    /// Through a real ipc channel: postcard is what ipc-channel speaks.
    fn postcard_like_round_trip(message: &ChildMsg) -> ChildMsg {
        let (sender, receiver) = ipc_channel::ipc::channel::<ChildMsg>().unwrap();
        sender.send(message.clone()).unwrap();
        receiver.recv().unwrap()
    }
}
