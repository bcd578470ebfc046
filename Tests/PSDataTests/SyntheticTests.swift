import PSData
import XCTest

final class SyntheticTests: XCTestCase {
    func test_load_isDeterministicFromTheSeed() throws {
        let source = DataSource.synthetic(rows: 200, features: 8, classes: 4, seed: 3)
        let a = try source.loadTrain()
        let b = try source.loadTrain()
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.rowCount, 200)
        XCTAssertEqual(a.featureCount, 8)
        XCTAssertEqual(a.classCount, 4)
        XCTAssertEqual(a.labels.filter { $0 == 3 }.count, 50, "classes are balanced")
        let other = try DataSource.synthetic(rows: 200, features: 8, classes: 4, seed: 4).loadTrain()
        XCTAssertNotEqual(a.features, other.features)
    }

    func test_loadTest_isAFifthDrawnWithTheNextSeed() throws {
        let source = DataSource.synthetic(rows: 200, features: 8, classes: 4, seed: 3)
        let test = try XCTUnwrap(try source.loadTest())
        XCTAssertEqual(test.rowCount, 40)
        XCTAssertEqual(test.classCount, 4)
        XCTAssertNotEqual(Array(test.features.prefix(8)), Array(try source.loadTrain().features.prefix(8)))
        XCTAssertEqual(try DataSource.synthetic(rows: 3, features: 2, classes: 2, seed: 0).loadTest()?.rowCount, 1)
    }

    func test_classes_areSeparable_byNearestCentroid() throws {
        let source = try DataSource(parsing: "synthetic:2000,16,10,7")
        let (train, testOrNil) = try source.loadSplits()
        let test = try XCTUnwrap(testOrNil)
        let width = train.featureCount
        var centroids = [Float](repeating: 0, count: train.classCount * width)
        var counts = [Float](repeating: 0, count: train.classCount)
        for row in 0..<train.rowCount {
            let label = Int(train.labels[row])
            counts[label] += 1
            for feature in 0..<width { centroids[label * width + feature] += train.features[row * width + feature] }
        }
        for index in centroids.indices { centroids[index] /= counts[index / width] }
        var correct = 0
        for row in 0..<test.rowCount {
            let distances = (0..<train.classCount).map { label in
                (0..<width).reduce(Float(0)) { sum, feature in
                    let difference = test.features[row * width + feature] - centroids[label * width + feature]
                    return sum + difference * difference
                }
            }
            if distances.firstIndex(of: distances.min() ?? 0) == Int(test.labels[row]) { correct += 1 }
        }
        let accuracy = Double(correct) / Double(test.rowCount)
        XCTAssertGreaterThan(accuracy, 0.95, "nearest-centroid test accuracy \(accuracy)")
    }

    func test_load_classesTimesFeaturesOverflowing_throwsNamingTheSpelling() {
        let source = DataSource.synthetic(rows: 10, features: 10, classes: Int.max, seed: 0)
        XCTAssertEqual(
            dataError { () throws(DataError) in try source.loadTrain() }?.file, "synthetic:10,10,\(Int.max),0")
        XCTAssertNotNil(dataError { () throws(DataError) in try source.loadTest() })
        let large = DataSource.synthetic(rows: 10, features: 1 << 15, classes: 1 << 16, seed: 0)
        XCTAssertNotNil(dataError { () throws(DataError) in try large.loadTrain() })
    }
}
