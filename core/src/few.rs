//! A list that holds a single element without allocating: nearly every
//! request names one limit, and its per-limit lists (keys, states,
//! decisions) should cost no more than one limit does alone.

use std::ops::{Deref, DerefMut};

/// One element in place, or any number on the heap. Reads as a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Few<T> {
    One([T; 1]),
    /// Any other count, none included (an empty `Vec` allocates nothing).
    Many(Vec<T>),
}

impl<T> Few<T> {
    /// `f` of each item, in order, stopping at the first error. A single
    /// item takes a path of its own: no heap, no iterator adapters.
    #[inline]
    pub fn try_map<'s, S, E>(
        items: &'s [S],
        mut f: impl FnMut(&'s S) -> Result<T, E>,
    ) -> Result<Few<T>, E> {
        match items {
            [one] => Ok(Few::One([f(one)?])),
            many => many.iter().map(f).collect::<Result<_, E>>().map(Few::Many),
        }
    }
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few::Many(Vec::new())
    }
}

impl<T> Deref for Few<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            Few::One(one) => one,
            Few::Many(many) => many,
        }
    }
}

impl<T> DerefMut for Few<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Few::One(one) => one,
            Few::Many(many) => many,
        }
    }
}

impl<T> FromIterator<T> for Few<T> {
    #[inline]
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut it = iter.into_iter();
        let Some(first) = it.next() else {
            return Few::Many(Vec::new());
        };
        let Some(second) = it.next() else {
            return Few::One([first]);
        };
        let mut many = Vec::with_capacity(it.size_hint().0.saturating_add(2));
        many.push(first);
        many.push(second);
        many.extend(it);
        Few::Many(many)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_element_stays_in_place_and_any_other_count_reads_the_same() {
        let none: Few<u8> = std::iter::empty().collect();
        assert!(none.is_empty());
        let one: Few<u8> = [7].into_iter().collect();
        assert!(matches!(one, Few::One([7])));
        let mut three: Few<u8> = [1, 2, 3].into_iter().collect();
        assert_eq!(&three[..], &[1, 2, 3]);
        three[1] = 5;
        assert_eq!(three.iter().sum::<u8>(), 9);
        let failed: Result<Few<u8>, ()> = [Ok(1), Err(())].into_iter().collect();
        assert!(failed.is_err());
        let one = Few::try_map(&[3u8], |x| Ok::<_, ()>(x * 2)).unwrap();
        assert!(matches!(one, Few::One([6])));
        let two = Few::try_map(&[3u8, 4], |x| Ok::<_, ()>(x * 2)).unwrap();
        assert_eq!(&two[..], &[6, 8]);
        assert!(Few::try_map(&[3u8, 4], |x| if *x == 4 { Err(()) } else { Ok(*x) }).is_err());
    }
}
