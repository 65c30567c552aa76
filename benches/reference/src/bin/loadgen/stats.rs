//! Order statistics over small samples.

/// The value at quantile `q` (0.0..=1.0) of `values`, nearest-rank; `None` if empty.
pub(crate) fn quantile<T: Copy + Ord>(values: &mut [T], q: f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (q.clamp(0.0, 1.0) * (values.len() - 1) as f64).round() as usize;
    Some(values[rank])
}

/// Milliseconds with microsecond precision, for reports.
pub(crate) fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut v = vec![5u64, 1, 3, 2, 4];
        assert_eq!(quantile(&mut v, 0.0), Some(1));
        assert_eq!(quantile(&mut v, 0.5), Some(3));
        assert_eq!(quantile(&mut v, 1.0), Some(5));
        assert_eq!(quantile::<u64>(&mut [], 0.5), None);
    }
}
