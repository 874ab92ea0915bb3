//! A thin layer over `cranelift-frontend`'s `FunctionBuilder` for the op lowerings: counted
//! loops, conditionals, f32x4 loads/stores with scalar tails, an elementwise map, horizontal
//! sums and the activations (with a vectorized `exp`).
//!
//! Every generated function has the signature `fn(args: *const *mut u8)`: `args` is the
//! pointer table of the step (output, inputs, packed constants, scratch), see `lower`.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, BlockArg, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use mnc_ir::Activation;

/// Builder state for one generated function.
pub struct Emitter<'a> {
    /// The underlying Cranelift builder.
    pub b: FunctionBuilder<'a>,
    /// The pointer-table argument.
    pub table: Value,
    /// Whether `fma` may be emitted (the target has FMA).
    pub fma: bool,
    /// Number of pointer-table slots the generated code reads (one past the highest slot
    /// [`Emitter::arg`] loaded): the compiler refuses a plan whose table is shorter, and the
    /// runtime checks the table's length before every call.
    pub slots_read: usize,
}

/// How a map operand is read: a contiguous run, or one value broadcast to every element.
#[derive(Clone, Copy)]
pub enum Operand {
    /// Base address (bytes) of a contiguous f32 run.
    Contig(Value),
    /// An f32x4 value with the same scalar in every lane.
    Splat(Value),
}

/// Flags for every load/store the generated code makes: no trap expected (the plan
/// guarantees the address is in bounds), no alignment assumed.
pub fn mf() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl<'a> Emitter<'a> {
    /// Address stored in slot `i` of the pointer table (the only way generated code reads
    /// the table; recorded in [`Emitter::slots_read`]).
    pub fn arg(&mut self, i: usize) -> Value {
        self.slots_read = self.slots_read.max(i + 1);
        self.b
            .ins()
            .load(types::I64, mf(), self.table, (i * 8) as i32)
    }
    /// A 64-bit integer constant.
    pub fn c64(&mut self, v: i64) -> Value {
        self.b.ins().iconst(types::I64, v)
    }
    /// An f32x4 with `v` in every lane.
    pub fn splat(&mut self, v: f32) -> Value {
        let s = self.b.ins().f32const(v);
        self.b.ins().splat(types::F32X4, s)
    }
    /// Broadcasts a scalar f32 value to f32x4.
    pub fn splat_v(&mut self, s: Value) -> Value {
        self.b.ins().splat(types::F32X4, s)
    }
    /// `base + off` with a constant byte offset.
    pub fn add_c(&mut self, base: Value, off: i64) -> Value {
        if off == 0 {
            base
        } else {
            self.b.ins().iadd_imm_s(base, off)
        }
    }
    /// `base + idx * scale` (bytes).
    pub fn add_scaled(&mut self, base: Value, idx: Value, scale: i64) -> Value {
        let o = if scale == 1 {
            idx
        } else {
            self.b.ins().imul_imm_s(idx, scale)
        };
        self.b.ins().iadd(base, o)
    }
    /// `a * b + c` on f32x4 (fused when the target has FMA).
    pub fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let m = self.b.ins().fmul(a, b);
            self.b.ins().fadd(m, c)
        }
    }

    /// Loads a `ty` from `addr + off` bytes. The offset goes into the instruction's 32-bit
    /// immediate only when it fits; a larger one (a plane past 2 GiB) is added to the address
    /// first, never truncated.
    pub fn load_at(&mut self, ty: types::Type, addr: Value, off: i64) -> Value {
        let (a, o) = self.split_offset(addr, off);
        self.b.ins().load(ty, mf(), a, o)
    }
    /// Stores `v` at `addr + off` bytes (offsets as in [`Emitter::load_at`]).
    pub fn store_at(&mut self, v: Value, addr: Value, off: i64) {
        let (a, o) = self.split_offset(addr, off);
        self.b.ins().store(mf(), v, a, o);
    }
    /// `(addr, off)` as a base and a 32-bit immediate offset.
    fn split_offset(&mut self, addr: Value, off: i64) -> (Value, i32) {
        match i32::try_from(off) {
            Ok(o) => (addr, o),
            Err(_) => (self.add_c(addr, off), 0),
        }
    }

    /// Loads 4 lanes from `addr` (`lanes == 4`), or one f32 broadcast to all lanes.
    pub fn load_lanes(&mut self, addr: Value, lanes: usize) -> Value {
        if lanes == 4 {
            self.b.ins().load(types::F32X4, mf(), addr, 0)
        } else {
            let s = self.b.ins().load(types::F32, mf(), addr, 0);
            self.splat_v(s)
        }
    }
    /// Stores 4 lanes to `addr` (`lanes == 4`), or lane 0 only.
    pub fn store_lanes(&mut self, v: Value, addr: Value, lanes: usize) {
        if lanes == 4 {
            self.b.ins().store(mf(), v, addr, 0);
        } else {
            let s = self.b.ins().extractlane(v, 0);
            self.b.ins().store(mf(), s, addr, 0);
        }
    }

    /// Emits `for iv in (lo..hi).step_by(step) { body(iv) }` with static bounds (nothing when
    /// the range is empty). `iv` is an i64.
    pub fn for_range(&mut self, lo: i64, hi: i64, step: i64, body: impl FnOnce(&mut Self, Value)) {
        if hi <= lo {
            return;
        }
        if hi - lo <= step {
            let iv = self.c64(lo);
            body(self, iv);
            return;
        }
        let header = self.b.create_block();
        self.b.append_block_param(header, types::I64);
        let exit = self.b.create_block();
        let lo_v = self.c64(lo);
        self.b.ins().jump(header, &[lo_v.into()]);
        self.b.switch_to_block(header);
        let iv = self.b.block_params(header)[0];
        body(self, iv);
        let next = self.b.ins().iadd_imm_s(iv, step);
        let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, hi);
        self.b.ins().brif(more, header, &[next.into()], exit, &[]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
    }

    /// Emits `if cond != 0 { body() }`.
    pub fn if_then(&mut self, cond: Value, body: impl FnOnce(&mut Self)) {
        let then_b = self.b.create_block();
        let merge = self.b.create_block();
        self.b.ins().brif(cond, then_b, &[], merge, &[]);
        self.b.seal_block(then_b);
        self.b.switch_to_block(then_b);
        body(self);
        self.b.ins().jump(merge, &[]);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
    }

    /// Emits `out[i] = f(ops[0][i], ops[1][i], ...)` for `i in 0..n` (f32 elements): a loop
    /// over f32x4 vectors unrolled by `unroll`, then single-lane tail elements.
    pub fn map(
        &mut self,
        n: usize,
        out: Value,
        ops: &[Operand],
        f: &mut dyn FnMut(&mut Self, &[Value]) -> Value,
    ) {
        let vec_n = n / 4 * 4;
        let unroll = if vec_n >= 16 { 4 } else { 1 };
        let body_n = vec_n / (4 * unroll) * (4 * unroll);
        let mut chunk = |e: &mut Self, byte_off: Value, lanes: usize| {
            let vals: Vec<Value> = ops
                .iter()
                .map(|o| match *o {
                    Operand::Splat(v) => v,
                    Operand::Contig(base) => {
                        let a = e.b.ins().iadd(base, byte_off);
                        e.load_lanes(a, lanes)
                    }
                })
                .collect();
            let r = f(e, &vals);
            let a = e.b.ins().iadd(out, byte_off);
            e.store_lanes(r, a, lanes);
        };
        self.for_range(0, (body_n * 4) as i64, (16 * unroll) as i64, |e, off| {
            for u in 0..unroll {
                let o = e.add_c(off, (u * 16) as i64);
                chunk(e, o, 4);
            }
        });
        self.for_range((body_n * 4) as i64, (vec_n * 4) as i64, 16, |e, off| {
            chunk(e, off, 4)
        });
        for i in vec_n..n {
            let off = self.c64((i * 4) as i64);
            chunk(self, off, 1);
        }
    }

    /// Horizontal sum of an f32x4 (lanes 0+1+2+3), as an f32 scalar.
    pub fn hsum(&mut self, v: Value) -> Value {
        let l: Vec<Value> = (0..4).map(|i| self.b.ins().extractlane(v, i)).collect();
        let a = self.b.ins().fadd(l[0], l[1]);
        let c = self.b.ins().fadd(l[2], l[3]);
        self.b.ins().fadd(a, c)
    }

    /// Sum of `n` contiguous f32 at `base` as an f32 scalar (4 vector accumulators).
    pub fn sum(&mut self, base: Value, n: usize) -> Value {
        self.dot(base, None, n)
    }

    /// Dot product of `n` contiguous f32 at `a` and `b` (or the plain sum when `b` is
    /// `None`), as an f32 scalar.
    pub fn dot(&mut self, a: Value, b: Option<Value>, n: usize) -> Value {
        let accs = 4usize;
        let block = 4 * accs;
        let nb = n / block * block;
        let z = self.splat(0.0);
        let mut acc = vec![z; accs];
        if nb > 0 {
            let header = self.b.create_block();
            self.b.append_block_param(header, types::I64);
            for _ in 0..accs {
                self.b.append_block_param(header, types::F32X4);
            }
            let exit = self.b.create_block();
            for _ in 0..accs {
                self.b.append_block_param(exit, types::F32X4);
            }
            let zero = self.c64(0);
            let mut init: Vec<BlockArg> = vec![zero.into()];
            init.extend(acc.iter().map(|&v| BlockArg::from(v)));
            self.b.ins().jump(header, &init);
            self.b.switch_to_block(header);
            let params = self.b.block_params(header).to_vec();
            let off = params[0];
            let mut next_acc = Vec::with_capacity(accs);
            for (u, &acc_u) in params[1..].iter().enumerate() {
                let pa = self.b.ins().iadd(a, off);
                let va = self.b.ins().load(types::F32X4, mf(), pa, (u * 16) as i32);
                let r = match b {
                    Some(bp) => {
                        let pb = self.b.ins().iadd(bp, off);
                        let vb = self.b.ins().load(types::F32X4, mf(), pb, (u * 16) as i32);
                        self.mul_add(va, vb, acc_u)
                    }
                    None => self.b.ins().fadd(va, acc_u),
                };
                next_acc.push(r);
            }
            let next = self.b.ins().iadd_imm_s(off, (block * 4) as i64);
            let more = self
                .b
                .ins()
                .icmp_imm_s(IntCC::SignedLessThan, next, (nb * 4) as i64);
            let mut back: Vec<BlockArg> = vec![next.into()];
            back.extend(next_acc.iter().map(|&v| BlockArg::from(v)));
            let out: Vec<_> = next_acc.iter().map(|&v| BlockArg::from(v)).collect();
            self.b.ins().brif(more, header, &back, exit, &out);
            self.b.seal_block(header);
            self.b.switch_to_block(exit);
            self.b.seal_block(exit);
            acc = self.b.block_params(exit).to_vec();
        }
        // Remaining whole vectors, then scalars, into accumulator 0.
        let mut i = nb;
        while i + 4 <= n {
            let pa = self.add_c(a, (i * 4) as i64);
            let va = self.b.ins().load(types::F32X4, mf(), pa, 0);
            acc[0] = match b {
                Some(bp) => {
                    let pb = self.add_c(bp, (i * 4) as i64);
                    let vb = self.b.ins().load(types::F32X4, mf(), pb, 0);
                    self.mul_add(va, vb, acc[0])
                }
                None => self.b.ins().fadd(va, acc[0]),
            };
            i += 4;
        }
        let s01 = self.b.ins().fadd(acc[0], acc[1]);
        let s23 = self.b.ins().fadd(acc[2], acc[3]);
        let s = self.b.ins().fadd(s01, s23);
        let mut total = self.hsum(s);
        while i < n {
            let pa = self.add_c(a, (i * 4) as i64);
            let va = self.b.ins().load(types::F32, mf(), pa, 0);
            let t = match b {
                Some(bp) => {
                    let pb = self.add_c(bp, (i * 4) as i64);
                    let vb = self.b.ins().load(types::F32, mf(), pb, 0);
                    self.b.ins().fmul(va, vb)
                }
                None => va,
            };
            total = self.b.ins().fadd(total, t);
            i += 1;
        }
        total
    }

    /// `exp(x)` on f32x4: Cephes-style range reduction `x = n ln2 + r`, a degree-6
    /// polynomial for `exp(r)` and `2^n` built in the exponent bits (relative error about
    /// 2e-7 on [-87.3, 88.37]; `x` is clamped to [-87.3, 89]: above 88.38 the result is
    /// `+inf`, as `f32::exp` overflows, so SiLU(-inf) = NaN as on every path; NaN
    /// propagates: Cranelift's `fmin`/`fmax` return NaN when either operand is NaN).
    pub fn exp(&mut self, x: Value) -> Value {
        let hi = self.splat(89.0);
        let lo = self.splat(-87.3);
        let x = self.b.ins().fmin(x, hi);
        let x = self.b.ins().fmax(x, lo);
        let log2e = self.splat(std::f32::consts::LOG2_E);
        let t = self.b.ins().fmul(x, log2e);
        let fx = self.b.ins().nearest(t);
        let c1 = self.splat(0.693_359_4);
        let c2 = self.splat(-2.121_944_4e-4);
        let a = self.b.ins().fmul(fx, c1);
        let r = self.b.ins().fsub(x, a);
        let a2 = self.b.ins().fmul(fx, c2);
        let r = self.b.ins().fsub(r, a2);
        let coeffs = [
            1.987_569_1e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ];
        let mut y = self.splat(coeffs[0]);
        for &c in &coeffs[1..] {
            let cv = self.splat(c);
            y = self.mul_add(y, r, cv);
        }
        let r2 = self.b.ins().fmul(r, r);
        let one = self.splat(1.0);
        let r1 = self.b.ins().fadd(r, one);
        let y = self.mul_add(y, r2, r1);
        let n = self.b.ins().fcvt_to_sint_sat(types::I32X4, fx);
        let bias = self.b.ins().iconst(types::I32, 127);
        let bias = self.b.ins().splat(types::I32X4, bias);
        let e = self.b.ins().iadd(n, bias);
        let e = self.b.ins().ishl_imm_s(e, 23);
        let pow2 = self.b.ins().bitcast(
            types::F32X4,
            MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little),
            e,
        );
        self.b.ins().fmul(y, pow2)
    }

    /// `1 / (1 + exp(-x))` on f32x4.
    pub fn sigmoid(&mut self, x: Value) -> Value {
        let nx = self.b.ins().fneg(x);
        let e = self.exp(nx);
        let one = self.splat(1.0);
        let d = self.b.ins().fadd(one, e);
        self.b.ins().fdiv(one, d)
    }

    /// `min(max(x, lo), hi)` on f32x4.
    pub fn clamp(&mut self, x: Value, lo: f32, hi: f32) -> Value {
        let l = self.splat(lo);
        let h = self.splat(hi);
        let v = self.b.ins().fmax(x, l);
        self.b.ins().fmin(v, h)
    }

    /// Applies an activation to an f32x4 (semantics of [`Activation::apply`]: NaN
    /// propagates, as it does through Cranelift's `fmax`/`fmin`).
    pub fn act(&mut self, a: Activation, x: Value) -> Value {
        match a {
            Activation::Relu => {
                let z = self.splat(0.0);
                self.b.ins().fmax(x, z)
            }
            Activation::Clip { min, max } => self.clamp(x, min, max),
            Activation::Sigmoid => self.sigmoid(x),
            Activation::HardSigmoid { alpha, beta } => {
                let al = self.splat(alpha);
                let be = self.splat(beta);
                let v = self.mul_add(x, al, be);
                self.clamp(v, 0.0, 1.0)
            }
            Activation::HardSwish => {
                let s = self.splat(1.0 / 6.0);
                let h = self.splat(0.5);
                let v = self.mul_add(x, s, h);
                let g = self.clamp(v, 0.0, 1.0);
                self.b.ins().fmul(x, g)
            }
            Activation::Silu => {
                let nx = self.b.ins().fneg(x);
                let e = self.exp(nx);
                let one = self.splat(1.0);
                let d = self.b.ins().fadd(one, e);
                self.b.ins().fdiv(x, d)
            }
        }
    }

    /// An activation applied to a scalar f32 (through lane 0 of a splat).
    pub fn act_scalar(&mut self, a: Activation, x: Value) -> Value {
        let v = self.splat_v(x);
        let r = self.act(a, v);
        self.b.ins().extractlane(r, 0)
    }

    /// `max` that propagates NaN from either operand, on f32x4 (Cranelift's `fmax`).
    pub fn fmax_nan(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmax(a, b)
    }

    /// Unsigned `v < bound` as a branch condition (also false for "negative" v).
    pub fn in_range(&mut self, v: Value, bound: i64) -> Value {
        self.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, v, bound)
    }

    /// A counted loop with static bounds carrying `init` values (e.g. accumulators) through
    /// the iterations; returns their final values (`init` when the range is empty).
    pub fn for_acc(
        &mut self,
        lo: i64,
        hi: i64,
        step: i64,
        init: Vec<Value>,
        body: impl FnOnce(&mut Self, Value, &[Value]) -> Vec<Value>,
    ) -> Vec<Value> {
        if hi <= lo {
            return init;
        }
        let tys: Vec<_> = init
            .iter()
            .map(|&v| self.b.func.dfg.value_type(v))
            .collect();
        let header = self.b.create_block();
        self.b.append_block_param(header, types::I64);
        let exit = self.b.create_block();
        for &t in &tys {
            self.b.append_block_param(header, t);
            self.b.append_block_param(exit, t);
        }
        let lo_v = self.c64(lo);
        let mut args: Vec<BlockArg> = vec![lo_v.into()];
        args.extend(init.iter().map(|&v| BlockArg::from(v)));
        self.b.ins().jump(header, &args);
        self.b.switch_to_block(header);
        let params = self.b.block_params(header).to_vec();
        let next_vals = body(self, params[0], &params[1..]);
        let next = self.b.ins().iadd_imm_s(params[0], step);
        let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, hi);
        let mut back: Vec<BlockArg> = vec![next.into()];
        back.extend(next_vals.iter().map(|&v| BlockArg::from(v)));
        let out: Vec<_> = next_vals.iter().map(|&v| BlockArg::from(v)).collect();
        self.b.ins().brif(more, header, &back, exit, &out);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.b.block_params(exit).to_vec()
    }

    /// Fills `n` f32 at `dst` with the lanes of the splat `v`.
    pub fn fill(&mut self, n: usize, dst: Value, v: Value) {
        self.map(n, dst, &[], &mut |_, _| v);
    }

    /// Copies `n` contiguous f32 from `src` to `dst` (non-overlapping).
    pub fn copy(&mut self, n: usize, dst: Value, src: Value) {
        self.map(n, dst, &[Operand::Contig(src)], &mut |_, v| v[0]);
    }
}
