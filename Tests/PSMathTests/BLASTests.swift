import PSMath
import XCTest

final class BLASTests: XCTestCase {
    /// Uniform floats in [-1, 1) from splitmix64, reproducible from the seed.
    private func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(2 * generator.nextUnitDouble() - 1) }
    }

    /// The row-major element (row, column) of a matrix stored with leading dimension `ld`, optionally transposed.
    private func element(_ values: [Float], _ row: Int, _ column: Int, ld: Int, transposed: Bool) -> Double {
        Double(transposed ? values[column * ld + row] : values[row * ld + column])
    }

    func test_sgemm_everyTransposeCombinationWithPaddedLeadingDimensions_matchesNaiveProduct() {
        let (m, n, k) = (7, 5, 9)
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                let lda = (transposeA ? m : k) + 2
                let ldb = (transposeB ? k : n) + 3
                let ldc = n + 1
                let a = randomFloats((transposeA ? k : m) * lda, seed: 1)
                let b = randomFloats((transposeB ? n : k) * ldb, seed: 2)
                let initialC = randomFloats(m * ldc, seed: 3)
                var c = initialC
                BLAS.sgemm(
                    transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda,
                    b: b, ldb: ldb, beta: 2, c: &c, ldc: ldc)
                for row in 0..<m {
                    for column in 0..<ldc {
                        guard column < n else {
                            XCTAssertEqual(c[row * ldc + column], initialC[row * ldc + column], "padding is untouched")
                            continue
                        }
                        var expected = 2 * Double(initialC[row * ldc + column])
                        for p in 0..<k {
                            expected +=
                                0.5 * element(a, row, p, ld: lda, transposed: transposeA)
                                * element(b, p, column, ld: ldb, transposed: transposeB)
                        }
                        XCTAssertEqual(
                            Double(c[row * ldc + column]), expected, accuracy: 1e-5,
                            "transposeA \(transposeA) transposeB \(transposeB) at (\(row), \(column))")
                    }
                }
            }
        }
    }

    func test_sgemm_betaZero_ignoresNaNInOutput() {
        let a: [Float] = [1, 2, 3, 4]  // 2x2
        let b: [Float] = [5, 6, 7, 8]  // 2x2
        var c = [Float](repeating: .nan, count: 4)
        BLAS.sgemm(
            transposeA: false, transposeB: false, m: 2, n: 2, k: 2, alpha: 1, a: a, lda: 2, b: b, ldb: 2, beta: 0,
            c: &c, ldc: 2)
        XCTAssertEqual(c, [19, 22, 43, 50])
    }

    func test_vectorOperations_matchScalarDefinitions() {
        let x = randomFloats(1000, seed: 4)
        let original = randomFloats(1000, seed: 5)

        var y = original
        BLAS.saxpy(count: x.count, alpha: -0.25, x: x, y: &y)
        for i in x.indices {
            XCTAssertEqual(y[i], original[i] - 0.25 * x[i], accuracy: 1e-6)
        }

        var scaled = x
        BLAS.sscal(count: scaled.count, alpha: 3, x: &scaled)
        for i in x.indices {
            XCTAssertEqual(scaled[i], 3 * x[i], accuracy: 1e-6)
        }

        var copy = [Float](repeating: 0, count: x.count)
        BLAS.scopy(count: x.count, x: x, y: &copy)
        XCTAssertEqual(copy, x)
    }

    func test_vectorOperations_zeroCount_leaveDataAlone() {
        var y: [Float] = [1, 2]
        BLAS.saxpy(count: 0, alpha: 5, x: [3, 4], y: &y)
        BLAS.sscal(count: 0, alpha: 5, x: &y)
        XCTAssertEqual(y, [1, 2])
    }

    func test_threadCount_setToOne_readsBackOne() {
        let original = BLAS.threadCount
        defer { BLAS.setThreadCount(original) }
        BLAS.setThreadCount(1)
        XCTAssertEqual(BLAS.threadCount, 1)
    }

    func test_coreNameAndConfiguration_describeTheLibrary() {
        XCTAssertFalse(BLAS.coreName.isEmpty)
        XCTAssertTrue(BLAS.configuration.contains("OpenBLAS"), BLAS.configuration)
    }
}
