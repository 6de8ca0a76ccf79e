//! Node bitmaps as the scheduling world passes them: bit `i` of word `i / 64` stands for node `i`.

/// Number of `u64` words that hold `nodes` bits.
pub fn words_for(nodes: usize) -> usize {
    nodes.div_ceil(64)
}

/// Whether node `id` is set.
#[inline]
pub fn get(words: &[u64], id: u32) -> bool {
    let (w, b) = ((id / 64) as usize, id % 64);
    words.get(w).is_some_and(|x| x & (1 << b) != 0)
}

/// Sets node `id` (growing `words` if needed).
#[inline]
pub fn set(words: &mut Vec<u64>, id: u32) {
    let (w, b) = ((id / 64) as usize, id % 64);
    if words.len() <= w {
        words.resize(w + 1, 0);
    }
    words[w] |= 1 << b;
}

/// Clears node `id`.
#[inline]
pub fn clear(words: &mut [u64], id: u32) {
    let (w, b) = ((id / 64) as usize, id % 64);
    if let Some(x) = words.get_mut(w) {
        *x &= !(1 << b);
    }
}

/// `a &= b`, word by word; words missing from `b` count as zero.
pub fn and_assign(a: &mut [u64], b: &[u64]) {
    for (i, x) in a.iter_mut().enumerate() {
        *x &= b.get(i).copied().unwrap_or(0);
    }
}

/// Number of set bits.
pub fn count(words: &[u64]) -> u32 {
    words.iter().map(|w| w.count_ones()).sum()
}

/// Ids of the set bits, ascending.
pub fn ones(words: &[u64]) -> impl Iterator<Item = u32> + '_ {
    words.iter().enumerate().flat_map(|(i, &w)| {
        let mut w = w;
        std::iter::from_fn(move || {
            if w == 0 {
                return None;
            }
            let b = w.trailing_zeros();
            w &= w - 1;
            Some(i as u32 * 64 + b)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_ones() {
        let mut w = Vec::new();
        for id in [0, 5, 63, 64, 130] {
            set(&mut w, id);
        }
        assert_eq!(w.len(), 3);
        assert!(get(&w, 63) && get(&w, 64) && !get(&w, 65));
        assert_eq!(ones(&w).collect::<Vec<_>>(), vec![0, 5, 63, 64, 130]);
        clear(&mut w, 5);
        assert_eq!(count(&w), 4);
        let mut a = w.clone();
        and_assign(&mut a, &[u64::MAX]);
        assert_eq!(ones(&a).collect::<Vec<_>>(), vec![0, 63]);
    }
}
