//! How the kernels cut a call into tasks for the pool ([`crate::cpu::par`]): the smallest
//! call worth splitting, tasks per thread, near-equal ranges ([`part`]), ranges in
//! proportion to tent weights ([`part_tent`]: small tasks where the dispatcher and the pool
//! threads meet), and ranges of planes with a scratch area per task.

/// Multiply-adds below which a call is not split between threads.
pub(super) const PAR_MIN_WORK: usize = 1 << 16;

/// Tasks per thread a split aims for (dynamic claiming balances a slow thread).
pub(super) const TASKS_PER_THREAD: usize = 4;

/// `part(len, parts, i)`: the `i`-th of `parts` nearly equal ranges of `0..len` (lengths
/// `floor` or `ceil` of `len / parts`), the first one the longest: the dispatching thread
/// claims tasks from the front and starts before the pool threads, which claim from the back
/// ([`crate::cpu::par`]). With the longest one last, the pool thread got it and the
/// dispatcher waited: MobileNetV2 int8 at 2 threads, per-op sums of the convs 1.32 -> 1.26
/// ms and of the depthwise convs 0.47 -> 0.46 (Zen 4, 9 rounds).
pub(super) fn part(len: usize, parts: usize, i: usize) -> (usize, usize) {
    (
        len - len * (parts - i) / parts,
        len - len * (parts - i - 1) / parts,
    )
}

/// `S(i)`: the sum of the first `i` of `parts` "tent" weights `w(j) = ceil(parts / 2) -
/// min(j, parts - 1 - j)` (`4, 3, 2, 1, 1, 2, 3, 4` for 8 parts): largest at both ends,
/// smallest in the middle, symmetric.
fn tent_prefix(parts: usize, i: usize) -> usize {
    let h = parts.div_ceil(2);
    // The first `m <= h` weights are `h, h - 1, ..`.
    let head = |m: usize| m * h - m * m.saturating_sub(1) / 2;
    if i <= h {
        head(i)
    } else {
        // By symmetry the last `parts - i` weights sum as the first `parts - i`.
        head(h) + head(parts - h) - head(parts - i)
    }
}

/// The range of `0..len` of task `i` (`lo <= i < hi`) when tasks `lo..hi` of `parts` cut it
/// in proportion to their tent weights ([`tent_prefix`]): the tasks in the middle of the
/// task list, which the dispatcher (claiming from the front) and the pool threads (from the
/// back) reach last, are the smallest, so that whoever finishes first waits for less of the
/// other's last task. Tasks may be empty when `len` is short.
pub(super) fn part_tent(
    len: usize,
    parts: usize,
    lo: usize,
    hi: usize,
    i: usize,
) -> (usize, usize) {
    let (s0, s1) = (tent_prefix(parts, lo), tent_prefix(parts, hi));
    let at = |j: usize| len * (tent_prefix(parts, j) - s0) / (s1 - s0).max(1);
    (at(i), at(i + 1))
}

/// Runs `f(q0, q1, t)` over ranges of `0..n` planes on `threads`: one task (`t = 0`, every
/// plane) below [`PAR_MIN_WORK`] multiply-adds (`work`) or on one thread, else at most
/// `max_tasks` (the scratch areas a geometry reserves, one per task `t`), sized by
/// [`part_tent`] (empty tasks skipped).
pub(super) fn plane_ranges(
    threads: usize,
    n: usize,
    work: usize,
    max_tasks: usize,
    f: &(dyn Fn(usize, usize, usize) + Sync),
) {
    let threads = crate::cpu::par::threads_now(threads);
    let tasks = if threads <= 1 || work < PAR_MIN_WORK {
        1
    } else {
        max_tasks.min(n).max(1)
    };
    if tasks == 1 {
        return f(0, n, 0);
    }
    crate::cpu::par::for_each(threads, tasks, &|t| {
        let (q0, q1) = part_tent(n, tasks, 0, tasks, t);
        if q0 < q1 {
            f(q0, q1, t)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::part;

    #[test]
    fn tent_parts_cover_the_range_smallest_in_the_middle() {
        use super::{part_tent, tent_prefix};
        let w = |p: usize| -> Vec<usize> {
            (0..p)
                .map(|i| tent_prefix(p, i + 1) - tent_prefix(p, i))
                .collect()
        };
        assert_eq!(w(8), [4, 3, 2, 1, 1, 2, 3, 4]);
        assert_eq!(w(5), [3, 2, 1, 2, 3]);
        assert_eq!(w(4), [2, 1, 1, 2]);
        assert_eq!(w(2), [1, 1]);
        assert_eq!(w(1), [1]);
        let r: Vec<_> = (0..4).map(|i| part_tent(600, 4, 0, 4, i)).collect();
        assert_eq!(r, [(0, 200), (200, 300), (300, 400), (400, 600)]);
        // Tasks 4..8 of 8 (the second half of a grid row): growing towards the end.
        let r: Vec<_> = (4..8).map(|i| part_tent(100, 8, 4, 8, i)).collect();
        assert_eq!(r, [(0, 10), (10, 30), (30, 60), (60, 100)]);
        for len in 0..50 {
            for parts in 1..20 {
                for (lo, hi) in [(0, parts), (0, parts / 2), (parts / 2, parts)] {
                    let mut next = 0;
                    for i in lo..hi {
                        let (a, b) = part_tent(len, parts, lo, hi, i);
                        assert_eq!(a, next, "len {len} parts {parts} {lo}..{hi}");
                        assert!(b >= a);
                        next = b;
                    }
                    assert_eq!(next, if lo < hi { len } else { 0 });
                }
            }
        }
    }

    #[test]
    fn parts_cover_the_range_the_first_longest() {
        assert_eq!((part(13, 2, 0), part(13, 2, 1)), ((0, 7), (7, 13)));
        for len in 0..40 {
            for parts in 1..9 {
                let mut next = 0;
                for i in 0..parts {
                    let (a, b) = part(len, parts, i);
                    assert_eq!(a, next);
                    assert!(b - a == len / parts || b - a == len.div_ceil(parts));
                    next = b;
                }
                assert_eq!(next, len);
                let (a, b) = part(len, parts, 0);
                assert_eq!(b - a, len.div_ceil(parts));
            }
        }
    }
}
