import Foundation
import PSData
import XCTest

final class IDXTests: XCTestCase {
    /// Three 2x2 images and their labels.
    let pixels: [UInt8] = [0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0]
    let labelBytes: [UInt8] = [7, 0, 3]

    func imagesFile(count: UInt32 = 3, pixels: [UInt8]? = nil) -> [UInt8] {
        bigEndianBytes(0x803) + bigEndianBytes(count) + bigEndianBytes(2) + bigEndianBytes(2) + (pixels ?? self.pixels)
    }

    func labelsFile(count: UInt32 = 3, labels: [UInt8]? = nil) -> [UInt8] {
        bigEndianBytes(0x801) + bigEndianBytes(count) + (labels ?? labelBytes)
    }

    func test_load_plain_scalesPixelsAndReadsLabels() throws {
        let files = try TestFiles(self)
        let images = try files.write("train-images-idx3-ubyte", imagesFile())
        let labels = try files.write("train-labels-idx1-ubyte", labelsFile())
        let data = try DataSource.idx(images: images, labels: labels).loadTrain()
        XCTAssertEqual(data.rowCount, 3)
        XCTAssertEqual(data.featureCount, 4)
        XCTAssertEqual(data.features, pixels.map { Float($0) / 255 })
        XCTAssertEqual(data.features[1], 1)
        XCTAssertEqual(data.labels, [7, 0, 3])
        XCTAssertEqual(data.classCount, 8)
    }

    /// IDX pixels are kept as bytes and converted as rows are read: every byte value, through every way of reading
    /// a row, gives bitwise the float the formula `Float(byte) / 255` gives (a float-stored copy, too).
    func test_bytePixels_everyValueAndEveryReadingPath_areBitwiseTheFormula() throws {
        let files = try TestFiles(self)
        // 64 images of 2x2 = 256 pixels: every byte value once, in a scrambled order.
        let all = (0..<256).map { UInt8(($0 * 97 + 13) % 256) }
        let images = try files.write("i", imagesFile(count: 64, pixels: all))
        let labels = try files.write("l", labelsFile(count: 64, labels: (0..<64).map { UInt8($0 % 10) }))
        let data = try DataSource.idx(images: images, labels: labels).loadTrain()
        let expected = all.map { Float($0) / 255 }
        XCTAssertEqual(data.features.map(\.bitPattern), expected.map(\.bitPattern))
        for row in [0, 17, 63] {
            for column in 0..<4 {
                XCTAssertEqual(data.feature(row: row, column: column).bitPattern, expected[row * 4 + column].bitPattern)
            }
        }
        let floats = data.storingFloats()
        XCTAssertEqual(floats, data)
        let rows = [63, 0, 17, 17, 5]
        for source in [data, floats] {
            var features = [Float](repeating: .nan, count: rows.count * 4)
            var gathered = [Float](repeating: .nan, count: rows.count)
            features.withUnsafeMutableBufferPointer { f in
                gathered.withUnsafeMutableBufferPointer { l in source.gather(rows: rows, into: f, labels: l) }
            }
            XCTAssertEqual(
                features.map(\.bitPattern), rows.flatMap { expected[($0 * 4)..<($0 * 4 + 4)] }.map(\.bitPattern))
            XCTAssertEqual(gathered, rows.map { Float($0 % 10) })
        }
    }

    /// An IDX file with no images is an empty data set: gathering no rows from it writes nothing.
    func test_noImages_gatherOfNoRows_writesNothing() throws {
        let files = try TestFiles(self)
        let images = try files.write("i", imagesFile(count: 0, pixels: []))
        let labels = try files.write("l", labelsFile(count: 0, labels: []))
        let data = try DataSource.idx(images: images, labels: labels).loadTrain()
        XCTAssertEqual(data.rowCount, 0)
        XCTAssertEqual(data.features, [])
        var features: [Float] = [1]
        var gathered: [Float] = [1]
        features.withUnsafeMutableBufferPointer { f in
            gathered.withUnsafeMutableBufferPointer { l in data.gather(rows: [Int](), into: f, labels: l) }
        }
        XCTAssertEqual(features, [1])
        XCTAssertEqual(gathered, [1])
    }

    func test_load_gzip_matchesPlain() throws {
        let files = try TestFiles(self)
        let images = try files.write("i", imagesFile())
        let labels = try files.write("l", labelsFile())
        let plain = try DataSource.idx(images: images, labels: labels).loadTrain()
        let zippedImages = try files.gzip(try files.write("zi", imagesFile()))
        let zippedLabels = try files.gzip(try files.write("zl", labelsFile()))
        let zipped = try DataSource.idx(images: zippedImages, labels: zippedLabels).loadTrain()
        XCTAssertEqual(zipped.features, plain.features)
        XCTAssertEqual(zipped.labels, plain.labels)
    }

    func test_load_largeGzip_growsItsBuffer() throws {
        let files = try TestFiles(self)
        let count = 3000
        let manyPixels = [UInt8](repeating: 0, count: count * 4)  // compresses more than 4:1
        let images = try files.gzip(try files.write("i", imagesFile(count: UInt32(count), pixels: manyPixels)))
        let labels = try files.write("l", labelsFile(count: UInt32(count), labels: [UInt8](repeating: 1, count: count)))
        let data = try DataSource.idx(images: images, labels: labels).loadTrain()
        XCTAssertEqual(data.rowCount, count)
        XCTAssertEqual(data.classCount, 2)
    }

    func test_load_truncatedPixels_saysHowManyBytes() throws {
        let files = try TestFiles(self)
        let images = try files.write("i", imagesFile(pixels: Array(pixels.prefix(10))))
        let labels = try files.write("l", labelsFile())
        let error = dataError { () throws(DataError) in try DataSource.idx(images: images, labels: labels).loadTrain() }
        XCTAssertEqual(
            error,
            DataError(
                file: images, location: "byte offset 16",
                message: "expected 12 bytes of pixels after the 16-byte header, found 10"))
    }

    func test_load_truncatedLabels_saysHowManyBytes() throws {
        let files = try TestFiles(self)
        let images = try files.write("i", imagesFile())
        let labels = try files.write("l", labelsFile(labels: [1, 2]))
        let error = dataError { () throws(DataError) in try DataSource.idx(images: images, labels: labels).loadTrain() }
        XCTAssertEqual(
            error,
            DataError(
                file: labels, location: "byte offset 8",
                message: "expected 3 bytes of labels after the 8-byte header, found 2"))
    }

    func test_load_truncatedHeader_isRejected() throws {
        let files = try TestFiles(self)
        let images = try files.write("i", Array(imagesFile().prefix(12)))
        let labels = try files.write("l", labelsFile())
        let error = dataError { () throws(DataError) in try DataSource.idx(images: images, labels: labels).loadTrain() }
        XCTAssertEqual(
            error,
            DataError(
                file: images, location: "byte offset 12",
                message: "truncated header: an IDX images header is 16 bytes, found 12"))
    }

    func test_load_badMagic_namesBothMagics() throws {
        let files = try TestFiles(self)
        let images = try files.write("i", imagesFile())
        let error = dataError { () throws(DataError) in try DataSource.idx(images: images, labels: images).loadTrain() }
        XCTAssertEqual(
            error,
            DataError(
                file: images, location: "byte offset 0",
                message: "bad IDX magic 0x00000803, expected 0x00000801 (labels)"))
    }

    func test_load_countMismatch_isRejected() throws {
        let files = try TestFiles(self)
        let images = try files.write("i", imagesFile())
        let labels = try files.write("l", labelsFile(count: 2, labels: [1, 2]))
        let error = dataError { () throws(DataError) in try DataSource.idx(images: images, labels: labels).loadTrain() }
        XCTAssertEqual(error, DataError(file: labels, message: "2 labels but \(images) holds 3 images"))
    }

    func test_load_truncatedGzip_isRejected() throws {
        let files = try TestFiles(self)
        let zipped = try files.gzip(
            try files.write("i", imagesFile(count: 500, pixels: (0..<2000).map { UInt8($0 % 251) })))
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: zipped)))
        let truncated = try files.write("cut.gz", Array(bytes.prefix(bytes.count / 2)))
        let labels = try files.write("l", labelsFile())
        let error = dataError { () throws(DataError) in
            try DataSource.idx(images: truncated, labels: labels).loadTrain()
        }
        XCTAssertEqual(error?.file, truncated)
        XCTAssertEqual(error?.message, "the gzip stream is truncated")
    }

    func test_loadTest_t10kCompanion_isFound() throws {
        let files = try TestFiles(self)
        let images = try files.write("train-images-idx3-ubyte", imagesFile())
        let labels = try files.write("train-labels-idx1-ubyte", labelsFile())
        try files.write("t10k-images-idx3-ubyte", imagesFile(count: 1, pixels: [9, 9, 9, 9]))
        try files.write("t10k-labels-idx1-ubyte", labelsFile(count: 1, labels: [9]))
        let (train, test) = try DataSource.idx(images: images, labels: labels).loadSplits()
        XCTAssertEqual(test?.rowCount, 1)
        XCTAssertEqual(train.classCount, 10, "the test split's label 9 widens both class counts")
        XCTAssertEqual(test?.classCount, 10)
    }
}

final class NPYSourceTests: XCTestCase {
    func test_load_float32FeaturesInt64Labels() throws {
        let files = try TestFiles(self)
        let features = try files.write(
            "x.npy", npyBytes(descr: "<f4", shape: [3, 2], payload: float32Bytes([1, 2, 3, 4, 5, 6])))
        try files.write("x.labels.npy", npyBytes(descr: "<i8", shape: [3], payload: int64Bytes([0, 2, 1])))
        let data = try DataSource(parsing: features).loadTrain()
        XCTAssertEqual(data.rowCount, 3)
        XCTAssertEqual(data.featureCount, 2)
        XCTAssertEqual(data.features, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(data.labels, [0, 2, 1])
        XCTAssertEqual(data.classCount, 3)
    }

    func test_load_columnLabels_andRegressionTargets() throws {
        let files = try TestFiles(self)
        let features = try files.write("x.npy", npyBytes(descr: "<f4", shape: [2, 1], payload: float32Bytes([1, 2])))
        let labels = try files.write("y.npy", npyBytes(descr: "<f4", shape: [2, 1], payload: float32Bytes([0.5, 1])))
        let data = try DataSource(parsing: "npy:\(features),\(labels)").loadTrain()
        XCTAssertEqual(data.labels, [0.5, 1])
        XCTAssertEqual(data.classCount, 0)
    }

    func test_load_fortranOrder_isRejectedWithTheFile() throws {
        let files = try TestFiles(self)
        let features = try files.write(
            "x.npy", npyBytes(descr: "<f4", shape: [1, 2], fortranOrder: true, payload: float32Bytes([1, 2])))
        let labels = try files.write("y.npy", npyBytes(descr: "<f4", shape: [1], payload: float32Bytes([1])))
        let error = dataError { () throws(DataError) in
            try DataSource.npy(features: features, labels: labels).loadTrain()
        }
        XCTAssertEqual(
            error, DataError(file: features, message: "fortran_order arrays are not supported; save with C order"))
    }

    func test_load_truncated_namesTheFile() throws {
        let files = try TestFiles(self)
        let features = try files.write("x.npy", npyBytes(descr: "<f4", shape: [2, 2], payload: float32Bytes([1, 2])))
        let labels = try files.write("y.npy", npyBytes(descr: "<f4", shape: [2], payload: float32Bytes([1, 0])))
        let error = dataError { () throws(DataError) in
            try DataSource.npy(features: features, labels: labels).loadTrain()
        }
        XCTAssertEqual(error?.file, features)
        XCTAssertEqual(error?.message, "data is 8 bytes but shape [2, 2] of <f4 needs 16 bytes (truncated)")
    }

    func test_load_rowCountMismatch_isRejected() throws {
        let files = try TestFiles(self)
        let features = try files.write("x.npy", npyBytes(descr: "<f4", shape: [2, 1], payload: float32Bytes([1, 2])))
        let labels = try files.write("y.npy", npyBytes(descr: "<f4", shape: [1], payload: float32Bytes([1])))
        let error = dataError { () throws(DataError) in
            try DataSource.npy(features: features, labels: labels).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: labels, message: "1 labels but \(features) holds 2 rows"))
    }

    func test_load_oneDimensionalFeatures_isRejected() throws {
        let files = try TestFiles(self)
        let features = try files.write("x.npy", npyBytes(descr: "<f4", shape: [2], payload: float32Bytes([1, 2])))
        let labels = try files.write("y.npy", npyBytes(descr: "<f4", shape: [2], payload: float32Bytes([1, 2])))
        let error = dataError { () throws(DataError) in
            try DataSource.npy(features: features, labels: labels).loadTrain()
        }
        XCTAssertEqual(
            error, DataError(file: features, message: "features must be 2-d [rows][features], found shape [2]"))
    }

    func test_load_missingLabels_namesPath() throws {
        let files = try TestFiles(self)
        let features = try files.write("x.npy", npyBytes(descr: "<f4", shape: [1, 1], payload: float32Bytes([1])))
        let error = dataError { () throws(DataError) in try DataSource(parsing: features).loadTrain() }
        XCTAssertEqual(error, DataError(file: files.directory + "/x.labels.npy", message: "no such file"))
    }
}

final class BundledDataTests: XCTestCase {
    func test_digits_loadsTheBundledCopy() throws {
        let (train, test) = try DataSource.digits.loadSplits()
        XCTAssertEqual(train.rowCount, 1347)
        XCTAssertEqual(train.featureCount, 64)
        XCTAssertEqual(train.classCount, 10)
        XCTAssertEqual(test?.rowCount, 450)
        XCTAssertEqual(test?.featureCount, 64)
        XCTAssertEqual(test?.classCount, 10)
        for data in [train, test].compactMap({ $0 }) {
            XCTAssertTrue(data.features.allSatisfy { $0 >= 0 && $0 <= 1 })
            XCTAssertEqual(data.features.max(), 1)
            XCTAssertEqual(Set(data.labels), Set((0..<10).map(Float.init)))
            XCTAssertNoThrow(try data.requireClassification(classCount: 10))
        }
        XCTAssertEqual(try DataSource.digits.loadTest(), test)
    }

    func test_digitsCandidates_startWithPSDataDir() throws {
        setenv("PS_DATA_DIR", "/nonexistent-ps-data", 1)
        defer { unsetenv("PS_DATA_DIR") }
        let candidates = BundledDigits.candidateDirectories()
        XCTAssertEqual(candidates.first, "/nonexistent-ps-data/digits")
        XCTAssertEqual(candidates.last, "/usr/share/swiftps/digits")
        XCTAssertTrue(try BundledDigits.directory().hasSuffix(".resources/digits"))
    }

    func test_fashionMNIST_ifInstalled() throws {
        let directory = DataSource.defaultFashionMNISTDirectory
        guard FileManager.default.fileExists(atPath: directory + "/train-images-idx3-ubyte.gz") else {
            throw XCTSkip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        }
        let (train, test) = try DataSource(parsing: "fashion-mnist").loadSplits()
        XCTAssertEqual(train.rowCount, 60000)
        XCTAssertEqual(train.featureCount, 784)
        XCTAssertEqual(train.classCount, 10)
        XCTAssertEqual(test?.rowCount, 10000)
        XCTAssertEqual(test?.featureCount, 784)
        XCTAssertEqual(train.features.min(), 0)
        XCTAssertEqual(train.features.max(), 1)
    }

    func test_fashionMNIST_missing_saysHowToInstall() throws {
        let files = try TestFiles(self)
        let error = dataError { () throws(DataError) in
            try DataSource.fashionMNIST(directory: files.directory).loadTrain()
        }
        XCTAssertEqual(error?.file, files.directory)
        XCTAssertEqual(
            error?.message,
            "Fashion-MNIST not found (no train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz); "
                + "install with `apt-get install dataset-fashion-mnist`")
    }
}
