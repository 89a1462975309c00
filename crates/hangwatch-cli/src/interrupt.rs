//! Ctrl-C for the long-running commands (`demo`, `soak`): the first one
//! raises a flag the command's loop reads, so that it asks its children to
//! exit, writes what it gathered and says it was interrupted; a second one
//! ends the process at once. (The children run in their own process group,
//! so the terminal's Ctrl-C reaches only this process.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit status of a command ended by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// Watches for Ctrl-C on behalf of `command` (named in the warning if it
/// cannot be watched).
pub fn watch_ctrl_c(command: &str) -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let watched = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(INTERRUPTED));
        }
    });
    if let Err(error) = watched {
        eprintln!("hangwatch {command}: Ctrl-C will end it at once: {error}");
    }
    interrupted
}
