//! Symbolication of addresses in this test binary (a position-independent
//! executable built with full debug info), in libc and in no module.

use std::time::{Duration, Instant};

use hangwatch::test_util::{
    normalize, AddressKind, Modules, SymbolizeUnwound, UnwoundFrame, UnwoundStack, WalkEnd,
};
use hangwatch::{CaptureMethod, Frame, Symbolizer};

/// The line of `marked_function`'s body (`line!()` is evaluated inside it).
#[inline(never)]
fn marked_function() -> u32 {
    std::hint::black_box(line!())
}

#[inline(always)]
fn inlined_callee(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
}

#[inline(never)]
fn caller_of_inlined(x: u64) -> u64 {
    let a = std::hint::black_box(x) + 1;
    let b = inlined_callee(a);
    std::hint::black_box(b ^ a)
}

/// The address of a function's first instruction.
fn address_of(function: *const ()) -> u64 {
    function as usize as u64
}

/// The frames that are not inlined: one per address.
fn outermost(frames: &[Frame]) -> Vec<&Frame> {
    frames.iter().filter(|frame| !frame.inlined).collect()
}

fn own_file(frame: &Frame) -> bool {
    frame
        .file
        .as_deref()
        .is_some_and(|file| file.ends_with("tests/symbolize.rs"))
}

fn named(frame: &Frame, name: &str) -> bool {
    frame
        .function
        .as_deref()
        .is_some_and(|function| function.contains(name))
}

#[test]
fn function_names_only_leaves_files_and_lines_for_later() {
    let address = address_of(marked_function as *const ());
    let names_only = Symbolizer::function_names_only().symbolize_address(address);
    assert_eq!(
        names_only.len(),
        1,
        "no inlined frames without DWARF: {names_only:#?}"
    );
    let frame = &names_only[0];
    assert!(named(frame, "marked_function"), "{frame:#?}");
    assert_eq!(
        (frame.file.as_deref(), frame.line),
        (None, None),
        "{frame:#?}"
    );
    assert!(
        frame.needs_symbols(),
        "a frame without a file can still gain one"
    );
    // Anyone with the frame (here: a full symbolizer) adds what is missing.
    let completed = Symbolizer::new().symbolize_frames(&names_only);
    let outer = completed.last().expect("a frame");
    assert!(
        named(outer, "marked_function") && own_file(outer),
        "{completed:#?}"
    );
    assert!(!outer.needs_symbols());
    assert_eq!(outer.build_id, frame.build_id);
    assert!(outer.build_id.is_some(), "{outer:#?}");
}

#[test]
fn a_function_of_this_file_has_its_name_file_and_line() {
    let body_line = std::hint::black_box(marked_function());
    let address = address_of(marked_function as *const ());
    let mut symbolizer = Symbolizer::new();
    let frames = symbolizer.symbolize_address(address);
    // Optimized builds inline `black_box` at the first instruction.
    let frame = frames.last().expect("a frame");
    assert!(
        frames[..frames.len() - 1].iter().all(|f| f.inlined),
        "{frames:#?}"
    );
    assert_eq!(frame.address, address);
    assert!(named(frame, "marked_function"), "{frame:#?}");
    assert!(
        !frame.function.as_deref().unwrap().contains("::h"),
        "hash left in {frame:#?}"
    );
    assert!(own_file(frame), "{frame:#?}");
    // The function's first instruction is attributed to its `fn` line, the
    // line before its body.
    let line = frame.line.expect("a line") as i64;
    assert!(
        (line - (body_line as i64 - 1)).abs() <= 1,
        "line {line}, body at {body_line}"
    );
    assert!(!frame.inlined);

    // Module and offset: the test binary is position-independent, so the
    // offset is the address its file states, and differs from the address.
    let exe = std::env::current_exe().unwrap();
    let exe_name = exe.file_name().unwrap().to_str().unwrap();
    assert_eq!(frame.module.as_deref(), Some(exe_name));
    let modules = Modules::load().unwrap();
    let module = modules.find(address).expect("the test binary is a module");
    assert_eq!(frame.module_offset, Some(address - module.base_address()));
    assert_eq!(
        module.bias(),
        Some(module.base_address()),
        "a PIE starts at address zero"
    );
    assert_ne!(module.base_address(), 0);
}

#[test]
fn an_inlined_call_expands_into_callee_then_caller() {
    std::hint::black_box(caller_of_inlined(7));
    let start = address_of(caller_of_inlined as *const ());
    let mut symbolizer = Symbolizer::new();
    // Walk the caller's instructions until one belongs to the inlined call
    // (whatever the callee itself inlined comes first).
    let mut found = None;
    for address in start..start + 4096 {
        let frames = symbolizer.symbolize_address(address);
        let outermost = frames.last().expect("at least one frame");
        if !named(outermost, "caller_of_inlined") {
            break;
        }
        if frames.len() >= 2 && named(&frames[frames.len() - 2], "inlined_callee") {
            found = Some(frames);
            break;
        }
    }
    let mut frames = found.expect("an address inside the inlined call");
    let caller = frames.pop().unwrap();
    let callee = frames.pop().unwrap();
    assert!(callee.inlined && !caller.inlined, "{callee:#?} {caller:#?}");
    assert!(frames.iter().all(|frame| frame.inlined), "{frames:#?}");
    assert_eq!(callee.address, caller.address);
    assert_eq!(callee.module_offset, caller.module_offset);
    let chain = [callee, caller];
    assert!(chain.iter().all(own_file), "{chain:#?}");

    // Named again (a hub, `hangwatch symbolicate`), even with a member that
    // lacks a file, an expanded chain stays as it is: not expanded twice.
    let mut again: Vec<Frame> = frames.into_iter().chain(chain).collect();
    again[0].file = None;
    assert_eq!(symbolizer.symbolize_frames(&again), again);
}

#[cfg(unix)]
#[test]
fn a_module_path_that_is_no_regular_file_is_not_opened() {
    // A frame from another process may name anything: a FIFO would block
    // an open for ever.
    let fifo = std::env::temp_dir().join(format!("hangwatch-fifo-{}", std::process::id()));
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|status| status.success()), "mkfifo");
    let frame = Frame {
        address: 0x1000,
        module: Some("fifo".into()),
        module_path: Some(fifo.to_string_lossy().into_owned()),
        module_offset: Some(0x1000),
        build_id: Some("00ff".into()),
        ..Frame::default()
    };
    let mut symbolizer = Symbolizer::new();
    let alone = std::slice::from_ref(&frame);
    assert_eq!(symbolizer.symbolize_frames(alone), alone);
    let problems: Vec<String> = symbolizer.problems().map(|(_, p)| p.to_string()).collect();
    assert!(
        problems.iter().any(|p| p.contains("not a regular file")),
        "{problems:?}"
    );
    // A build id that is not hex is no build id: nothing is looked up by it.
    let odd = Frame {
        build_id: Some("../../etc".into()),
        ..frame
    };
    assert_eq!(
        symbolizer.symbolize_frames(std::slice::from_ref(&odd)),
        [odd]
    );
    let _ = std::fs::remove_file(&fifo);
}

#[test]
fn an_address_in_no_module_is_a_bare_frame() {
    let mut symbolizer = Symbolizer::new();
    for address in [0, 0x10, u64::MAX - 1] {
        let frames = symbolizer.symbolize_address(address);
        assert_eq!(
            frames,
            vec![Frame {
                address,
                ..Frame::default()
            }]
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_libc_function_is_named_from_its_symbol_table() {
    let address = address_of(libc::getpid as *const ());
    let mut symbolizer = Symbolizer::new();
    let frames = symbolizer.symbolize_address(address);
    let frame = frames.last().unwrap();
    assert!(
        frame
            .module
            .as_deref()
            .is_some_and(|m| m.starts_with("libc")),
        "{frame:#?}"
    );
    assert!(named(frame, "getpid"), "{frame:#?}");
}

#[test]
fn raw_and_symbolized_stacks_keep_addresses_and_truncation() {
    let modules = Modules::load().unwrap();
    let ip = address_of(marked_function as *const ());
    let ret = address_of(caller_of_inlined as *const ()) + 1;
    let stack = UnwoundStack {
        frames: vec![
            UnwoundFrame::new(ip, AddressKind::InstructionPointer, &modules),
            UnwoundFrame::new(ret, AddressKind::ReturnAddress, &modules),
            UnwoundFrame::new(0x10, AddressKind::ReturnAddress, &modules),
        ],
        truncated: true,
        end: WalkEnd::OutsideCopy { address: 0 },
        method: CaptureMethod::Signal,
        syscall: None,
    };
    let raw = normalize(&stack);
    assert!(raw.truncated);
    let addresses: Vec<u64> = raw.frames.iter().map(|f| f.address).collect();
    assert_eq!(addresses, [ip, ret - 1, 0x0f]);
    assert!(raw.frames.iter().all(|f| f.function.is_none()));
    assert!(raw.frames[..2]
        .iter()
        .all(|f| f.module.is_some() && f.module_offset.is_some()));
    assert_eq!(raw.frames[2].module, None);

    let symbolized = Symbolizer::new().symbolize_unwound(&stack);
    assert!(symbolized.truncated);
    let frames = outermost(&symbolized.frames);
    assert_eq!(frames.len(), 3, "{symbolized:#?}");
    assert!(named(frames[0], "marked_function"), "{symbolized:#?}");
    assert!(named(frames[1], "caller_of_inlined"), "{symbolized:#?}");
    assert_eq!(frames[1].address, ret - 1);
    assert_eq!(frames[2].function, None);
}

/// 30 distinct functions (distinct constants, so that an optimized build
/// cannot merge them), for a stack that spans many functions of this file.
macro_rules! functions {
    ($($name:ident = $constant:literal),*) => {
        $(
            #[inline(never)]
            fn $name(x: u64) -> u64 {
                std::hint::black_box(x).wrapping_mul($constant)
            }
        )*
        const FUNCTIONS: &[fn(u64) -> u64] = &[$($name),*];
    };
}

functions!(
    f00 = 3,
    f01 = 5,
    f02 = 7,
    f03 = 11,
    f04 = 13,
    f05 = 17,
    f06 = 19,
    f07 = 23,
    f08 = 29,
    f09 = 31,
    f10 = 37,
    f11 = 41,
    f12 = 43,
    f13 = 47,
    f14 = 53,
    f15 = 59,
    f16 = 61,
    f17 = 67,
    f18 = 71,
    f19 = 73,
    f20 = 79,
    f21 = 83,
    f22 = 89,
    f23 = 97,
    f24 = 101,
    f25 = 103,
    f26 = 107,
    f27 = 109,
    f28 = 113,
    f29 = 127
);

#[test]
fn warm_symbolization_of_a_30_frame_stack_is_fast() {
    let modules = Modules::load().unwrap();
    let frames = FUNCTIONS
        .iter()
        .enumerate()
        .map(|(i, f)| {
            std::hint::black_box(f(i as u64));
            UnwoundFrame::new(
                address_of(*f as *const ()) + 1,
                AddressKind::ReturnAddress,
                &modules,
            )
        })
        .collect();
    let stack = UnwoundStack {
        frames,
        truncated: false,
        end: WalkEnd::Complete,
        method: CaptureMethod::Signal,
        syscall: None,
    };
    let mut symbolizer = Symbolizer::new();
    let module = stack.frames[0].module.as_ref().expect("the test binary");
    let read = Instant::now();
    symbolizer
        .preload_module(module)
        .expect("the test binary is readable");
    let read = read.elapsed();
    let cold = Instant::now();
    let first = symbolizer.symbolize_unwound(&stack);
    let cold = cold.elapsed();
    let functions = outermost(&first.frames);
    assert_eq!(functions.len(), 30, "{first:#?}");
    for (frame, name) in functions.into_iter().zip(0..) {
        assert!(named(frame, &format!("f{name:02}")), "{frame:#?}");
    }

    let runs = 100;
    let warm = Instant::now();
    for _ in 0..runs {
        assert_eq!(symbolizer.symbolize_unwound(&stack), first);
    }
    let warm = warm.elapsed() / runs;
    println!(
        "symbolize 30 frames: module read {read:?}, first stack {cold:?}, warm stack {warm:?}"
    );
    assert!(
        warm < Duration::from_millis(5),
        "warm symbolization took {warm:?}"
    );
}
