import COpenBLAS

/// A thin typed wrapper over the OpenBLAS CBLAS calls SwiftPS uses; the only file in the package that imports OpenBLAS.
///
/// Sizes are Swift `Int`s converted to OpenBLAS's 32-bit `blasint` with a checked conversion. Matrix sizes are
/// chosen by our own code, so a matrix dimension beyond `Int32.max` is a programmer error (a precondition failure);
/// the vector operations split longer vectors into chunks, so any count works. Vectors are contiguous (stride 1).
///
/// ```swift
/// // C[2][2] = A[2][3] · B[3][2]
/// let a: [Float] = [1, 2, 3, 4, 5, 6], b: [Float] = [1, 0, 0, 1, 1, 1]
/// var c = [Float](repeating: 0, count: 4)
/// BLAS.sgemm(
///     transposeA: false, transposeB: false, m: 2, n: 2, k: 3, alpha: 1, a: a, lda: 3, b: b, ldb: 2, beta: 0,
///     c: &c, ldc: 2)   // c == [4, 5, 10, 11]
/// ```
public enum BLAS {
    /// The largest element count passed to OpenBLAS in one vector call.
    static let maximumChunk = Int(Int32.max)

    /// Row-major `C = alpha * op(A) * op(B) + beta * C` (wraps `cblas_sgemm` with `CblasRowMajor`).
    ///
    /// `op(A)` is `m x k` and `op(B)` is `k x n`. With `transposeA` the memory at `a` holds `A` as a `k x m` matrix
    /// (so `lda >= m`), otherwise as `m x k` (`lda >= k`); likewise `b` holds `n x k` (`ldb >= k`) with `transposeB`,
    /// else `k x n` (`ldb >= n`). `c` is `m x n` with `ldc >= n`. With `beta == 0` the old contents of `c` are
    /// ignored (even NaN).
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative dimension m=\(m) n=\(n) k=\(k)")
        precondition(lda >= max(1, transposeA ? m : k), "sgemm: lda \(lda) too small")
        precondition(ldb >= max(1, transposeB ? k : n), "sgemm: ldb \(ldb) too small")
        precondition(ldc >= max(1, n), "sgemm: ldc \(ldc) too small")
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            blasInt(m), blasInt(n), blasInt(k), alpha, a, blasInt(lda), b, blasInt(ldb), beta, c, blasInt(ldc))
    }

    /// `y += alpha * x` over `count` elements (wraps `cblas_saxpy`).
    public static func saxpy(count: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        forEachChunk(count) { offset, length in
            cblas_saxpy(length, alpha, x + offset, 1, y + offset, 1)
        }
    }

    /// `x *= alpha` over `count` elements (wraps `cblas_sscal`).
    public static func sscal(count: Int, alpha: Float, x: UnsafeMutablePointer<Float>) {
        forEachChunk(count) { offset, length in
            cblas_sscal(length, alpha, x + offset, 1)
        }
    }

    /// Copies `count` elements from `x` to `y` (wraps `cblas_scopy`).
    public static func scopy(count: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        forEachChunk(count) { offset, length in
            cblas_scopy(length, x + offset, 1, y + offset, 1)
        }
    }

    /// Sets the number of threads OpenBLAS uses for one call (wraps `openblas_set_num_threads`).
    ///
    /// Set it to 1 when several processes share a host: OpenBLAS threads from different processes oversubscribe the cores.
    public static func setThreadCount(_ count: Int) {
        precondition(count >= 1, "BLAS thread count must be at least 1, got \(count)")
        openblas_set_num_threads(Int32(clamping: count))
    }

    /// The number of threads OpenBLAS uses for one call (wraps `openblas_get_num_threads`).
    public static var threadCount: Int {
        Int(openblas_get_num_threads())
    }

    /// The CPU kernel family OpenBLAS selected at load time, such as "Zen" (wraps `openblas_get_corename`).
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// OpenBLAS's build configuration line, such as "OpenBLAS 0.3.21 DYNAMIC_ARCH ..." (wraps `openblas_get_config`).
    public static var configuration: String {
        guard let configuration = openblas_get_config() else { return "unknown" }
        return String(cString: configuration)
    }

    /// Converts a matrix size to `blasint`; a size beyond `Int32.max` is a programmer error.
    private static func blasInt(_ value: Int) -> Int32 {
        guard let converted = Int32(exactly: value) else {
            preconditionFailure("BLAS size \(value) does not fit OpenBLAS's 32-bit blasint")
        }
        return converted
    }

    /// Calls `body(offset, length)` for consecutive chunks of at most `maximumChunk` elements covering `count`.
    private static func forEachChunk(_ count: Int, _ body: (Int, Int32) -> Void) {
        precondition(count >= 0, "BLAS: negative element count \(count)")
        var offset = 0
        while offset < count {
            let length = min(count - offset, maximumChunk)
            body(offset, Int32(length))
            offset += length
        }
    }
}
