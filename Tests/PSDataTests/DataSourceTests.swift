import Foundation
import PSData
import XCTest

final class DataSourceTests: XCTestCase {
    func test_parsing_everySpelling() throws {
        let cases: [(String, DataSource)] = [
            ("digits", .digits),
            ("fashion-mnist", .fashionMNIST(directory: "/usr/share/datasets/fashion-mnist")),
            ("fashion-mnist:/data/fm", .fashionMNIST(directory: "/data/fm")),
            ("synthetic:1000,20,5", .synthetic(rows: 1000, features: 20, classes: 5, seed: 1)),
            ("synthetic:10,2,3,42", .synthetic(rows: 10, features: 2, classes: 3, seed: 42)),
            ("idx:/a/imgs.gz,/a/lbls.gz", .idx(images: "/a/imgs.gz", labels: "/a/lbls.gz")),
            ("npy:x.npy,y.npy", .npy(features: "x.npy", labels: "y.npy")),
            ("/d/train.npy", .npy(features: "/d/train.npy", labels: "/d/train.labels.npy")),
            ("/d/train.csv", .csv(path: "/d/train.csv", labelColumn: .first)),
            ("/d/train.csv.gz", .csv(path: "/d/train.csv.gz", labelColumn: .first)),
            ("csv:/d/data.txt", .csv(path: "/d/data.txt", labelColumn: .first)),
            ("a.svm", .libsvm(path: "a.svm", featureCount: nil)),
            ("a.libsvm", .libsvm(path: "a.libsvm", featureCount: nil)),
            ("a.svm.gz", .libsvm(path: "a.svm.gz", featureCount: nil)),
            ("libsvm:/d/a9a", .libsvm(path: "/d/a9a", featureCount: nil)),
            ("libsvm:/d/a9a,123", .libsvm(path: "/d/a9a", featureCount: 123)),
        ]
        for (spelling, expected) in cases {
            let parsed = try DataSource(parsing: spelling)
            XCTAssertEqual(parsed, expected, spelling)
            XCTAssertEqual(try DataSource(parsing: parsed.description), parsed, "description of \(spelling)")
        }
        XCTAssertEqual(
            try DataSource(parsing: "t.csv", labelColumn: .last), .csv(path: "t.csv", labelColumn: .last))
        XCTAssertEqual(DataSource.synthetic(rows: 1, features: 2, classes: 3, seed: 4).description, "synthetic:1,2,3,4")
    }

    func test_parsing_errors() {
        let cases: [(String, String)] = [
            ("", "unknown data source"),
            ("mnist", "unknown data source"),
            ("data.txt", "unknown data source"),
            ("synthetic:10,20", "expected synthetic:ROWS,FEATURES,CLASSES[,SEED]"),
            ("synthetic:10,x,3", "FEATURES 'x' is not an integer"),
            ("synthetic:10,2,3,-1", "SEED '-1' is not a non-negative integer"),
            ("synthetic:0,2,3", "ROWS must be at least 1, got 0"),
            ("synthetic:10,0,3", "FEATURES must be at least 1, got 0"),
            ("synthetic:10,2,1", "CLASSES must be at least 2, got 1"),
            ("synthetic:100000000,100,2", "100000000 rows x 100 features is more than 1073741824 values"),
            ("idx:a", "expected idx:IMAGES,LABELS: two paths separated by a comma"),
            ("idx:a,", "expected idx:IMAGES,LABELS: two paths separated by a comma"),
            ("npy:a,b,c", "expected npy:FEATURES.npy,LABELS.npy: two paths separated by a comma"),
            ("fashion-mnist:", "expected fashion-mnist:DIRECTORY"),
            ("csv:", "expected csv:PATH"),
            ("libsvm:", "expected libsvm:PATH[,FEATURES]"),
            ("libsvm:a,0", "FEATURES must be at least 1, got 0"),
        ]
        for (spelling, prefix) in cases {
            let error = dataError { () throws(DataError) in try DataSource(parsing: spelling) }
            XCTAssertEqual(error?.file, spelling)
            XCTAssertTrue(error?.message.hasPrefix(prefix) ?? false, "\(spelling): \(error?.message ?? "no error")")
        }
    }

    func test_codable_roundTrips() throws {
        let sources: [DataSource] = [
            .digits, .fashionMNIST(directory: "/x"), .idx(images: "i", labels: "l"),
            .csv(path: "p", labelColumn: .last),
            .libsvm(path: "s", featureCount: 7), .libsvm(path: "s", featureCount: nil),
            .npy(features: "f", labels: "l"),
            .synthetic(rows: 1, features: 2, classes: 3, seed: UInt64.max),
        ]
        let data = try JSONEncoder().encode(sources)
        XCTAssertEqual(try JSONDecoder().decode([DataSource].self, from: data), sources)
    }
}

final class DatasetTests: XCTestCase {
    let data = Dataset(
        name: "d", featureCount: 2, features: [0, 1, 10, 11, 20, 21, 30, 31], labels: [0, 1, 2, 3], classCount: 4)

    func test_gather_copiesRowsInOrder() {
        var features = [Float](repeating: -1, count: 8)
        var labels = [Float](repeating: -1, count: 4)
        features.withUnsafeMutableBufferPointer { featureBuffer in
            labels.withUnsafeMutableBufferPointer { labelBuffer in
                data.gather(rows: [3, 0, 2], into: featureBuffer, labels: labelBuffer)
            }
        }
        XCTAssertEqual(features, [30, 31, 0, 1, 20, 21, -1, -1])
        XCTAssertEqual(labels, [3, 0, 2, -1])
        let order = DataOrder(rowCount: 4, workerCount: 1, batchPerWorker: 4, seed: 0)
        features.withUnsafeMutableBufferPointer { featureBuffer in
            labels.withUnsafeMutableBufferPointer { labelBuffer in
                data.gather(rows: order.rows(step: 0, rank: 0), into: featureBuffer, labels: labelBuffer)
            }
        }
        XCTAssertEqual(labels.map { Int($0) }, Array(order.rows(step: 0, rank: 0)))
    }

    func test_requireClassification_reportsTheFirstBadRow() {
        let regression = Dataset(
            name: "r.csv", featureCount: 1, features: [0, 0, 0, 0, 0, 0, 0], labels: [0, 1, 2, 1, 0, 3.5, -1],
            classCount: 0)
        let error = dataError { () throws(DataError) in try regression.requireClassification(classCount: 10) }
        XCTAssertEqual(error, DataError(file: "r.csv", location: "row 5", message: "label 3.5 is not a class index"))
        XCTAssertEqual(error?.description, "r.csv: row 5: label 3.5 is not a class index")
        let negative = Dataset(name: "n", featureCount: 1, features: [0, 0], labels: [1, -2], classCount: 0)
        XCTAssertEqual(
            dataError { () throws(DataError) in try negative.requireClassification(classCount: 10) },
            DataError(file: "n", location: "row 1", message: "label -2.0 is not a class index"))
        XCTAssertEqual(
            dataError { () throws(DataError) in try data.requireClassification(classCount: 3) },
            DataError(file: "d", location: "row 3", message: "label 3 is not a class index below the class count 3"))
        XCTAssertNoThrow(try data.requireClassification(classCount: 4))
    }

    func test_inferredClassCount_integerLabels_isLargestPlusOneElseZero() {
        XCTAssertEqual(Dataset.inferredClassCount(labels: [0, 4, 1]), 5)
        XCTAssertEqual(Dataset.inferredClassCount(labels: [0, 4.5]), 0)
        XCTAssertEqual(Dataset.inferredClassCount(labels: [-1, 1]), 0)
        XCTAssertEqual(Dataset.inferredClassCount(labels: []), 0)
    }

    func test_requireModelShape_testLabelOutOfRange_throwsDataErrorNamingTheFile() throws {
        let files = try TestFiles(self)
        let path = try files.write("digits_test.csv", text: "3,0.5,0.5\n12,0.25,0.75\n")
        let test = try DataSource(parsing: path).loadTrain()
        XCTAssertEqual(
            dataError { () throws(DataError) in try test.requireModelShape(featureCount: 2, classCount: 10) },
            DataError(file: path, location: "row 1", message: "label 12 is not a class index below the class count 10"))
        let negative = try files.write("negative_test.csv", text: "-1,0.5,0.5\n")
        let negativeSet = try DataSource(parsing: negative).loadTrain()
        XCTAssertEqual(
            dataError { () throws(DataError) in try negativeSet.requireModelShape(featureCount: 2, classCount: 10) }?
                .file, negative)
        XCTAssertNoThrow(try test.requireModelShape(featureCount: 2, classCount: 13))
    }

    func test_requireModelShape_featureCountDiffers_throwsDataErrorNamingTheFile() {
        let data = Dataset(name: "narrow.csv", featureCount: 1, features: [0, 0], labels: [1, 0], classCount: 2)
        XCTAssertEqual(
            dataError { () throws(DataError) in try data.requireModelShape(featureCount: 64, classCount: 10) },
            DataError(file: "narrow.csv", message: "has 1 features per row, the model expects 64"))
    }

    func test_requireModelShape_regressionTargetNotFinite_throwsNamingTheRow() {
        let data = Dataset(
            name: "r.csv", featureCount: 1, features: [0, 0, 0], labels: [1.5, .infinity, .nan], classCount: 0)
        XCTAssertEqual(
            dataError { () throws(DataError) in try data.requireModelShape(featureCount: 1, classCount: 0) },
            DataError(file: "r.csv", location: "row 1", message: "regression target inf is not finite"))
        let fine = Dataset(name: "ok", featureCount: 1, features: [0, 0], labels: [1.5, -3], classCount: 0)
        XCTAssertNoThrow(try fine.requireModelShape(featureCount: 1, classCount: 0))
    }
}
