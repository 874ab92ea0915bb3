//! A small PTX text builder: typed virtual registers (ptxas allocates the real ones), labels,
//! instructions as text, and helpers for the index arithmetic every kernel needs.
//!
//! Everything is deterministic: register numbers and labels are counters, immediates are
//! printed exactly (`0fXXXXXXXX` for f32).

use crate::epilogue::{ActKind, Epilogue};
use std::fmt::Write;

/// A virtual register, printed as its PTX name (`%r3`, `%rd1`, `%f7`, `%p2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg {
    class: RegClass,
    n: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegClass {
    /// 32-bit integer (`.b32`, used as u32/s32).
    R,
    /// 64-bit integer (`.b64`).
    Rd,
    /// f32.
    F,
    /// predicate.
    P,
}

impl std::fmt::Display for Reg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.class {
            RegClass::R => "%r",
            RegClass::Rd => "%rd",
            RegClass::F => "%f",
            RegClass::P => "%p",
        };
        write!(f, "{p}{}", self.n)
    }
}

/// An f32 immediate in PTX's exact hexadecimal form.
pub fn fimm(v: f32) -> String {
    format!("0f{:08X}", v.to_bits())
}

/// One kernel (`.entry`) under construction. Parameters are all `.u64` global pointers.
#[derive(Debug)]
pub struct Kernel {
    params: Vec<String>,
    body: String,
    counts: [u32; 4],
    labels: u32,
    shared: Vec<(String, usize)>,
    /// Threads per block (emitted as `.maxntid`).
    pub block: u32,
}

impl Kernel {
    /// A kernel with `nparams` pointer parameters and `block` threads per block.
    pub fn new(nparams: usize, block: u32) -> Self {
        Kernel {
            params: (0..nparams).map(|i| format!("param{i}")).collect(),
            body: String::new(),
            counts: [0; 4],
            labels: 0,
            shared: Vec::new(),
            block,
        }
    }

    fn reg(&mut self, class: RegClass) -> Reg {
        let i = class as usize;
        self.counts[i] += 1;
        Reg {
            class,
            n: self.counts[i],
        }
    }
    /// A fresh 32-bit integer register.
    pub fn r(&mut self) -> Reg {
        self.reg(RegClass::R)
    }
    /// A fresh 64-bit integer register.
    pub fn rd(&mut self) -> Reg {
        self.reg(RegClass::Rd)
    }
    /// A fresh f32 register.
    pub fn f(&mut self) -> Reg {
        self.reg(RegClass::F)
    }
    /// A fresh predicate register.
    pub fn p(&mut self) -> Reg {
        self.reg(RegClass::P)
    }
    /// A fresh label name.
    pub fn label(&mut self, what: &str) -> String {
        self.labels += 1;
        format!("$L_{what}_{}", self.labels)
    }

    /// Appends one instruction (a `;` is added).
    pub fn ins(&mut self, s: impl AsRef<str>) {
        self.body.push('\t');
        self.body.push_str(s.as_ref());
        self.body.push_str(";\n");
    }
    /// Places a label.
    pub fn place(&mut self, label: &str) {
        let _ = writeln!(self.body, "{label}:");
    }
    /// Declares a shared array of `floats` f32 (module scope, named after the kernel) and
    /// returns a 32-bit register holding its shared-window address.
    pub fn shared(&mut self, floats: usize) -> Reg {
        let idx = self.shared.len();
        self.shared.push((format!("smem{idx}"), floats));
        let r = self.r();
        self.ins(format!("mov.u32 {r}, @SMEM{idx}@"));
        r
    }

    /// Loads pointer parameter `i` as a global address.
    pub fn param_ptr(&mut self, i: usize) -> Reg {
        let a = self.rd();
        let b = self.rd();
        self.ins(format!("ld.param.u64 {a}, [param{i}]"));
        self.ins(format!("cvta.to.global.u64 {b}, {a}"));
        b
    }

    /// `u32` immediate into a register.
    pub fn imm_u32(&mut self, v: u32) -> Reg {
        let r = self.r();
        self.ins(format!("mov.u32 {r}, {v}"));
        r
    }
    /// f32 immediate into a register.
    pub fn imm_f32(&mut self, v: f32) -> Reg {
        let r = self.f();
        self.ins(format!("mov.f32 {r}, {}", fimm(v)));
        r
    }

    /// `blockIdx.x * blockDim.x + threadIdx.x` (for 1-D grids).
    pub fn global_tid(&mut self) -> Reg {
        let (a, b, c, d) = (self.r(), self.r(), self.r(), self.r());
        self.ins(format!("mov.u32 {a}, %ctaid.x"));
        self.ins(format!("mov.u32 {b}, %ntid.x"));
        self.ins(format!("mov.u32 {c}, %tid.x"));
        self.ins(format!("mad.lo.u32 {d}, {a}, {b}, {c}"));
        d
    }
    /// A special register (`%tid.x`, `%ctaid.y`, ...).
    pub fn special(&mut self, name: &str) -> Reg {
        let r = self.r();
        self.ins(format!("mov.u32 {r}, {name}"));
        r
    }
    /// Branches to `exit` when `i >= n`.
    pub fn exit_if_ge(&mut self, i: Reg, n: u32, exit: &str) {
        let p = self.p();
        self.ins(format!("setp.ge.u32 {p}, {i}, {n}"));
        self.ins(format!("@{p} bra {exit}"));
    }

    /// `a op imm` on u32 (`add`, `mul.lo`, `div`, `rem`, `sub`, `and`, `shr`...).
    pub fn u32_op_imm(&mut self, op: &str, a: Reg, imm: u32) -> Reg {
        let r = self.r();
        let ty = if matches!(op, "and" | "or" | "xor") {
            "b32"
        } else {
            "u32"
        };
        self.ins(format!("{op}.{ty} {r}, {a}, {imm}"));
        r
    }
    /// `a op b` on u32.
    pub fn u32_op(&mut self, op: &str, a: Reg, b: Reg) -> Reg {
        let r = self.r();
        self.ins(format!("{op}.u32 {r}, {a}, {b}"));
        r
    }
    /// `a * imm + b` on u32 (wrapping; callers keep values below 2^32).
    pub fn mad_imm(&mut self, a: Reg, imm: u32, b: Reg) -> Reg {
        let r = self.r();
        self.ins(format!("mad.lo.u32 {r}, {a}, {imm}, {b}"));
        r
    }
    /// Splits a row-major linear index into per-dimension indices of `dims` (outermost
    /// first). The outermost index is not reduced modulo its dimension.
    pub fn decode(&mut self, lin: Reg, dims: &[usize]) -> Vec<Reg> {
        let mut out = vec![lin; dims.len()];
        let mut rest = lin;
        for d in (1..dims.len()).rev() {
            let dim = dims[d] as u32;
            if dim == 1 {
                out[d] = self.imm_u32(0);
                continue;
            }
            out[d] = self.u32_op_imm("rem", rest, dim);
            rest = self.u32_op_imm("div", rest, dim);
        }
        if !dims.is_empty() {
            out[0] = rest;
        }
        out
    }
    /// `sum(idx[i] * strides[i]) + base` as a u32 element offset.
    pub fn dot_strides(&mut self, idx: &[Reg], strides: &[usize], base: u32) -> Reg {
        let mut acc = self.imm_u32(base);
        for (&i, &s) in idx.iter().zip(strides) {
            if s != 0 {
                acc = self.mad_imm(i, s as u32, acc);
            }
        }
        acc
    }
    /// Global address `ptr + 4 * elem` (elem a u32 element index).
    pub fn addr(&mut self, ptr: Reg, elem: Reg) -> Reg {
        let w = self.rd();
        let a = self.rd();
        self.ins(format!("mul.wide.u32 {w}, {elem}, 4"));
        self.ins(format!("add.s64 {a}, {ptr}, {w}"));
        a
    }
    /// Global address `ptr + size * elem` (elem a u32 element index, `size` bytes per
    /// element: 1 for the `u8`/`i8` tensors of the int8 kernels).
    pub fn addr_sized(&mut self, ptr: Reg, elem: Reg, size: u32) -> Reg {
        let w = self.rd();
        let a = self.rd();
        self.ins(format!("mul.wide.u32 {w}, {elem}, {size}"));
        self.ins(format!("add.s64 {a}, {ptr}, {w}"));
        a
    }
    /// Read-only global f32 load `ptr[elem]`.
    pub fn ld(&mut self, ptr: Reg, elem: Reg) -> Reg {
        let a = self.addr(ptr, elem);
        let f = self.f();
        self.ins(format!("ld.global.nc.f32 {f}, [{a}]"));
        f
    }
    /// Global f32 store `ptr[elem] = v`.
    pub fn st(&mut self, ptr: Reg, elem: Reg, v: Reg) {
        let a = self.addr(ptr, elem);
        self.ins(format!("st.global.f32 [{a}], {v}"));
    }
    /// f32 binary op with round-to-nearest (never contracted into an FMA).
    pub fn fop(&mut self, op: &str, a: Reg, b: Reg) -> Reg {
        let r = self.f();
        let rn = if op == "max" || op == "min" {
            ""
        } else {
            ".rn"
        };
        self.ins(format!("{op}{rn}.f32 {r}, {a}, {b}"));
        r
    }
    /// f32 op with an immediate second operand.
    pub fn fop_imm(&mut self, op: &str, a: Reg, imm: f32) -> Reg {
        let r = self.f();
        let rn = if op == "max" || op == "min" {
            ""
        } else {
            ".rn"
        };
        self.ins(format!("{op}{rn}.f32 {r}, {a}, {}", fimm(imm)));
        r
    }
    /// `exp(x)` as `2^(x * log2 e)` (`ex2.approx`, about 2 ulp).
    pub fn exp(&mut self, x: Reg) -> Reg {
        let t = self.fop_imm("mul", x, std::f32::consts::LOG2_E);
        let r = self.f();
        self.ins(format!("ex2.approx.f32 {r}, {t}"));
        r
    }
    /// `min`/`max` (`op`) of `a` and an immediate that returns NaN when `a` is NaN
    /// (`.NaN`, PTX 7.0 and sm_80+): plain `max.f32` returns the other operand.
    fn fop_imm_nan(&mut self, op: &str, a: Reg, imm: f32) -> Reg {
        let r = self.f();
        self.ins(format!("{op}.NaN.f32 {r}, {a}, {}", fimm(imm)));
        r
    }
    /// Applies the activation of epilogue `e` ([`Epilogue::act`], parameters `p0`, `p1`) with
    /// the semantics of [`Activation::apply`](mnc_ir::Activation::apply) (NaN propagates
    /// through the clamps; `ex2.approx` overflows to `+inf`, so SiLU(-inf) = NaN).
    pub fn act(&mut self, e: &Epilogue, x: Reg) -> Reg {
        let (p0, p1) = (e.p0, e.p1);
        match e.act {
            ActKind::None => x,
            ActKind::Relu => self.fop_imm_nan("max", x, 0.0),
            ActKind::Clip => {
                let t = self.fop_imm_nan("max", x, p0);
                self.fop_imm_nan("min", t, p1)
            }
            ActKind::Sigmoid => {
                let e = self.exp_neg(x);
                let one = self.imm_f32(1.0);
                self.fop("div", one, e)
            }
            ActKind::HardSigmoid => {
                let t = self.fop_imm("mul", x, p0);
                let t = self.fop_imm("add", t, p1);
                let t = self.fop_imm_nan("max", t, 0.0);
                self.fop_imm_nan("min", t, 1.0)
            }
            ActKind::HardSwish => {
                let t = self.fop_imm("mul", x, 1.0 / 6.0);
                let t = self.fop_imm("add", t, 0.5);
                let t = self.fop_imm_nan("max", t, 0.0);
                let t = self.fop_imm_nan("min", t, 1.0);
                self.fop("mul", x, t)
            }
            ActKind::Silu => {
                let e = self.exp_neg(x);
                self.fop("div", x, e)
            }
        }
    }
    /// `1 + exp(-x)`.
    fn exp_neg(&mut self, x: Reg) -> Reg {
        let n = self.f();
        self.ins(format!("neg.f32 {n}, {x}"));
        let e = self.exp(n);
        self.fop_imm("add", e, 1.0)
    }
    /// Full-warp butterfly sum of an f32 (every lane ends with the total).
    pub fn warp_sum(&mut self, v: Reg) -> Reg {
        let mut acc = v;
        for off in [16, 8, 4, 2, 1] {
            let t = self.f();
            self.ins(format!("shfl.sync.bfly.b32 {t}, {acc}, {off}, 31, -1"));
            acc = self.fop("add", acc, t);
        }
        acc
    }
    /// Full-warp butterfly max of an f32.
    pub fn warp_max(&mut self, v: Reg) -> Reg {
        let mut acc = v;
        for off in [16, 8, 4, 2, 1] {
            let t = self.f();
            self.ins(format!("shfl.sync.bfly.b32 {t}, {acc}, {off}, 31, -1"));
            acc = self.fop("max", acc, t);
        }
        acc
    }

    /// The kernel's body (without its name): used to deduplicate identical kernels.
    pub fn body_key(&self) -> String {
        let mut s = format!(
            "block{} params{} shared{:?}\n",
            self.block,
            self.params.len(),
            self.shared
        );
        s.push_str(&self.body);
        s
    }

    /// The kernel as PTX text (module-scope shared arrays, then the `.entry`).
    pub fn render(&self, name: &str) -> String {
        let mut out = String::new();
        let mut body = self.body.clone();
        for (i, (sname, floats)) in self.shared.iter().enumerate() {
            let full = format!("{name}_{sname}");
            let _ = writeln!(out, ".shared .align 16 .f32 {full}[{floats}];");
            body = body.replace(&format!("@SMEM{i}@"), &full);
        }
        let _ = writeln!(out, ".visible .entry {name}(");
        for (i, p) in self.params.iter().enumerate() {
            let comma = if i + 1 < self.params.len() { "," } else { "" };
            let _ = writeln!(out, "\t.param .u64 {p}{comma}");
        }
        let _ = writeln!(out, ")");
        let _ = writeln!(out, ".maxntid {}, 1, 1", self.block);
        let _ = writeln!(out, "{{");
        let [r, rd, f, p] = self.counts;
        let _ = writeln!(out, "\t.reg .pred %p<{}>;", p + 1);
        let _ = writeln!(out, "\t.reg .b32 %r<{}>;", r + 1);
        let _ = writeln!(out, "\t.reg .b64 %rd<{}>;", rd + 1);
        let _ = writeln!(out, "\t.reg .f32 %f<{}>;", f + 1);
        out.push_str(&body);
        let _ = writeln!(out, "}}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediates_are_exact_hex() {
        assert_eq!(fimm(1.0), "0f3F800000");
        assert_eq!(fimm(-0.5), "0fBF000000");
        assert_eq!(fimm(6.0), "0f40C00000");
    }

    #[test]
    fn decode_emits_rem_div_chain() {
        let mut k = Kernel::new(1, 32);
        let i = k.global_tid();
        let idx = k.decode(i, &[2, 3, 4]);
        assert_eq!(idx.len(), 3);
        let text = k.render("t");
        assert!(text.contains("rem.u32 %r5, %r4, 4"), "{text}");
        assert!(text.contains("div.u32 %r8, %r6, 3"), "{text}");
        assert!(text.contains(".maxntid 32, 1, 1"));
    }
}
