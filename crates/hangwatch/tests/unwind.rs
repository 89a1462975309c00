//! Unwinding real samples, taken by the sampler, of a blocked thread and of
//! a thread inside the vDSO; and synthetic ones: a copy cut short, garbage
//! registers, an endless frame-pointer chain. Also the module snapshot.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use hangwatch::test_util::{
    normalize, AddressKind, Modules, RawSample, Registers, SampleTarget, Sampler, SymbolizeUnwound,
    Unwinder, UnwoundStack, WalkEnd, MAX_FRAMES,
};
use hangwatch::{CaptureMethod, Frame, SampleSignal, Stack, Symbolizer};

/// The sampled thread: `outer -> middle -> inner`, and `inner` hands out
/// its sample target, then blocks until the test is done.
#[inline(never)]
fn outer(copy_limit: usize, ready: &mpsc::Sender<SampleTarget>, done: &mpsc::Receiver<()>) {
    middle(copy_limit, ready, done);
    black_box(());
}

#[inline(never)]
fn middle(copy_limit: usize, ready: &mpsc::Sender<SampleTarget>, done: &mpsc::Receiver<()>) {
    inner(copy_limit, ready, done);
    black_box(());
}

#[inline(never)]
fn inner(copy_limit: usize, ready: &mpsc::Sender<SampleTarget>, done: &mpsc::Receiver<()>) {
    let target = SampleTarget::current_thread(copy_limit).expect("a sample target");
    ready.send(target).expect("the test waits for the target");
    let _ = done.recv();
    black_box(());
}

/// Samples a thread blocked in `inner`, copying at most `copy_limit` bytes
/// of its stack, and returns the sample.
fn sample_blocked_thread(copy_limit: usize) -> RawSample {
    let sampler = Sampler::install(SampleSignal::default()).expect("the sampler installs");
    let (ready, targets) = mpsc::channel();
    let (done, wait) = mpsc::channel();
    let thread = thread::spawn(move || outer(copy_limit, &ready, &wait));
    let target = targets.recv().expect("the thread sends its target");
    wait_until_blocked(target.tid());
    let sample = sampler.sample(&target, Duration::from_secs(10));
    done.send(()).unwrap();
    thread.join().unwrap();
    sample.expect("a sample of a blocked thread")
}

/// Waits (up to 10 s) until thread `tid` sleeps, so that the sample is
/// taken inside the receive, in the kernel, rather than on the way there.
fn wait_until_blocked(tid: u32) {
    let stat = format!("/proc/self/task/{tid}/stat");
    for _ in 0..10_000 {
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        // `pid (comm) S ...`: the state follows the last parenthesis.
        if state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('S'))
        {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn position(stack: &Stack, name: &str) -> Option<usize> {
    stack.frames.iter().position(|frame| {
        frame
            .function
            .as_deref()
            .is_some_and(|function| function.ends_with(&format!("unwind::{name}")))
    })
}

fn in_this_file(frame: &Frame) -> bool {
    frame
        .file
        .as_deref()
        .is_some_and(|file| file.ends_with("tests/unwind.rs"))
}

#[test]
fn a_blocked_thread_unwinds_through_its_callers() {
    let sample = sample_blocked_thread(1 << 20);
    let mut unwinder = Unwinder::new();
    let cold = Instant::now();
    let unwound = unwinder.unwind(&sample);
    let cold = cold.elapsed();
    let runs = 100;
    let warm = Instant::now();
    for _ in 0..runs {
        assert_eq!(unwinder.unwind(&sample).frames.len(), unwound.frames.len());
    }
    let warm = warm.elapsed() / runs;
    println!(
        "unwind {} frames: first {cold:?} (module list read), warm {warm:?}",
        unwound.frames.len()
    );
    let stack = Symbolizer::new().symbolize_unwound(&unwound);
    let names: Vec<&str> = stack
        .frames
        .iter()
        .map(|frame| frame.function.as_deref().unwrap_or("?"))
        .collect();

    for frame in &stack.frames {
        let function = frame.function.as_deref().unwrap_or("?");
        let module = frame.module.as_deref().unwrap_or("?");
        println!("{:#018x} {function} ({module})", frame.address);
    }
    let inner = position(&stack, "inner").unwrap_or_else(|| panic!("no inner in {names:#?}"));
    let middle = position(&stack, "middle").unwrap_or_else(|| panic!("no middle in {names:#?}"));
    let outer = position(&stack, "outer").unwrap_or_else(|| panic!("no outer in {names:#?}"));
    assert!(inner < middle && middle < outer, "{names:#?}");
    for i in [inner, middle, outer] {
        assert!(in_this_file(&stack.frames[i]), "{:#?}", stack.frames[i]);
        assert!(!stack.frames[i].inlined);
    }
    // Below `inner`: the channel's receive, down to the system call.
    assert!(inner > 0, "{names:#?}");
    // Above `outer`: the thread's start, to the end of the stack.
    assert!(!unwound.truncated, "{:?}", unwound.end);
    assert_eq!(unwound.end, WalkEnd::Complete, "{names:#?}");

    assert_eq!(unwound.frames[0].kind, AddressKind::InstructionPointer);
    assert_eq!(unwound.frames[0].address, sample.registers.ip);
    assert!(unwound.frames[1..]
        .iter()
        .all(|frame| frame.kind == AddressKind::ReturnAddress));
    // Every frame of the walk is in a module: the test binary, libc or
    // the vDSO.
    assert!(
        unwound.frames.iter().all(|frame| frame.module.is_some()),
        "{:#?}",
        normalize(&unwound)
    );
}

#[test]
fn a_stack_copy_cut_short_gives_a_truncated_stack() {
    let sample = sample_blocked_thread(64);
    assert!(sample.truncated, "64 bytes cannot hold the whole stack");
    assert!(sample.stack.len() <= 64);
    let unwound = Unwinder::new().unwind(&sample);
    assert!(unwound.truncated, "{:?}", unwound.end);
    assert!(
        matches!(unwound.end, WalkEnd::OutsideCopy { .. }),
        "{:?}",
        unwound.end
    );
    let stack = Symbolizer::new().symbolize_unwound(&unwound);
    assert!(stack.truncated);
    assert_eq!(position(&stack, "outer"), None);
}

/// A thread that reads the clock in a loop: most of its time is in the
/// vDSO's `clock_gettime`.
#[inline(never)]
fn clock_outer(stop: &AtomicBool, ready: &mpsc::Sender<SampleTarget>) {
    clock_inner(stop, ready);
    black_box(());
}

#[inline(never)]
fn clock_inner(stop: &AtomicBool, ready: &mpsc::Sender<SampleTarget>) {
    let target = SampleTarget::current_thread(1 << 20).expect("a sample target");
    ready.send(target).expect("the test waits for the target");
    while !stop.load(Ordering::Relaxed) {
        black_box(Instant::now());
    }
}

#[test]
fn a_thread_in_the_vdso_unwinds_through_its_callers() {
    let modules = Modules::load().expect("the maps are readable");
    let usable_vdso = modules
        .iter()
        .any(|m| m.name() == "[vdso]" && m.error().is_none());
    let sampler = Sampler::install(SampleSignal::default()).expect("the sampler installs");
    let stop = Arc::new(AtomicBool::new(false));
    let (ready, targets) = mpsc::channel();
    let thread = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || clock_outer(&stop, &ready))
    };
    let target = targets.recv().expect("the thread sends its target");
    let (mut unwinder, mut symbolizer) = (Unwinder::new(), Symbolizer::new());
    let mut in_vdso = Vec::new();
    for _ in 0..500 {
        if in_vdso.len() == 5 {
            break;
        }
        let Ok(sample) = sampler.sample(&target, Duration::from_secs(10)) else {
            continue;
        };
        let unwound = unwinder.unwind(&sample);
        let module = unwound.frames[0].module.as_ref();
        if module.is_some_and(|m| m.name() == "[vdso]") {
            in_vdso.push(symbolizer.symbolize_unwound(&unwound));
        }
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    if usable_vdso {
        assert!(!in_vdso.is_empty(), "no sample landed in the vDSO");
    }
    for stack in &in_vdso {
        let outer = position(stack, "clock_outer");
        let inner = position(stack, "clock_inner");
        assert!(inner.is_some() && inner < outer, "{stack:#?}");
        assert!(!stack.truncated);
    }
}

fn synthetic(registers: Registers, stack_start: u64, stack: Vec<u8>, truncated: bool) -> RawSample {
    RawSample {
        tid: 0,
        registers,
        stack_start,
        stack,
        truncated,
        pause_ns: 0,
        method: CaptureMethod::Signal,
        syscall: None,
    }
}

#[test]
fn a_walk_that_needs_bytes_past_a_complete_copy_is_not_truncated() {
    // Past the prologue of a large function, where the return address is
    // on the stack (on aarch64 it is still in the link register at the
    // function's first instruction).
    let ip = a_blocked_thread_unwinds_through_its_callers as *const () as u64 + 64;
    let registers = Registers {
        ip,
        sp: 0x7000_0000,
        fp: 0x7000_0000,
        lr: 0,
    };
    let mut unwinder = Unwinder::new();
    for truncated in [false, true] {
        let unwound = unwinder.unwind(&synthetic(registers, 0x7000_0000, vec![], truncated));
        assert_eq!(unwound.frames.len(), 1);
        assert!(
            matches!(unwound.end, WalkEnd::OutsideCopy { .. }),
            "{:?}",
            unwound.end
        );
        assert_eq!(unwound.truncated, truncated);
        let module = unwound.frames[0].module.as_ref().expect("the test binary");
        assert_eq!(
            unwound.frames[0].module_offset,
            Some(ip - module.base_address())
        );
    }
}

#[test]
fn garbage_registers_do_not_panic() {
    let mut unwinder = Unwinder::new();
    for (ip, sp) in [(0, 0), (u64::MAX, u64::MAX), (0x10, 8), (1, u64::MAX - 4)] {
        let registers = Registers {
            ip,
            sp,
            fp: sp,
            lr: ip,
        };
        let bytes = vec![0xff; 256];
        let unwound = unwinder.unwind(&synthetic(registers, sp, bytes, true));
        assert!(!unwound.frames.is_empty());
        assert!(unwound.frames[0].module.is_none());
        let stack = Symbolizer::new().symbolize_unwound(&unwound);
        assert!(stack.frames.iter().all(|frame| frame.function.is_none()));
    }
}

/// A frame-pointer chain longer than the walk is allowed to follow, in code
/// that belongs to no module.
#[cfg(target_arch = "x86_64")]
#[test]
fn an_endless_chain_stops_at_the_frame_limit() {
    let start = 0x7100_0000u64;
    let records = MAX_FRAMES as u64 + 100;
    let mut stack = Vec::new();
    for i in 0..records {
        // A frame record: the caller's frame pointer, then the return address.
        stack.extend_from_slice(&(start + 16 * (i + 1)).to_ne_bytes());
        stack.extend_from_slice(&(0x1000 + i).to_ne_bytes());
    }
    let registers = Registers {
        ip: 0x800,
        sp: start,
        fp: start,
        lr: 0,
    };
    let unwound: UnwoundStack = Unwinder::new().unwind(&synthetic(registers, start, stack, false));
    assert_eq!(unwound.end, WalkEnd::FrameLimit);
    assert_eq!(unwound.frames.len(), MAX_FRAMES);
    assert!(unwound.truncated);
    assert_eq!(unwound.frames[1].address, 0x1000);
}

#[test]
fn workers_can_own_an_unwinder() {
    // A `Symbolizer` is made on the thread that uses it (blazesym's caches
    // are not `Send`).
    fn send<T: Send + 'static>() {}
    send::<Unwinder>();
    send::<UnwoundStack>();
    fn shared<T: Send + Sync>() {}
    shared::<Modules>();
}

#[test]
fn the_snapshot_lists_the_executable_libc_and_the_vdso() {
    let modules = Modules::load().expect("the maps are readable");
    let exe = modules
        .find(a_blocked_thread_unwinds_through_its_callers as *const () as u64)
        .expect("the test binary");
    assert_eq!(exe.path(), std::env::current_exe().unwrap());
    assert!(exe.error().is_none(), "{exe:?}");
    assert!(
        modules.iter().any(|m| m.name().starts_with("libc")),
        "{modules:#?}"
    );
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    if maps.contains("[vdso]") {
        let vdso = modules
            .iter()
            .find(|m| m.name() == "[vdso]")
            .expect("the vDSO");
        // Its image comes from /proc/self/mem, which a sandbox may refuse.
        if vdso.error().is_none() {
            assert!(vdso.bias().is_some());
            Symbolizer::new()
                .preload_module(vdso)
                .expect("the vDSO's symbols");
        }
    }
    // Nothing changed since: a refresh reuses the snapshot.
    let refresh = Instant::now();
    assert!(modules.refresh().unwrap().is_none());
    println!(
        "{} modules; a refresh that finds no change takes {:?}",
        modules.len(),
        refresh.elapsed()
    );
}
