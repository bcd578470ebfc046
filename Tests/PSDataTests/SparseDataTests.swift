import Foundation
import PSData
import XCTest

final class SparseLIBSVMTests: XCTestCase {
    func test_load_readsCSRWithoutDensifying() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "1 1:0.5 3:2\n# a comment line\n\n0 2:1  # trailing\r\n2\n")
        let data = try SparseDataSource(parsing: path).loadTrain()
        XCTAssertEqual(data.featureCount, 3)
        XCTAssertEqual(data.rowStarts, [0, 2, 3, 3])
        XCTAssertEqual(data.featureIds, [0, 2, 1])
        XCTAssertEqual(data.values, [0.5, 2, 1])
        XCTAssertEqual(data.labels, [1, 0, 2])
        XCTAssertEqual(data.classCount, 3)
        let dense = try DataSource.libsvm(path: path, featureCount: nil).loadTrain()
        XCTAssertEqual(data.densified().features, dense.features, "the same rows as the dense reader")
    }

    func test_load_indexUpTo2Pow32_keepsIdsAndWidth() throws {
        let files = try TestFiles(self)
        let path = try files.write("wide.svm", text: "+1 7:1 4294967296:0.25\n-1 4294967295:3\n")
        let data = try SparseDataSource(parsing: path).loadTrain()
        XCTAssertEqual(data.featureCount, 1 << 32)
        XCTAssertEqual(data.featureIds, [6, UInt32.max, UInt32.max - 1])
        XCTAssertEqual(data.values, [1, 0.25, 3])
        XCTAssertEqual(data.labels, [1, 0], "-1/+1 labels are the classes 0 and 1")
        XCTAssertEqual(data.classCount, 2)
    }

    func test_load_indexAbove2Pow32_namesLine() throws {
        let files = try TestFiles(self)
        let path = try files.write("wide.svm", text: "1 1:1\n0 4294967297:1\n")
        XCTAssertThrowsError(try SparseDataSource(parsing: path).loadTrain()) { error in
            XCTAssertEqual(
                error as? DataError,
                DataError(file: path, location: "line 2", message: "index 4294967297 in '4294967297:1' exceeds 2^32"))
        }
    }

    func test_load_badTokens_nameLineAndToken() throws {
        let files = try TestFiles(self)
        let cases: [(String, String)] = [
            ("1 1:1\n0 2:1\n1 5:abc\n", "line 3: '5:abc' is not INDEX:VALUE"),
            ("1 3:1 2:1\n", "line 1: index 2 in '2:1' does not increase (previous index 3)"),
            ("1 0:1\n", "line 1: index 0 in '0:1': indices start at 1"),
            ("x 1:1\n", "line 1: label 'x' is not a number"),
            ("1 5:1\n", "line 1: index 5 in '5:1' exceeds the feature count 4"),
        ]
        for (text, expected) in cases {
            let path = try files.write("bad.svm", text: text)
            XCTAssertThrowsError(try SparseDataSource.libsvm(path: path, featureCount: 4).loadTrain()) { error in
                XCTAssertEqual("\(error)", "\(path): \(expected)")
            }
        }
    }

    func test_load_manyRows_isFastAndExact() throws {
        let files = try TestFiles(self)
        var text = ""
        text.reserveCapacity(2_000_000)
        for row in 0..<100_000 {
            text += "\(row % 2 == 0 ? "+1" : "-1") \(row % 97 + 1):1 \(1_000_000 + row):0.5\n"
        }
        let path = try files.write("big.svm", text: text)
        let start = Date()
        let data = try SparseDataSource(parsing: path).loadTrain()
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertEqual(data.rowCount, 100_000)
        XCTAssertEqual(data.entryCount, 200_000)
        XCTAssertEqual(data.featureCount, 1_000_000 + 99_999)
        XCTAssertEqual(data.row(99_999).ids, [UInt32(99_999 % 97), UInt32(1_000_000 + 99_998)])
        XCTAssertEqual(data.labels[1], 0)
    }

    func test_testCompanion_takesTheTrainWidth() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "1 1:1 9:1\n0 2:1\n")
        try files.write("a.svm.t", text: "1 3:1\n")
        let (train, test) = try SparseDataSource(parsing: path).loadSplits()
        XCTAssertEqual(train.featureCount, 9)
        XCTAssertEqual(test?.featureCount, 9)
        XCTAssertEqual(test?.classCount, 2)
    }
}

final class SyntheticSparseTests: XCTestCase {
    func test_parse_spellingsAndErrors() throws {
        XCTAssertEqual(
            try SparseDataSource(parsing: "synthetic-sparse:100,1000,5"),
            .syntheticSparse(rows: 100, features: 1000, nnz: 5, seed: 1))
        XCTAssertEqual(
            try SparseDataSource(parsing: "synthetic-sparse:100,1000,5,9").description, "synthetic-sparse:100,1000,5,9")
        XCTAssertEqual(try SparseDataSource(parsing: "libsvm:x.svm,7"), .libsvm(path: "x.svm", featureCount: 7))
        XCTAssertThrowsError(try SparseDataSource(parsing: "synthetic-sparse:10,5,6")) { error in
            XCTAssertEqual(
                "\(error)", "synthetic-sparse:10,5,6: NNZ must be in 1...min(FEATURES, 4096), got 6 for 5 features")
        }
        XCTAssertThrowsError(try SparseDataSource(parsing: "digits"))
        XCTAssertTrue(SparseDataSource.isSparseOnly("synthetic-sparse:1,2,1"))
    }

    func test_make_isReproducibleSortedAndZipfSkewed() throws {
        let source = try SparseDataSource(parsing: "synthetic-sparse:4000,100000,20,7")
        let (a, test) = try source.loadSplits()
        let b = try source.loadTrain()
        XCTAssertEqual(a, b, "the same seed draws the same rows")
        XCTAssertEqual(test?.rowCount, 800)
        XCTAssertNotEqual(test?.featureIds, Array(a.featureIds.prefix(test?.entryCount ?? 0)))
        XCTAssertEqual(a.entryCount, 4000 * 20)
        for row in 0..<a.rowCount {
            let ids = Array(a.row(row).ids)
            XCTAssertEqual(ids, Array(Set(ids)).sorted(), "row \(row): sorted, unique ids")
        }
        XCTAssertTrue(a.featureIds.allSatisfy { $0 < 100_000 })
        // Zipf(1) over 1e5 ids: ids below 100 take about ln(101)/ln(100001), 40%, of the draws.
        let low = a.featureIds.filter { $0 < 100 }.count
        XCTAssertGreaterThan(Double(low) / Double(a.entryCount), 0.3)
        XCTAssertLessThan(Double(low) / Double(a.entryCount), 0.5)
        let positives = a.labels.filter { $0 == 1 }.count
        XCTAssertGreaterThan(positives, 1000, "both classes occur")
        XCTAssertLessThan(positives, 3000)
        let other = try SparseDataSource(parsing: "synthetic-sparse:4000,100000,20,8").loadTrain()
        XCTAssertNotEqual(a.featureIds, other.featureIds)
    }

    func test_batch_gathersRowsAndTouchedFeatures() throws {
        let data = try SparseDataSource(parsing: "synthetic-sparse:50,30,4,3").loadTrain()
        let batch = data.batch(rows: [7, 2, 7])
        XCTAssertEqual(batch.rowCount, 3)
        XCTAssertEqual(Array(batch.featureIds[0..<4]), Array(data.row(7).ids))
        XCTAssertEqual(batch.labels, [data.labels[7], data.labels[2], data.labels[7]])
        let expected = Set(data.row(7).ids).union(data.row(2).ids).map { UInt64($0) }.sorted()
        XCTAssertEqual(batch.touchedRows, expected)
        XCTAssertEqual(data.densified().rowCount, 50)
    }
}
