//! The system calls the Linux sampler makes, each wrapped once, with what it
//! may and may not do.
//!
//! Those marked *signal-safe* are called from the signal handler: they make
//! no allocation, take no lock and cannot panic. The others run on the
//! sampling side only; none of them allocates either, so that a sampler can
//! capture a thread that holds the allocator's lock.

use std::ffi::c_void;
use std::io;
use std::mem::{self, MaybeUninit};
use std::ptr;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use libc::c_int;

/// `CLOCK_MONOTONIC` in nanoseconds. Signal-safe (vDSO).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` is async-signal-safe and writes only `now`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(now.tv_nsec as u64)
}

/// The interrupted code's `errno`, restored before the handler returns.
/// Signal-safe.
pub struct SavedErrno(c_int);

impl SavedErrno {
    /// Saves the calling thread's `errno`, first thing in a handler.
    pub fn save() -> SavedErrno {
        // SAFETY: `__errno_location` returns this thread's errno, always valid.
        SavedErrno(unsafe { *libc::__errno_location() })
    }

    /// Puts it back, last thing before the handler returns.
    pub fn restore(self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

pub(super) fn gettid() -> u32 {
    // SAFETY: `gettid` takes no arguments, cannot fail and is
    // async-signal-safe.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

pub(super) fn getpid() -> libc::pid_t {
    // SAFETY: `getpid` cannot fail.
    unsafe { libc::getpid() }
}

/// The calling thread's stack, `[low, high)`.
pub(super) fn stack_bounds() -> io::Result<(usize, usize)> {
    let mut attributes = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `pthread_getattr_np` initializes `attributes` when it succeeds.
    let result = unsafe { libc::pthread_getattr_np(libc::pthread_self(), attributes.as_mut_ptr()) };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    let (mut low, mut size) = (ptr::null_mut(), 0);
    // SAFETY: `attributes` was initialized above, and is destroyed once.
    let result = unsafe {
        let result = libc::pthread_attr_getstack(attributes.as_ptr(), &mut low, &mut size);
        libc::pthread_attr_destroy(attributes.as_mut_ptr());
        result
    };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    let low = low as usize;
    Ok((low, low.saturating_add(size)))
}

/// Sleeps while `*word == expected`, at most `timeout`; may wake early.
pub(super) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned 32-bit atomic; the kernel reads it
    // and the timeout, and writes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &timeout as *const libc::timespec,
        )
    };
}

/// Wakes every waiter on `word`. Signal-safe.
pub(super) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE only uses
    // its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

/// The kernel's `siginfo_t` for `SI_QUEUE` on 64-bit Linux: the common
/// header, then `_rt`'s pid, uid and value, padded to 128 bytes.
#[repr(C)]
pub(super) struct QueuedSignalInfo {
    pub(super) signo: c_int,
    pub(super) errno: c_int,
    pub(super) code: c_int,
    pub(super) pad: c_int,
    pub(super) pid: libc::pid_t,
    pub(super) uid: libc::uid_t,
    pub(super) value: usize,
    pub(super) rest: [u64; 12],
}

const _: () = assert!(mem::size_of::<QueuedSignalInfo>() == mem::size_of::<libc::siginfo_t>());

/// Queues `signal` to thread `tid` of process `pid` (ours), carrying
/// `value`.
pub(super) fn queue_signal(
    pid: libc::pid_t,
    tid: u32,
    signal: c_int,
    value: usize,
) -> io::Result<()> {
    // SAFETY: `getuid` cannot fail.
    let uid = unsafe { libc::getuid() };
    let info = QueuedSignalInfo {
        signo: signal,
        errno: 0,
        code: libc::SI_QUEUE,
        pad: 0,
        pid,
        uid,
        value,
        rest: [0; 12],
    };
    // SAFETY: `info` has the layout the kernel reads (checked against
    // `siginfo_t`'s size above) and outlives the call. SI_QUEUE is a code a
    // process may send to its own threads.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid as libc::pid_t,
            signal,
            &info as *const QueuedSignalInfo,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The address of the handler now installed for `signal` (or `SIG_DFL`,
/// `SIG_IGN`).
pub(super) fn current_handler(signal: c_int) -> io::Result<usize> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is writable.
    if unsafe { libc::sigaction(signal, ptr::null(), old.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed, then filled in by a successful `sigaction`.
    Ok(unsafe { old.assume_init() }.sa_sigaction)
}

/// Installs `handler` for `signal` with `flags`, blocking every real-time
/// signal while it runs.
pub(super) fn set_handler(
    signal: c_int,
    handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void),
    flags: c_int,
) -> io::Result<()> {
    // SAFETY: `sigaction` is plain data for which all zeroes is a valid
    // value (no handler, no flags, empty mask).
    let mut action: libc::sigaction = unsafe { mem::zeroed() };
    action.sa_sigaction = handler as usize;
    action.sa_flags = flags;
    // SAFETY: `sa_mask` is a `sigset_t` we own; `sigemptyset` and `sigaddset`
    // only write it, with signal numbers in range.
    unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        for blocked in libc::SIGRTMIN()..=libc::SIGRTMAX() {
            libc::sigaddset(&mut action.sa_mask, blocked);
        }
    }
    // SAFETY: `action` is initialized and `handler` has the signature the
    // kernel calls for `SA_SIGINFO`; a null old action is allowed.
    if unsafe { libc::sigaction(signal, &action, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Adds `signal` to (`SIG_BLOCK`) or removes it from (`SIG_UNBLOCK`) the
/// calling thread's signal mask.
#[cfg(any(test, feature = "test-util"))]
pub(super) fn set_blocked(signal: c_int, how: c_int) -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initializes the set; `sigaddset` and
    // `pthread_sigmask` get valid pointers to it, and a null old mask is
    // allowed.
    let result = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        if libc::sigaddset(set.as_mut_ptr(), signal) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::pthread_sigmask(how, set.as_ptr(), ptr::null_mut())
    };
    match result {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code)),
    }
}

/// The calling thread's alternate signal stack.
pub(super) fn alt_stack() -> io::Result<libc::stack_t> {
    let mut current = MaybeUninit::<libc::stack_t>::zeroed();
    // SAFETY: a null new stack only queries; `current` is writable.
    if unsafe { libc::sigaltstack(ptr::null(), current.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed, then filled in by a successful `sigaltstack`.
    Ok(unsafe { current.assume_init() })
}

/// Makes `stack` the calling thread's alternate signal stack (or, with
/// `SS_DISABLE` in its flags, leaves it with none).
pub(super) fn set_alt_stack(stack: &libc::stack_t) -> io::Result<()> {
    // SAFETY: `stack` is a valid `stack_t`; the kernel checks its size and
    // flags, and uses its memory only while it stays installed, which the
    // caller keeps mapped for as long.
    if unsafe { libc::sigaltstack(stack, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The size of the signal frame the kernel pushes on this machine
/// (`AT_MINSIGSTKSZ`: it grows with the CPU's register state, 3.3 KiB with
/// AVX-512), or `MINSIGSTKSZ` where the kernel does not say.
pub(super) fn signal_frame_size() -> usize {
    // SAFETY: `getauxval` only reads the auxiliary vector; 0 means unknown.
    let reported = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    if reported == 0 {
        libc::MINSIGSTKSZ
    } else {
        reported
    }
}

pub(super) fn page_size() -> usize {
    // SAFETY: `sysconf` only reads a constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

/// Maps `guard + len` bytes of fresh memory, the first `guard` bytes
/// inaccessible; returns the address of the accessible part.
pub(super) fn map_guarded(guard: usize, len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            guard + len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `[base, base + guard)` is the start of the mapping just made.
    if unsafe { libc::mprotect(base, guard, libc::PROT_NONE) } != 0 {
        let error = io::Error::last_os_error();
        // SAFETY: the mapping is ours and nobody else knows of it.
        unsafe { libc::munmap(base, guard + len) };
        return Err(error);
    }
    Ok(base.cast::<u8>().wrapping_add(guard))
}

/// Unmaps what [`map_guarded`] mapped.
///
/// # Safety
///
/// `start`, `guard` and `len` are those of one [`map_guarded`] call, and
/// nothing uses that memory any more.
pub(super) unsafe fn unmap_guarded(start: *mut u8, guard: usize, len: usize) {
    // SAFETY: the caller's promise.
    unsafe { libc::munmap(start.wrapping_sub(guard).cast::<c_void>(), guard + len) };
}

/// A path under `/proc/self/task/TID/`, NUL-terminated, built without
/// allocating.
struct TaskPath {
    bytes: [u8; 64],
}

impl TaskPath {
    fn new(tid: u32, file: &str) -> TaskPath {
        let mut path = TaskPath { bytes: [0; 64] };
        let mut at = 0;
        let mut push = |bytes: &[u8]| {
            for &byte in bytes {
                // Leave the last byte as the terminating NUL.
                if at < path.bytes.len() - 1 {
                    path.bytes[at] = byte;
                    at += 1;
                }
            }
        };
        push(b"/proc/self/task/");
        let mut digits = [0u8; 10];
        let mut rest = tid;
        let mut count = 0;
        loop {
            digits[count] = b'0' + (rest % 10) as u8;
            count += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        digits[..count].reverse();
        push(&digits[..count]);
        push(b"/");
        push(file.as_bytes());
        path
    }

    fn as_ptr(&self) -> *const libc::c_char {
        self.bytes.as_ptr().cast()
    }
}

/// Reads `/proc/self/task/TID/FILE` into `buffer` (what fits), without
/// allocating. `ErrorKind::NotFound` when the thread is gone.
pub(super) fn read_task_file<'a>(
    tid: u32,
    file: &str,
    buffer: &'a mut [u8],
) -> io::Result<&'a [u8]> {
    let path = TaskPath::new(tid, file);
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut filled = 0;
    let result = loop {
        let Some(rest) = buffer.get_mut(filled..).filter(|rest| !rest.is_empty()) else {
            break Ok(());
        };
        // SAFETY: `rest` is writable for its length; `fd` is open.
        let read = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        match read {
            0 => break Ok(()),
            n if n > 0 => filled += n as usize,
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    break Err(error);
                }
            }
        }
    };
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    result.map(|()| &buffer[..filled])
}

/// Copies this process's memory at `address` into `buffer` through the
/// kernel, so that an unmapped page ends the copy instead of faulting.
/// Returns how many bytes were copied (fewer than asked where the mapping
/// ends).
pub(super) fn read_memory(address: usize, buffer: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut c_void,
        iov_len: buffer.len(),
    };
    // SAFETY: `local` describes `buffer`, writable for its length; the kernel
    // reads `remote` from our own address space, checking every page, and
    // never faults us.
    let copied = unsafe { libc::process_vm_readv(getpid(), &local, 1, &remote, 1, 0) };
    if copied >= 0 {
        return Ok(copied as usize);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // A partial first page, or a seccomp policy that forbids the call:
        // `/proc/self/mem` reads the same memory with the same checks.
        Some(libc::EFAULT) => Ok(0),
        Some(libc::ENOSYS | libc::EPERM) => read_memory_through_proc(address, buffer),
        _ => Err(error),
    }
}

fn read_memory_through_proc(address: usize, buffer: &mut [u8]) -> io::Result<usize> {
    let path = b"/proc/self/mem\0";
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut filled = 0;
    while filled < buffer.len() {
        let rest = &mut buffer[filled..];
        // SAFETY: `rest` is writable for its length; `fd` is open; the
        // kernel stops at the first unmapped page with EIO.
        let read = unsafe {
            libc::pread(
                fd,
                rest.as_mut_ptr().cast(),
                rest.len(),
                (address + filled) as libc::off_t,
            )
        };
        if read <= 0 {
            break;
        }
        filled += read as usize;
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_we_queue_reads_back_through_libc() {
        let info = QueuedSignalInfo {
            signo: 40,
            errno: 0,
            code: libc::SI_QUEUE,
            pad: 0,
            pid: 1234,
            uid: 56,
            value: 7 << 32 | 0x1234_5671,
            rest: [0; 12],
        };
        // SAFETY: same size (asserted above), and `siginfo_t` is plain data
        // whose alignment `QueuedSignalInfo` (8) satisfies.
        let read = unsafe { &*(&info as *const QueuedSignalInfo).cast::<libc::siginfo_t>() };
        assert_eq!(read.si_signo, 40);
        assert_eq!(read.si_code, libc::SI_QUEUE);
        // SAFETY: the `_rt` member is the one we filled.
        unsafe {
            assert_eq!(read.si_pid(), 1234);
            assert_eq!(read.si_uid(), 56);
            assert_eq!(read.si_value().sival_ptr as usize, 7 << 32 | 0x1234_5671);
        }
    }

    #[test]
    fn task_paths_are_built_without_allocating() {
        let path = TaskPath::new(4_294_967_295, "syscall");
        let end = path.bytes.iter().position(|&b| b == 0).unwrap();
        assert_eq!(&path.bytes[..end], b"/proc/self/task/4294967295/syscall");
        let path = TaskPath::new(0, "stat");
        let end = path.bytes.iter().position(|&b| b == 0).unwrap();
        assert_eq!(&path.bytes[..end], b"/proc/self/task/0/stat");
    }

    #[test]
    fn memory_reads_stop_at_the_end_of_a_mapping() {
        let page = page_size();
        let start = map_guarded(page, page).unwrap();
        // SAFETY: the page after the guard is ours, readable and writable.
        unsafe { ptr::write_bytes(start, 0x5a, page) };
        let mut buffer = vec![0; 3 * page];
        // From the middle of the page: the rest of it, then the unmapped
        // memory past it (or another mapping: then more).
        let copied = read_memory(start as usize + page / 2, &mut buffer).unwrap();
        assert!(copied >= page / 2);
        assert!(buffer[..page / 2].iter().all(|&b| b == 0x5a));
        // The guard page reads as nothing.
        let guard = start as usize - page;
        assert_eq!(read_memory(guard, &mut buffer[..16]).unwrap(), 0);
        // SAFETY: from `map_guarded` above, unused now.
        unsafe { unmap_guarded(start, page, page) };
    }
}
