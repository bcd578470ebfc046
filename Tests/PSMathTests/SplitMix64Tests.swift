import PSMath
import XCTest

final class SplitMix64Tests: XCTestCase {
    func test_next_seedZero_givesTheReferenceFirstOutputs() {
        var generator = SplitMix64(seed: 0)
        XCTAssertEqual(generator.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(generator.next(), 0x6E78_9E6A_A1B9_65F4)
        XCTAssertEqual(generator.state, 2 &* 0x9E37_79B9_7F4A_7C15)
    }

    /// The README's "with seed 1 the first three u" are those of the generator state 1 (a model with seed 0, layer
    /// 1); the state 1 * 1000 + 1 of a model with seed 1 gives 0.32516485, 0.22957386, 0.22834268 (checked with an
    /// independent Python splitmix64).
    func test_nextUnitDouble_state1_givesTheReadmeValues() {
        var generator = SplitMix64(seed: 1)
        XCTAssertEqual(generator.nextUnitDouble(), 0.56656158, accuracy: 5e-9)
        XCTAssertEqual(generator.nextUnitDouble(), 0.74578176, accuracy: 5e-9)
        XCTAssertEqual(generator.nextUnitDouble(), 0.97100275, accuracy: 5e-9)
        var modelSeed1Layer1 = SplitMix64(seed: 1 * 1000 + 1)
        XCTAssertEqual(modelSeed1Layer1.nextUnitDouble(), 0.32516485, accuracy: 5e-9)
        XCTAssertEqual(modelSeed1Layer1.nextUnitDouble(), 0.22957386, accuracy: 5e-9)
        XCTAssertEqual(modelSeed1Layer1.nextUnitDouble(), 0.22834268, accuracy: 5e-9)
    }

    /// `first16` of shared/reference/splitmix_permutation_check.json (n = 1347, epochs 0, 1, 2).
    private let referenceFirst16: [[Int]] = [
        [52, 1302, 851, 1265, 711, 848, 399, 1222, 557, 1268, 800, 326, 1339, 1084, 464, 219],
        [836, 91, 1194, 1245, 221, 1111, 775, 750, 999, 532, 976, 34, 44, 601, 675, 1178],
        [935, 737, 610, 827, 302, 600, 295, 723, 1103, 292, 426, 458, 1138, 484, 59, 595],
    ]

    func test_permutation_epochs0To2_matchReferenceCheckFile() {
        for epoch in 0..<3 {
            let permutation = splitmixPermutation(count: 1347, seed: UInt64(epoch))
            XCTAssertEqual(Array(permutation.prefix(16)), referenceFirst16[epoch], "epoch \(epoch)")
            XCTAssertEqual(permutation.sorted(), Array(0..<1347), "epoch \(epoch) is a permutation")
        }
    }

    func test_permutation_tinyCounts_areIdentity() {
        XCTAssertEqual(splitmixPermutation(count: 0, seed: 7), [])
        XCTAssertEqual(splitmixPermutation(count: 1, seed: 7), [0])
    }
}
