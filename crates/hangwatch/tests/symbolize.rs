//! Symbolication of addresses in this test binary (a position-independent
//! executable built with full debug info), in libc and in no module.

use std::time::{Duration, Instant};

use hangwatch::stack::modules::Modules;
use hangwatch::stack::symbolize::Symbolizer;
use hangwatch::stack::unwind::{AddressKind, UnwoundFrame, UnwoundStack, WalkEnd};
use hangwatch::stack::Frame;

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
fn a_function_of_this_file_has_its_name_file_and_line() {
    let body_line = std::hint::black_box(marked_function());
    let address = marked_function as usize as u64;
    let mut symbolizer = Symbolizer::new();
    let frames = symbolizer.symbolize_address(address);
    assert_eq!(frames.len(), 1, "{frames:#?}");
    let frame = &frames[0];
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
    let start = caller_of_inlined as usize as u64;
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
    let frames = [callee, caller];
    assert!(frames.iter().all(own_file), "{frames:#?}");
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
    let address = libc::getpid as usize as u64;
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
    let ip = marked_function as usize as u64;
    let ret = caller_of_inlined as usize as u64 + 1;
    let stack = UnwoundStack {
        frames: vec![
            UnwoundFrame::new(ip, AddressKind::InstructionPointer, &modules),
            UnwoundFrame::new(ret, AddressKind::ReturnAddress, &modules),
            UnwoundFrame::new(0x10, AddressKind::ReturnAddress, &modules),
        ],
        truncated: true,
        end: WalkEnd::OutsideCopy { address: 0 },
    };
    let raw = Symbolizer::raw(&stack);
    assert!(raw.truncated);
    let addresses: Vec<u64> = raw.frames.iter().map(|f| f.address).collect();
    assert_eq!(addresses, [ip, ret - 1, 0x0f]);
    assert!(raw.frames.iter().all(|f| f.function.is_none()));
    assert!(raw.frames[..2]
        .iter()
        .all(|f| f.module.is_some() && f.module_offset.is_some()));
    assert_eq!(raw.frames[2].module, None);

    let symbolized = Symbolizer::new().symbolize(&stack);
    assert!(symbolized.truncated);
    assert_eq!(symbolized.frames.len(), 3, "{symbolized:#?}");
    assert!(named(&symbolized.frames[0], "marked_function"));
    assert!(named(&symbolized.frames[1], "caller_of_inlined"));
    assert_eq!(symbolized.frames[1].address, ret - 1);
    assert_eq!(symbolized.frames[2].function, None);
}

/// A chain of 30 distinct functions, so that a stack of their addresses
/// spans several functions of this file.
macro_rules! chain {
    ($($name:ident),*) => {
        $(
            #[inline(never)]
            fn $name(x: u64) -> u64 {
                std::hint::black_box(x).wrapping_add(line!() as u64)
            }
        )*
        const CHAIN: &[fn(u64) -> u64] = &[$($name),*];
    };
}

chain!(
    f00, f01, f02, f03, f04, f05, f06, f07, f08, f09, f10, f11, f12, f13, f14, f15, f16, f17, f18,
    f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29
);

#[test]
fn warm_symbolization_of_a_30_frame_stack_is_fast() {
    let modules = Modules::load().unwrap();
    let frames = CHAIN
        .iter()
        .enumerate()
        .map(|(i, f)| {
            std::hint::black_box(f(i as u64));
            UnwoundFrame::new(*f as usize as u64 + 1, AddressKind::ReturnAddress, &modules)
        })
        .collect();
    let stack = UnwoundStack {
        frames,
        truncated: false,
        end: WalkEnd::Complete,
    };
    let mut symbolizer = Symbolizer::new();
    let cold = Instant::now();
    let first = symbolizer.symbolize(&stack);
    let cold = cold.elapsed();
    assert_eq!(first.frames.len(), 30);
    for (frame, name) in first.frames.iter().zip(0..) {
        assert!(named(frame, &format!("f{name:02}")), "{frame:#?}");
    }

    let runs = 100;
    let warm = Instant::now();
    for _ in 0..runs {
        assert_eq!(symbolizer.symbolize(&stack), first);
    }
    let warm = warm.elapsed() / runs;
    println!("symbolize 30 frames: cold {cold:?} (first stack, module read), warm {warm:?}");
    assert!(
        warm < Duration::from_millis(5),
        "warm symbolization took {warm:?}"
    );
}
