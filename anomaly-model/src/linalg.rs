//! The little linear algebra the PCA baseline needs: a covariance matrix and a symmetric
//! eigendecomposition (cyclic Jacobi), in f64 for stability.

/// Eigenvalues (descending) and their unit eigenvectors (`vectors[i]` belongs to `values[i]`) of
/// the symmetric `n` x `n` row-major matrix `a`.
pub(crate) fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|p| ((p + 1)..n).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q].powi(2))
            .sum();
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..n {
            for q in (p + 1)..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let vectors = order
        .iter()
        .map(|&i| (0..n).map(|k| v[k * n + i]).collect())
        .collect();
    (values, vectors)
}

/// Column means and the covariance matrix (row-major, `p` x `p`) of `rows` of width `p`.
pub(crate) fn mean_and_covariance(rows: &[f32], p: usize) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len() / p;
    let mut mean = vec![0.0f64; p];
    for row in rows.chunks_exact(p) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += f64::from(*x);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut cov = vec![0.0f64; p * p];
    let mut centred = vec![0.0f64; p];
    for row in rows.chunks_exact(p) {
        for ((c, x), m) in centred.iter_mut().zip(row).zip(&mean) {
            *c = f64::from(*x) - m;
        }
        // Upper triangle only; mirrored below.
        for i in 0..p {
            let ci = centred[i];
            let dst = &mut cov[i * p + i..(i + 1) * p];
            for (d, cj) in dst.iter_mut().zip(&centred[i..]) {
                *d += ci * cj;
            }
        }
    }
    let denom = (n.max(2) - 1) as f64;
    for i in 0..p {
        for j in i..p {
            let value = cov[i * p + j] / denom;
            cov[i * p + j] = value;
            cov[j * p + i] = value;
        }
    }
    (mean, cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigenpairs_satisfy_the_definition() {
        let a = vec![4.0, 1.0, 2.0, 1.0, 3.0, 0.5, 2.0, 0.5, 5.0];
        let (values, vectors) = symmetric_eigen(a.clone(), 3);
        assert!(values[0] >= values[1] && values[1] >= values[2]);
        for (lambda, v) in values.iter().zip(&vectors) {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i * 3 + j] * v[j]).sum();
                assert!((av - lambda * v[i]).abs() < 1e-9, "A v != lambda v");
            }
            let norm: f64 = v.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-9);
        }
        // The trace is preserved.
        assert!((values.iter().sum::<f64>() - 12.0).abs() < 1e-9);
    }

    #[test]
    fn covariance_of_a_tiny_sample() {
        // x = [1, 2, 3], y = 2x: var x = 1, cov = 2, var y = 4.
        let rows = [1.0, 2.0, 2.0, 4.0, 3.0, 6.0];
        let (mean, cov) = mean_and_covariance(&rows, 2);
        assert_eq!(mean, vec![2.0, 4.0]);
        assert_eq!(cov, vec![1.0, 2.0, 2.0, 4.0]);
    }
}
