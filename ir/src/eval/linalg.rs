//! Matrix products: ONNX Gemm (transposes, alpha/beta, broadcast C, fused epilogue) and
//! numpy-style batched MatMul.

use super::{broadcast_strides, f32_data, f32_tensor, next_index};
use crate::error::IrError;
use crate::op::Gemm;
use crate::tensor::Tensor;

/// `y = act(alpha * (A' B') + beta * C + residual)`, where the dot product accumulates in f32
/// with `k` ascending from `0.0`, and `A' = A^T` if `trans_a` (likewise B).
pub fn gemm(g: &Gemm, ins: &[&Tensor], out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let a = f32_data(ins[0], "Gemm A")?;
    let b = f32_data(ins[1], "Gemm B")?;
    let (m, n) = (out_shape[0], out_shape[1]);
    let k = if g.trans_a {
        ins[0].shape[0]
    } else {
        ins[0].shape[1]
    };
    let a_at = |i: usize, p: usize| {
        if g.trans_a {
            a[p * m + i]
        } else {
            a[i * k + p]
        }
    };
    let b_at = |p: usize, j: usize| {
        if g.trans_b {
            b[j * k + p]
        } else {
            b[p * n + j]
        }
    };
    let mut next = 2;
    let c = if g.has_c {
        next += 1;
        let ct = ins[2];
        Some((f32_data(ct, "Gemm C")?, broadcast_strides(&ct.shape, 2)))
    } else {
        None
    };
    let residual = if g.epilogue.residual {
        Some(f32_data(ins[next], "Gemm residual operand")?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a_at(i, p) * b_at(p, j);
            }
            let mut v = g.alpha * acc;
            if let Some((cv, cs)) = &c {
                v += g.beta * cv[i * cs[0] + j * cs[1]];
            }
            if let Some(r) = residual {
                v += r[i * n + j];
            }
            if let Some(act) = g.epilogue.act {
                v = act.apply(v);
            }
            out.push(v);
        }
    }
    f32_tensor(out_shape, out)
}

/// numpy `matmul` on rank >= 2 operands with broadcast batch dimensions; each dot product
/// accumulates in f32 with `k` ascending from `0.0`.
pub fn matmul(a: &Tensor, b: &Tensor, out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let av = f32_data(a, "MatMul A")?;
    let bv = f32_data(b, "MatMul B")?;
    let (ra, rb, r) = (a.shape.len(), b.shape.len(), out_shape.len());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    let batch = &out_shape[..r - 2];
    // Batch strides in units of whole matrices (0 along broadcast axes).
    let sa = broadcast_strides(&a.shape[..ra - 2], r - 2);
    let sb = broadcast_strides(&b.shape[..rb - 2], r - 2);
    let nb: usize = batch.iter().product();
    let mut out = vec![0.0f32; nb * m * n];
    let mut idx = vec![0; r - 2];
    for bi in 0..nb {
        let oa: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum::<usize>() * m * k;
        let ob: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum::<usize>() * k * n;
        let y = &mut out[bi * m * n..][..m * n];
        // i, p, j order: every y[i][j] still sums its terms with p ascending.
        for i in 0..m {
            for p in 0..k {
                let x = av[oa + i * k + p];
                let brow = &bv[ob + p * n..][..n];
                for (yj, &bj) in y[i * n..][..n].iter_mut().zip(brow) {
                    *yj += x * bj;
                }
            }
        }
        next_index(&mut idx, batch);
    }
    f32_tensor(out_shape, out)
}

#[cfg(test)]
mod tests {
    use super::super::eval_op;
    use super::super::testutil::*;
    use crate::op::{Activation, Epilogue, Gemm, Op};

    #[test]
    fn gemm_plain_and_transposed() {
        // A = [[1,2,3],[4,5,6]] (2x3), B = [[1,0],[0,1],[1,1]] (3x2): AB = [[4,5],[10,11]]
        let a = tf(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = tf(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let y = eval_op(&Op::Gemm(Gemm::default()), &[&a, &b]).unwrap();
        assert_close(&y, &[2, 2], &[4., 5., 10., 11.], 0.0);
        // same product with both operands stored transposed
        let at = tf(&[3, 2], &[1., 4., 2., 5., 3., 6.]);
        let bt = tf(&[2, 3], &[1., 0., 1., 0., 1., 1.]);
        let g = Gemm {
            trans_a: true,
            trans_b: true,
            ..Default::default()
        };
        let y = eval_op(&Op::Gemm(g), &[&at, &bt]).unwrap();
        assert_close(&y, &[2, 2], &[4., 5., 10., 11.], 0.0);
        let g = Gemm {
            trans_b: true,
            ..Default::default()
        };
        let y = eval_op(&Op::Gemm(g), &[&a, &bt]).unwrap();
        assert_close(&y, &[2, 2], &[4., 5., 10., 11.], 0.0);
        // A^T A with trans_a only: [[17,22,27],[22,29,36],[27,36,45]]
        let g = Gemm {
            trans_a: true,
            ..Default::default()
        };
        let y = eval_op(&Op::Gemm(g), &[&a, &a]).unwrap();
        assert_close(
            &y,
            &[3, 3],
            &[17., 22., 27., 22., 29., 36., 27., 36., 45.],
            0.0,
        );
        // inner mismatch
        assert!(eval_op(&Op::Gemm(Gemm::default()), &[&a, &a]).is_err());
    }

    #[test]
    fn gemm_alpha_beta_c_broadcast_epilogue() {
        let a = tf(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = tf(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let g = Gemm {
            alpha: 2.0,
            beta: 0.5,
            has_c: true,
            ..Default::default()
        };
        // C as [N]: row broadcast. 2*[[4,5],[10,11]] + 0.5*[2,-4]
        let y = eval_op(&Op::Gemm(g.clone()), &[&a, &b, &tf(&[2], &[2., -4.])]).unwrap();
        assert_close(&y, &[2, 2], &[9., 8., 21., 20.], 0.0);
        // C as [M,1]: column broadcast
        let y = eval_op(&Op::Gemm(g.clone()), &[&a, &b, &tf(&[2, 1], &[2., -4.])]).unwrap();
        assert_close(&y, &[2, 2], &[9., 11., 18., 20.], 0.0);
        // C scalar and full
        let y = eval_op(&Op::Gemm(g.clone()), &[&a, &b, &tf(&[], &[10.])]).unwrap();
        assert_close(&y, &[2, 2], &[13., 15., 25., 27.], 0.0);
        let y = eval_op(
            &Op::Gemm(g.clone()),
            &[&a, &b, &tf(&[2, 2], &[0., 2., 4., 6.])],
        )
        .unwrap();
        assert_close(&y, &[2, 2], &[8., 11., 22., 25.], 0.0);
        // bad C
        assert!(eval_op(&Op::Gemm(g.clone()), &[&a, &b, &tf(&[3], &[0.; 3])]).is_err());
        // residual after C, then activation (clip 0..20)
        let ge = Gemm {
            epilogue: Epilogue {
                residual: true,
                act: Some(Activation::Clip {
                    min: 0.0,
                    max: 20.0,
                }),
            },
            ..g
        };
        let r = tf(&[2, 2], &[-10., 1., 0., 1.]);
        let y = eval_op(&Op::Gemm(ge), &[&a, &b, &tf(&[2], &[2., -4.]), &r]).unwrap();
        assert_close(&y, &[2, 2], &[0., 9., 20., 20.], 0.0);
    }

    #[test]
    fn matmul_batch_broadcast() {
        // a: [3,1,2,2] (batch 3), b: [2,2,1] (batch 2) -> [3,2,2,1]
        let a = tf(
            &[3, 1, 2, 2],
            &[1., 0., 0., 1., 2., 0., 0., 2., 0., 1., 1., 0.],
        );
        let b = tf(&[2, 2, 1], &[1., 2., 3., 4.]);
        let y = eval_op(&Op::MatMul, &[&a, &b]).unwrap();
        // I*b0=[1,2], I*b1=[3,4]; 2I: [2,4],[6,8]; swap: [2,1],[4,3]
        assert_close(
            &y,
            &[3, 2, 2, 1],
            &[1., 2., 3., 4., 2., 4., 6., 8., 2., 1., 4., 3.],
            0.0,
        );
        // plain 2-D
        let p = tf(&[1, 3], &[1., 2., 3.]);
        let q = tf(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
        assert_close(
            &eval_op(&Op::MatMul, &[&p, &q]).unwrap(),
            &[1, 2],
            &[22., 28.],
            0.0,
        );
        assert!(eval_op(&Op::MatMul, &[&q, &q]).is_err());
        assert!(eval_op(&Op::MatMul, &[&tf(&[3], &[0.; 3]), &q]).is_err());
    }

    #[test]
    fn gemm_matmul_random_agree() {
        // 7x5 by 5x3 with independent f64 dot products as the reference
        let av = rand_vec(35, 1);
        let bv = rand_vec(15, 2);
        let a = tf(&[7, 5], &av);
        let b = tf(&[5, 3], &bv);
        let want: Vec<f32> = (0..7)
            .flat_map(|i| {
                let (av, bv) = (&av, &bv);
                (0..3).map(move |j| {
                    (0..5)
                        .map(|p| av[i * 5 + p] as f64 * bv[p * 3 + j] as f64)
                        .sum::<f64>() as f32
                })
            })
            .collect();
        assert_close(
            &eval_op(&Op::Gemm(Gemm::default()), &[&a, &b]).unwrap(),
            &[7, 3],
            &want,
            1e-6,
        );
        assert_close(
            &eval_op(&Op::MatMul, &[&a, &b]).unwrap(),
            &[7, 3],
            &want,
            1e-6,
        );
    }

    #[test]
    fn matmul_random_batch_broadcast() {
        // a: [3,1,5,7], b: [4,7,2] -> [3,4,5,2]; reference: explicit per-batch f64 dot products
        let av = rand_vec(3 * 5 * 7, 5);
        let bv = rand_vec(4 * 7 * 2, 6);
        let y = eval_op(
            &Op::MatMul,
            &[&tf(&[3, 1, 5, 7], &av), &tf(&[4, 7, 2], &bv)],
        )
        .unwrap();
        let mut want = Vec::new();
        for i in 0..3 {
            for j in 0..4 {
                for r in 0..5 {
                    for c in 0..2 {
                        let s: f64 = (0..7)
                            .map(|p| {
                                av[(i * 5 + r) * 7 + p] as f64 * bv[(j * 7 + p) * 2 + c] as f64
                            })
                            .sum();
                        want.push(s as f32);
                    }
                }
            }
        }
        assert_close(&y, &[3, 4, 5, 2], &want, 1e-6);
    }
}
