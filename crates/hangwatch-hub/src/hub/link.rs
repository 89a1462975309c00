//! A link thread: one per invitation, then one per child.
//!
//! It waits in the one-shot server's `accept` (which has no timeout: the
//! hub's thread withdraws the invitation to wake it), checks the child's
//! hello, connects to the child's control server and welcomes it, hands the
//! child's stream to the hub's thread, and from then on writes the hub's
//! requests to the child. It ends when the hub stops writing to that child
//! (the child said goodbye, died, or the hub stopped) or when a write fails.
//!
//! Writes to a child can block if the child stops reading; only this thread
//! waits then.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crossbeam_channel::unbounded;
use ipc_channel::ipc::{IpcOneShotServer, IpcSender};
use ipc_channel::IpcError;

use super::run::{Command, Refusal};
use super::Wake;
use crate::protocol::{ChildMsg, HubMsg, PROTOCOL_VERSION};

pub(crate) fn spawn(
    number: u64,
    name: String,
    server: IpcOneShotServer<ChildMsg>,
    wake: Wake,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name(format!("hangwatch-hub-link-{number}"))
        .spawn(move || link(number, name, server, wake))
        .map(drop)
}

fn link(number: u64, name: String, server: IpcOneShotServer<ChildMsg>, wake: Wake) {
    let refuse = |why| {
        let _ = wake.send(Command::Refused {
            number,
            name: name.clone(),
            why,
        });
    };
    // A peer's first message is decoded inside `accept`; see `inbox::decode`
    // for why a panic can come out of ipc-channel there.
    let accepted = catch_unwind(AssertUnwindSafe(move || server.accept()));
    let Ok(accepted) = accepted else {
        return refuse(Refusal::Undecodable(
            "ipc-channel failed on it: it carried file descriptors the protocol has no place for"
                .to_owned(),
        ));
    };
    let (stream, hello) = match accepted {
        Ok((stream, ChildMsg::Hello(hello))) => (stream, hello),
        Ok((_, ChildMsg::Withdrawn)) => {
            let _ = wake.send(Command::Withdrawn { number });
            return;
        }
        Ok((_, other)) => {
            return refuse(Refusal::Other(format!(
                "its first message was {}, not a hello",
                kind(&other)
            )))
        }
        Err(IpcError::SerializationError(error)) => {
            return refuse(Refusal::Undecodable(format!(
                "not a hello of this protocol ({error:?})"
            )))
        }
        Err(error) => return refuse(Refusal::Other(format!("accepting it failed: {error}"))),
    };
    if hello.control.contains('\0') {
        // ipc-channel would panic turning it into a path.
        return refuse(Refusal::Undecodable(
            "its control server's name holds a NUL byte".to_owned(),
        ));
    }
    let control = match IpcSender::<HubMsg>::connect(hello.control.clone()) {
        Ok(control) => control,
        Err(error) => {
            return refuse(Refusal::Other(format!(
                "could not reach its control server {:?}: {error}",
                hello.control
            )))
        }
    };
    if hello.protocol != PROTOCOL_VERSION {
        // Dropping `control` unblocks the child's control thread, which then
        // sees no welcome; dropping `stream` makes its sends fail.
        return refuse(Refusal::Other(format!(
            "it speaks protocol {}, this hub {PROTOCOL_VERSION}; build both from the same \
             hangwatch-hub",
            hello.protocol
        )));
    }
    let welcome = HubMsg::Welcome {
        protocol: PROTOCOL_VERSION,
    };
    if let Err(error) = control.send(welcome) {
        return refuse(Refusal::Other(format!("could not welcome it: {error}")));
    }
    let (outbox, requests) = unbounded();
    let accepted = Command::Accepted {
        number,
        name: name.clone(),
        stream,
        hello,
        outbox,
    };
    if wake.send(accepted).is_err() {
        return;
    }
    // The hub's thread holds `outbox` now; nothing more to tell it.
    drop(wake);
    for request in requests {
        if control.send(request).is_err() {
            // The child is gone; its stream closing tells the hub.
            return;
        }
    }
}

fn kind(message: &ChildMsg) -> &'static str {
    match message {
        ChildMsg::Hello(_) => "a hello",
        ChildMsg::AlertPiece(_) | ChildMsg::Alert(_) => "an alert",
        ChildMsg::ReplyPiece { .. } => "a reply",
        ChildMsg::Reply { .. } => "a reply",
        ChildMsg::Goodbye => "a goodbye",
        ChildMsg::Withdrawn => "a withdrawal",
    }
}
