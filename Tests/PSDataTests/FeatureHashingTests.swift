import Foundation
import PSData
import XCTest

/// `--hash-features D`: the documented hash cannot drift, and a loader hashes each row into sorted, unique rows
/// with the values of colliding entries summed.
final class FeatureHashingTests: XCTestCase {
    func test_hash_goldenValues_areSplitMix64sFirstOutput() {
        XCTAssertEqual(FeatureHashing.hash(0), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(FeatureHashing.hash(1), 0x910A_2DEC_8902_5CC1)
        XCTAssertEqual(FeatureHashing.hash(41), 0x118E_846E_A93B_C949)
        XCTAssertEqual(FeatureHashing.hash(1 << 31), 0x2549_3CC6_3225_736C)
        XCTAssertEqual(FeatureHashing.hash(UInt64(UInt32.max)), 0x73B1_3BA2_AFF1_81C0)
        XCTAssertEqual(FeatureHashing.row(of: 0, rows: 4096), 3503)
        XCTAssertEqual(FeatureHashing.row(of: UInt64(UInt32.max), rows: 4096), 448)
        XCTAssertEqual(FeatureHashing.row(of: 41, rows: 1_000_003), 142_052)
        XCTAssertEqual(FeatureHashing.row(of: 12_345, rows: 1), 0)
    }

    func test_loadLIBSVM_idsNear2Pow32_hashedIntoDRows_collisionsSummed_sortedUnique() throws {
        let files = try TestFiles(self)
        // 0-based ids 4294967289 and 4294967291 both land on row 5 of 8; 4294967290 and 4294967294 on row 2 (in
        // different rows of the file, so they are not summed).
        let path = try files.write(
            "hashed.svm",
            text: "+1 4294967290:1 4294967291:2 4294967292:0.5 4294967296:4\n-1 3:1 4294967295:3\n+1 1:1\n")
        let data = try SparseDataSource(parsing: path).loadTrain(hashFeatures: 8)
        XCTAssertEqual(data.featureCount, 8)
        XCTAssertEqual(data.rowStarts, [0, 3, 5, 6])
        XCTAssertEqual(data.featureIds, [0, 2, 5, 2, 6, 7])
        XCTAssertEqual(data.values, [4, 2, 1.5, 3, 1, 1])
        XCTAssertEqual(data.labels, [1, 0, 1], "-1/+1 labels are still the classes 0 and 1")
        XCTAssertEqual(data.classCount, 2)
        let unhashed = try SparseDataSource(parsing: path).loadTrain()
        XCTAssertEqual(unhashed.featureCount, 1 << 32)
    }

    func test_syntheticSparse_hashed_keepsLabels_andEveryRowSortedUniqueWithItsValueSum() throws {
        let source = try SparseDataSource(parsing: "synthetic-sparse:300,1000,10,3")
        let plain = try source.loadSplits()
        let hashed = try source.loadSplits(hashFeatures: 64)
        XCTAssertEqual(hashed.train.featureCount, 64)
        XCTAssertEqual(hashed.test?.featureCount, 64)
        XCTAssertEqual(hashed.train.labels, plain.train.labels)
        XCTAssertEqual(hashed.test?.labels, plain.test?.labels)
        var collided = false
        for row in 0..<hashed.train.rowCount {
            let (ids, values) = hashed.train.row(row)
            XCTAssertEqual(Array(ids), Array(Set(ids)).sorted(), "row \(row) sorted and unique")
            XCTAssertEqual(values.reduce(0, +), 10, "row \(row): ten 1s, summed where they collide")
            let expected = Set(plain.train.row(row).ids.map { FeatureHashing.row(of: UInt64($0), rows: 64) })
            XCTAssertEqual(Set(ids), expected)
            collided = collided || ids.count < 10
        }
        XCTAssertTrue(collided, "ten ids in 64 rows collide in some row")
    }

    func test_loadTrain_hashRowsOutOfRange_isRefused() throws {
        let source = try SparseDataSource(parsing: "synthetic-sparse:10,100,3")
        for rows in [0, (1 << 31) + 1] {
            XCTAssertThrowsError(try source.loadTrain(hashFeatures: rows)) { error in
                let expected = "cannot hash features into \(rows) rows, expected 1...2^31"
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }
}
