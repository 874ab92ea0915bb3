//! Guard-page test mode of the CPU runtime ([`crate::cpu::CompiledModel::run_guarded`]).
//!
//! Owns the per-step execution of a generated function with every buffer it can reach in its
//! own anonymous mapping between two inaccessible (`PROT_NONE`) pages, so that an
//! out-of-bounds read or write by JIT code faults (SIGSEGV ends the process: in a test, that
//! is the failure) instead of silently touching a neighbour. For each JIT step:
//! - every non-null pointer-table slot (output, inputs, packed constants, scratch) gets a
//!   fresh [`GuardedBuf`] of exactly the slot's `Step::arg_bytes`, placed against the
//!   trailing or the leading guard page ([`GuardPlacement`]);
//! - inputs and packed constants are copied in and made read-only (a write to them faults
//!   too); the output and the scratch start filled with `0xFF` bytes (f32 NaN), so code that
//!   reads them before writing them produces NaNs instead of stale values;
//! - the pointer table itself lies in a read-only guarded mapping (a read of a slot past the
//!   last one faults);
//! - after the step the output is copied back to the arena and everything is unmapped.
//!
//! Page protection is process-wide, so kernels that run part of a call on helper threads are
//! covered as well. Mapping failures are typed errors ([`GuardError`]), never panics.

use mnc_targets::cpu::{AlignedBytes, JitFn, Loc, Step};
use std::io;
use thiserror::Error;

/// Where a buffer sits in its guarded mapping. A buffer rarely fills whole pages, so only
/// the side it abuts is exact: run both placements to catch overruns on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardPlacement {
    /// The buffer's last byte is followed by the trailing guard page: any access past the
    /// end faults. The start is then only as aligned as the size (4 bytes for f32 data),
    /// which is all the generated code may assume.
    AgainstEnd,
    /// The buffer's first byte follows the leading guard page: any access before the start
    /// faults. The start is page-aligned.
    AgainstStart,
}

impl GuardPlacement {
    /// Both placements.
    pub const ALL: [GuardPlacement; 2] = [GuardPlacement::AgainstEnd, GuardPlacement::AgainstStart];
}

/// Errors of the guard-page mode: the OS refused a mapping, or a step's pointer table does
/// not fit the buffers it names (a malformed program).
#[derive(Debug, Error)]
pub enum GuardError {
    /// `mmap` of a guarded buffer failed.
    #[error("mapping {bytes} bytes for a {len}-byte buffer between guard pages failed: {source}")]
    Map {
        len: usize,
        bytes: usize,
        #[source]
        source: io::Error,
    },
    /// `mprotect` of a guarded buffer failed.
    #[error("mprotect({prot}) of a {len}-byte guarded buffer failed: {source}")]
    Protect {
        prot: &'static str,
        len: usize,
        #[source]
        source: io::Error,
    },
    /// A buffer size too large to map (page arithmetic overflows).
    #[error("a {len}-byte buffer is too large to place between guard pages")]
    TooLarge { len: usize },
    /// A pointer-table slot's location and size lie outside the arena or the weights blob.
    #[error("pointer-table slot {slot} ({loc:?}, {bytes} bytes) lies outside the {buffer} ({size} bytes)")]
    OutOfRange {
        slot: usize,
        loc: Loc,
        bytes: usize,
        buffer: &'static str,
        size: usize,
    },
    /// `Step::arg_bytes` is not parallel to `Step::args`.
    #[error("the step has {args} pointer-table slots but {sizes} slot sizes")]
    SlotSizes { args: usize, sizes: usize },
    /// The generated code reads more pointer-table slots than the step provides.
    #[error("the generated code reads {read} pointer-table slots but the step provides {len}")]
    ShortTable { read: usize, len: usize },
    /// The output slot is null or not in the arena.
    #[error("the output slot is at {0:?}, not in the arena")]
    OutputLoc(Loc),
}

/// The system page size.
fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// One buffer of `len` bytes in its own anonymous mapping, with an inaccessible page directly
/// before and after its data pages; readable and writable until [`GuardedBuf::make_read_only`].
/// Unmapped on drop.
pub struct GuardedBuf {
    map: *mut u8,
    map_len: usize,
    data: *mut u8,
    len: usize,
}

impl GuardedBuf {
    /// Maps a zero-filled buffer of `len` bytes placed as `placement` says (a zero-length
    /// buffer points at a guard page boundary: any access faults).
    pub fn new(len: usize, placement: GuardPlacement) -> Result<Self, GuardError> {
        let page = page_size();
        let data_pages = len.div_ceil(page).max(1);
        let data_bytes = data_pages
            .checked_mul(page)
            .ok_or(GuardError::TooLarge { len })?;
        let map_len = data_bytes
            .checked_add(2 * page)
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or(GuardError::TooLarge { len })?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(GuardError::Map {
                len,
                bytes: map_len,
                source: io::Error::last_os_error(),
            });
        }
        let map = map as *mut u8;
        // From here on `buf` owns the mapping (unmapped on drop, also on the error below).
        let mut buf = GuardedBuf {
            map,
            map_len,
            data: map,
            len,
        };
        // SAFETY: `page + data_bytes <= map_len`: both pointers stay inside the mapping.
        let first = unsafe { map.add(page) };
        buf.data = match placement {
            GuardPlacement::AgainstStart => first,
            // SAFETY: `len <= data_bytes`, so the result lies in the data pages.
            GuardPlacement::AgainstEnd => unsafe { first.add(data_bytes - len) },
        };
        buf.protect(
            first,
            data_bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            "read|write",
        )?;
        Ok(buf)
    }

    fn protect(
        &self,
        start: *mut u8,
        bytes: usize,
        prot: libc::c_int,
        name: &'static str,
    ) -> Result<(), GuardError> {
        // SAFETY: `start..start + bytes` lies in this buffer's own mapping.
        if unsafe { libc::mprotect(start as *mut libc::c_void, bytes, prot) } != 0 {
            return Err(GuardError::Protect {
                prot: name,
                len: self.len,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Makes the data pages read-only: a later write through [`GuardedBuf::as_mut_ptr`]
    /// faults.
    pub fn make_read_only(&mut self) -> Result<(), GuardError> {
        let page = page_size();
        // SAFETY: the data pages start one page into the mapping.
        let first = unsafe { self.map.add(page) };
        self.protect(first, self.map_len - 2 * page, libc::PROT_READ, "read")
    }

    /// Size of the buffer in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of the first byte.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.data
    }

    /// The buffer's bytes (readable in every state).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes at `data` are mapped readable while `self` lives.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    /// The buffer's bytes, writable (only before [`GuardedBuf::make_read_only`], which takes
    /// `&mut self`, so no such borrow outlives it).
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; uniquely borrowed, and the pages are writable (see the docs).
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl Drop for GuardedBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `new` and is unmapped only here. A failure
        // cannot be reported from drop; it would only leak address space.
        unsafe { libc::munmap(self.map as *mut libc::c_void, self.map_len) };
    }
}

/// Byte pattern of the output and the scratch before the step (every f32 is a NaN).
const POISON: u8 = 0xFF;

/// Checks a JIT step's pointer table before its code is called, in plain and in guard-page
/// runs: the table is as long as the code reads (`Step::slots_read`), `Step::arg_bytes` is
/// parallel to `Step::args`, and every slot's `arg_bytes` bytes lie inside the arena
/// (`arena_len` bytes) or the weights blob (`weights_len` bytes). The plan guarantees all of
/// this; the check keeps a modified `Step` (its fields are public) from turning into
/// out-of-bounds pointers.
pub(crate) fn check_slots(
    step: &Step,
    arena_len: usize,
    weights_len: usize,
) -> Result<(), GuardError> {
    if step.arg_bytes.len() != step.args.len() {
        return Err(GuardError::SlotSizes {
            args: step.args.len(),
            sizes: step.arg_bytes.len(),
        });
    }
    if step.slots_read > step.args.len() {
        return Err(GuardError::ShortTable {
            read: step.slots_read,
            len: step.args.len(),
        });
    }
    for (slot, (&loc, &bytes)) in step.args.iter().zip(&step.arg_bytes).enumerate() {
        let (off, size, buffer) = match loc {
            Loc::Arena(o) => (o, arena_len, "arena"),
            Loc::Weight(o) => (o, weights_len, "weights blob"),
            Loc::Unused => continue,
        };
        if off.checked_add(bytes).is_none_or(|end| end > size) {
            return Err(GuardError::OutOfRange {
                slot,
                loc,
                bytes,
                buffer,
                size,
            });
        }
    }
    Ok(())
}

/// The `bytes` bytes at `loc` (slot `slot`), bounds-checked.
fn slot_bytes<'a>(
    arena: &'a AlignedBytes,
    weights: &'a AlignedBytes,
    slot: usize,
    loc: Loc,
    bytes: usize,
) -> Result<&'a [u8], GuardError> {
    let (buf, off, buffer) = match loc {
        Loc::Arena(o) => (arena, o, "arena"),
        Loc::Weight(o) => (weights, o, "weights blob"),
        Loc::Unused => return Ok(&[]),
    };
    off.checked_add(bytes)
        .and_then(|end| buf.bytes().get(off..end))
        .ok_or(GuardError::OutOfRange {
            slot,
            loc,
            bytes,
            buffer,
            size: buf.len(),
        })
}

/// Runs the generated function `f` of `step` with every slot of its pointer table in its own
/// guarded mapping (see the module docs), then copies the output back to `arena`.
///
/// Slot 0 (the output) and arena slots after the step's inputs (the scratch) are writable;
/// the inputs and everything in the weights blob are read-only.
pub(crate) fn run_jit_step(
    step: &Step,
    f: JitFn,
    arena: &mut AlignedBytes,
    weights: &AlignedBytes,
    placement: GuardPlacement,
) -> Result<(), GuardError> {
    check_slots(step, arena.len(), weights.len())?;
    let Loc::Arena(out_off) = step.args.first().copied().unwrap_or(Loc::Unused) else {
        return Err(GuardError::OutputLoc(
            step.args.first().copied().unwrap_or(Loc::Unused),
        ));
    };
    let n_in = step.inputs.len();
    let mut bufs: Vec<GuardedBuf> = Vec::with_capacity(step.args.len());
    let mut table: Vec<*mut u8> = Vec::with_capacity(step.args.len());
    for (slot, (&loc, &bytes)) in step.args.iter().zip(&step.arg_bytes).enumerate() {
        if loc == Loc::Unused {
            table.push(std::ptr::null_mut());
            continue;
        }
        let src = slot_bytes(arena, weights, slot, loc, bytes)?;
        let writable = slot == 0 || (slot > n_in && matches!(loc, Loc::Arena(_)));
        let mut b = GuardedBuf::new(bytes, placement)?;
        if writable {
            b.bytes_mut().fill(POISON);
        } else {
            b.bytes_mut().copy_from_slice(src);
            b.make_read_only()?;
        }
        table.push(b.as_mut_ptr());
        bufs.push(b);
    }
    let mut tbuf = GuardedBuf::new(table.len() * std::mem::size_of::<*mut u8>(), placement)?;
    for (d, p) in tbuf.bytes_mut().chunks_exact_mut(8).zip(&table) {
        d.copy_from_slice(&(*p as usize).to_ne_bytes());
    }
    tbuf.make_read_only()?;
    // SAFETY: the function was generated for this step's pointer table; every slot points
    // to a private copy of exactly the size the plan gives it, mapped for the whole call.
    // An access outside those bytes hits a guard page or a read-only page and faults,
    // which is the purpose of this mode.
    unsafe { f(tbuf.as_mut_ptr() as *const *mut u8) };
    let out_bytes = step.arg_bytes[0];
    let size = arena.len();
    let dst = out_off
        .checked_add(out_bytes)
        .and_then(|end| arena.bytes_mut().get_mut(out_off..end))
        .ok_or(GuardError::OutOfRange {
            slot: 0,
            loc: step.args[0],
            bytes: out_bytes,
            buffer: "arena",
            size,
        })?;
    // bufs[0] is the output: slot 0 is in the arena, so it got the first mapping.
    dst.copy_from_slice(bufs[0].bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_abut_their_guard_page() {
        let page = page_size();
        for len in [0, 4, 60, 4096, 4100, 3 * 4096 + 12] {
            let mut e = GuardedBuf::new(len, GuardPlacement::AgainstEnd).unwrap();
            let p = e.as_mut_ptr() as usize;
            assert_eq!((p + len) % page, 0, "AgainstEnd, {len} bytes");
            assert!(e.bytes().iter().all(|&b| b == 0));
            let mut s = GuardedBuf::new(len, GuardPlacement::AgainstStart).unwrap();
            assert_eq!(
                s.as_mut_ptr() as usize % page,
                0,
                "AgainstStart, {len} bytes"
            );
            assert_eq!(s.len(), len);
            // every byte of the buffer is writable, then readable after make_read_only
            s.bytes_mut().fill(7);
            s.make_read_only().unwrap();
            assert!(s.bytes().iter().all(|&b| b == 7));
        }
    }

    #[test]
    fn an_unmappable_size_is_an_error() {
        let e = GuardedBuf::new(usize::MAX - 10, GuardPlacement::AgainstEnd);
        assert!(matches!(e, Err(GuardError::TooLarge { .. })));
        // Within isize but beyond any address space: mmap refuses (ENOMEM), reported.
        let e = GuardedBuf::new(isize::MAX as usize / 2, GuardPlacement::AgainstStart);
        match e {
            Err(GuardError::Map { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOMEM))
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a 2^62-byte mapping succeeded"),
        }
    }

    use crate::cpu::{CompiledModel, CpuOptions, CpuRunError, Target};
    use mnc_ir::{Tensor, TensorType};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    /// [`crate::cpu::tests::relu32`] with the default options.
    #[track_caller]
    fn relu32() -> Option<(CompiledModel, Tensor)> {
        crate::cpu::tests::relu32(&CpuOptions::default())
    }

    /// Deliberately broken "generated code": reads the f32 just before input slot 1.
    unsafe extern "C" fn read_before_input(t: *const *mut u8) {
        // SAFETY: none: this out-of-bounds read is the fault the test expects (it runs in a
        // child process, in guard-page mode, where it hits the leading guard page).
        unsafe {
            let x = *t.add(1) as *const f32;
            let v = std::ptr::read_volatile(x.sub(1));
            *(*t as *mut f32) = v;
        }
    }

    /// Deliberately broken: writes into input slot 1 (read-only in guard-page mode).
    unsafe extern "C" fn write_into_input(t: *const *mut u8) {
        // SAFETY: none: this write into a read-only input is the fault the test expects (in
        // a child process, guard-page mode).
        unsafe { std::ptr::write_volatile(*t.add(1) as *mut f32, 1.0) };
    }

    /// Deliberately broken: reads pointer-table slot 2 of a two-slot table.
    unsafe extern "C" fn read_past_table(t: *const *mut u8) {
        // SAFETY: none: this read past the pointer table is the fault the test expects (in a
        // child process, guard-page mode).
        unsafe {
            let p = std::ptr::read_volatile(t.add(2));
            *(*t as *mut usize) = p as usize;
        }
    }

    /// Correct: touches the first and last f32 of its output and input (nothing else).
    unsafe extern "C" fn touch_both_ends(t: *const *mut u8) {
        // SAFETY: the table of the relu32 step: slot 0 is a 32-float output, slot 1 a
        // 32-float input; only elements 0..32 are touched.
        unsafe {
            let (y, x) = (*t as *mut f32, *t.add(1) as *const f32);
            for i in 0..32 {
                *y.add(i) = 0.0;
            }
            *y = std::ptr::read_volatile(x);
            *y.add(31) = std::ptr::read_volatile(x.add(31));
        }
    }

    /// Argument (a test-name filter that matches no test) by which the parent asks the
    /// child test [`fault_child`] to run one broken case: `mnc-guard-child=<case>`.
    const CHILD_ARG: &str = "mnc-guard-child=";

    /// Runs `case` of [`fault_child`] in a child process (this test binary, filtered to that
    /// test) and asserts that it died by SIGSEGV inside the broken step.
    #[track_caller]
    fn assert_child_segfaults(case: &str) {
        if relu32().is_none() {
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--exact",
                "guard::tests::fault_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
                &format!("{CHILD_ARG}{case}"),
            ])
            .output()
            .unwrap();
        let text = format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("guard child {case}: running the broken step")),
            "the child did not reach the broken step: {text}"
        );
        assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{text}");
    }

    /// Child side of the fault tests; does nothing unless the command line holds
    /// `mnc-guard-child=<case>` (only [`assert_child_segfaults`] passes it). Ignored so that
    /// a plain `cargo test` does not list it as a passing test.
    #[test]
    #[ignore = "child process of the guard-page fault tests"]
    fn fault_child() {
        let Some(case) = std::env::args().find_map(|a| a.strip_prefix(CHILD_ARG).map(String::from))
        else {
            eprintln!(
                "SKIPPED fault_child: runs only as the child process of the guard-page fault tests"
            );
            return;
        };
        let (mut m, x) = relu32().unwrap();
        let xs = std::slice::from_ref(&x);
        // The intact step runs cleanly in both placements first.
        for pl in GuardPlacement::ALL {
            assert_eq!(m.run_guarded(xs, pl).unwrap(), m.run(xs).unwrap());
        }
        let step = &mut m.program.steps[0];
        let placement = match case.as_str() {
            // The generated code writes 128 bytes into a 64-byte output.
            "write-past-end" => {
                step.out = TensorType::f32(vec![16]);
                step.arg_bytes[0] = 64;
                GuardPlacement::AgainstEnd
            }
            // The generated code reads 128 bytes from a 64-byte input.
            "read-past-end" => {
                step.arg_bytes[1] = 64;
                GuardPlacement::AgainstEnd
            }
            "read-before-start" => {
                step.exec = mnc_targets::cpu::Exec::Jit(read_before_input);
                GuardPlacement::AgainstStart
            }
            "write-into-input" => {
                step.exec = mnc_targets::cpu::Exec::Jit(write_into_input);
                GuardPlacement::AgainstStart
            }
            "read-past-table" => {
                step.exec = mnc_targets::cpu::Exec::Jit(read_past_table);
                GuardPlacement::AgainstEnd
            }
            other => panic!("unknown guard child case '{other}'"),
        };
        println!("guard child {case}: running the broken step");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        let r = m.run_guarded(xs, placement);
        panic!("guard child {case}: the broken step returned {r:?} without a fault");
    }

    #[test]
    fn a_write_past_the_end_faults() {
        assert_child_segfaults("write-past-end");
    }

    #[test]
    fn a_read_past_the_end_faults() {
        assert_child_segfaults("read-past-end");
    }

    #[test]
    fn a_read_before_the_start_faults() {
        assert_child_segfaults("read-before-start");
    }

    #[test]
    fn a_write_into_an_input_faults() {
        assert_child_segfaults("write-into-input");
    }

    #[test]
    fn a_read_past_the_pointer_table_faults() {
        assert_child_segfaults("read-past-table");
    }

    #[test]
    fn in_bounds_accesses_at_both_ends_do_not_fault() {
        let Some((mut m, x)) = relu32() else { return };
        m.program.steps[0].exec = mnc_targets::cpu::Exec::Jit(touch_both_ends);
        let xs = std::slice::from_ref(&x);
        for pl in GuardPlacement::ALL {
            let y = m.run_guarded(xs, pl).unwrap();
            let y = y[0].as_f32().unwrap();
            assert_eq!((y[0], y[31]), (-15.5, 15.5), "{pl:?}");
            assert!(y[1..31].iter().all(|&v| v == 0.0), "{pl:?}");
        }
    }

    #[test]
    fn guarded_runs_equal_plain_runs() {
        // Pointwise convs (packed weights, residual input) and a depthwise conv (scratch):
        // every kind of slot occurs; also with canaries and the two-thread kernels.
        let t = Target::detect_host();
        if !t.is_jit() {
            eprintln!("SKIPPED guarded_runs_equal_plain_runs: no JIT target runs on this CPU");
            return;
        }
        let mut g = mnc_passes::samples::mobilenet_v2_block(4).unwrap();
        mnc_passes::optimize(&mut g, &Default::default()).unwrap();
        let x = Tensor::from_f32(
            g.node(g.inputs[0]).ty.shape.clone(),
            (0..g.node(g.inputs[0]).ty.numel())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect(),
        )
        .unwrap();
        for opts in [
            CpuOptions::default(),
            CpuOptions {
                guards: true,
                threads: 2,
                ..Default::default()
            },
        ] {
            let m = CompiledModel::compile(&g, t, &opts).unwrap();
            assert_eq!(m.report().fallbacks(), 0);
            let xs = std::slice::from_ref(&x);
            let want = m.run(xs).unwrap();
            for pl in GuardPlacement::ALL {
                assert_eq!(m.run_guarded(xs, pl).unwrap(), want, "{pl:?} {opts:?}");
            }
        }
    }

    #[test]
    fn a_pointer_table_that_does_not_fit_is_refused_before_the_call() {
        let Some((mut m, x)) = relu32() else {
            return;
        };
        let xs = std::slice::from_ref(&x);
        assert!((2..=m.program.steps[0].args.len()).contains(&m.program.steps[0].slots_read));
        // Plain runs and both guard-page placements share `check_slots`.
        let runs = |m: &CompiledModel| {
            let mut errs = vec![m.run(xs).unwrap_err()];
            for pl in GuardPlacement::ALL {
                errs.push(m.run_guarded(xs, pl).unwrap_err());
            }
            errs
        };
        // The input slot moved to the end of the arena: a plain run used to build the
        // pointer with an unchecked `add` and let the code read 64 bytes past the arena.
        let arena = m.program.arena_bytes;
        m.program.steps[0].args[1] = Loc::Arena(arena - 64);
        for e in runs(&m) {
            assert!(
                matches!(
                    &e,
                    CpuRunError::PointerTable {
                        source: GuardError::OutOfRange { slot: 1, .. },
                        ..
                    }
                ),
                "{e}"
            );
            assert!(
                e.to_string().starts_with(
                    "step 'relu' (Act): refusing to call its code: pointer-table slot 1"
                ),
                "{e}"
            );
        }
        m.program.steps[0].args[1] = Loc::Arena(0);
        m.program.steps[0].arg_bytes.pop();
        for e in runs(&m) {
            assert!(
                matches!(
                    &e,
                    CpuRunError::PointerTable {
                        source: GuardError::SlotSizes { .. },
                        ..
                    }
                ),
                "{e}"
            );
        }
        // A table shorter than the code reads.
        m.program.steps[0].args.truncate(1);
        for e in runs(&m) {
            assert!(
                matches!(
                    &e,
                    CpuRunError::PointerTable {
                        source: GuardError::ShortTable { read: 2, len: 1 },
                        ..
                    }
                ),
                "{e}"
            );
        }
    }
}
