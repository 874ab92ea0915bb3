//! How the kernels cut a call into tasks for the pool ([`crate::cpu::par`]): the smallest
//! call worth splitting, tasks per thread, near-equal ranges, and ranges of planes with a
//! scratch area per task.

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

/// Runs `f(q0, q1, t)` over ranges of `0..n` planes on `threads`: one task (`t = 0`, every
/// plane) below [`PAR_MIN_WORK`] multiply-adds (`work`) or on one thread, else at most
/// `max_tasks` (the scratch areas a geometry reserves, one per task `t`).
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
        let (q0, q1) = part(n, tasks, t);
        f(q0, q1, t)
    });
}

#[cfg(test)]
mod tests {
    use super::part;

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
