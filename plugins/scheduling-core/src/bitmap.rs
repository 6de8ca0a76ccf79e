//! Node bitmaps as the `scheduling` interface passes them: bit `i` of word `i / 64` is node `i`.
//!
//! Words missing from the shorter operand count as zero unless a function says otherwise, so a
//! bitmap only needs to be as long as its highest set bit.

/// Number of words that hold `bits` bits.
pub fn words_for(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// Word index and bit mask of node `id`.
#[inline]
fn locate(id: u32) -> (usize, u64) {
    ((id / 64) as usize, 1 << (id % 64))
}

/// Whether node `id` is set.
#[inline]
pub fn get(words: &[u64], id: u32) -> bool {
    let (w, bit) = locate(id);
    words.get(w).is_some_and(|x| x & bit != 0)
}

/// Sets node `id`, growing `words` if needed.
#[inline]
pub fn set(words: &mut Vec<u64>, id: u32) {
    let (w, bit) = locate(id);
    if words.len() <= w {
        words.resize(w + 1, 0);
    }
    if let Some(x) = words.get_mut(w) {
        *x |= bit;
    }
}

/// Clears node `id`.
#[inline]
pub fn clear(words: &mut [u64], id: u32) {
    let (w, bit) = locate(id);
    if let Some(x) = words.get_mut(w) {
        *x &= !bit;
    }
}

/// Sets node `id` if `on`, clears it otherwise.
#[inline]
pub fn assign(words: &mut Vec<u64>, id: u32, on: bool) {
    if on { set(words, id) } else { clear(words, id) }
}

/// Number of set bits.
pub fn count(words: &[u64]) -> u32 {
    words.iter().map(|w| w.count_ones()).sum()
}

/// Whether no bit is set.
pub fn is_empty(words: &[u64]) -> bool {
    words.iter().all(|&w| w == 0)
}

/// `a &= b`, where the words of `a` past the end of `b` are ANDed with `tail` (0: cleared,
/// `u64::MAX`: kept).
#[inline]
pub fn and_with(a: &mut [u64], b: &[u64], tail: u64) {
    let n = a.len().min(b.len());
    let (head, rest) = a.split_at_mut(n);
    for (x, y) in head.iter_mut().zip(b) {
        *x &= y;
    }
    if tail != u64::MAX {
        for x in rest {
            *x &= tail;
        }
    }
}

/// `a &= !b`.
#[inline]
pub fn and_not(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x &= !y;
    }
}

/// Whether `a & b` has a bit set.
#[inline]
pub fn intersects(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).any(|(x, y)| x & y != 0)
}

/// Whether every bit of `a` is also set in `b`.
#[inline]
pub fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter()
        .enumerate()
        .all(|(i, x)| x & !b.get(i).copied().unwrap_or(0) == 0)
}

/// `a |= b`, growing `a` to the length of `b` if needed.
pub fn or_assign(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x |= y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ids: &[u32]) -> Vec<u64> {
        let mut w = Vec::new();
        for &id in ids {
            set(&mut w, id);
        }
        w
    }

    fn ids(words: &[u64]) -> Vec<u32> {
        (0..words.len() as u32 * 64)
            .filter(|&i| get(words, i))
            .collect()
    }

    #[test]
    fn set_get_clear_count() {
        let mut w = of(&[0, 5, 63, 64, 130]);
        assert_eq!(w.len(), 3);
        assert!(get(&w, 63) && get(&w, 64) && !get(&w, 65) && !get(&w, 9999));
        clear(&mut w, 5);
        assign(&mut w, 1, true);
        assign(&mut w, 0, false);
        assert_eq!(ids(&w), vec![1, 63, 64, 130]);
        assert_eq!(count(&w), 4);
        assert_eq!(words_for(129), 3);
        assert!(is_empty(&[0, 0]) && !is_empty(&w));
    }

    #[test]
    fn and_with_tail() {
        let mut a = of(&[1, 70, 140]);
        and_with(&mut a, &of(&[1]), 0);
        assert_eq!(ids(&a), vec![1]);
        let mut a = of(&[1, 2, 70, 140]);
        and_with(&mut a, &of(&[2]), u64::MAX);
        assert_eq!(ids(&a), vec![2, 70, 140]);
    }

    #[test]
    fn not_subset_intersect_or() {
        let mut a = of(&[1, 2, 70]);
        and_not(&mut a, &of(&[2]));
        assert_eq!(ids(&a), vec![1, 70]);
        assert!(intersects(&a, &of(&[70])) && !intersects(&a, &of(&[3])));
        assert!(is_subset(&of(&[1]), &a) && !is_subset(&a, &of(&[1])));
        let mut o = of(&[1]);
        or_assign(&mut o, &of(&[200]));
        assert_eq!(ids(&o), vec![1, 200]);
    }
}
