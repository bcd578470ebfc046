import Foundation
import PSCheckpoint

/// A pair of `.npy` files: features `[rows][features]` and labels `[rows]` (or `[rows][1]`).
enum NPYSource {
    /// Reads both files through PSCheckpoint's reader and checks that their shapes agree.
    static func load(features featuresPath: String, labels labelsPath: String) throws(DataError) -> Dataset {
        let features = try read(featuresPath)
        let labels = try read(labelsPath)
        guard features.shape.count == 2 else {
            throw DataError(
                file: featuresPath, message: "features must be 2-d [rows][features], found shape \(features.shape)")
        }
        guard features.shape[1] > 0 else {
            throw DataError(file: featuresPath, message: "shape \(features.shape) has no features")
        }
        guard labels.shape.count == 1 || (labels.shape.count == 2 && labels.shape[1] == 1) else {
            throw DataError(file: labelsPath, message: "labels must be 1-d [rows], found shape \(labels.shape)")
        }
        guard labels.shape[0] == features.shape[0] else {
            throw DataError(
                file: labelsPath,
                message: "\(labels.shape[0]) labels but \(featuresPath) holds \(features.shape[0]) rows")
        }
        for (index, value) in features.values.enumerated() where !value.isFinite {
            throw DataError(
                file: featuresPath, location: "row \(index / features.shape[1])",
                message: "feature \(index % features.shape[1]) is \(value)")
        }
        for (row, value) in labels.values.enumerated() where !value.isFinite {
            throw DataError(file: labelsPath, location: "row \(row)", message: "label is \(value)")
        }
        return Dataset(
            name: featuresPath, featureCount: features.shape[1], features: features.values, labels: labels.values,
            classCount: Dataset.inferredClassCount(labels: labels.values))
    }

    private static func read(_ path: String) throws(DataError) -> NPYArray {
        guard FileManager.default.fileExists(atPath: path) else { throw DataError(file: path, message: "no such file") }
        do {
            return try NPY.read(path: path)
        } catch {
            throw DataError(file: error.file, message: error.message)
        }
    }
}

/// scikit-learn's digits (UCI optdigits, pixel / 16), bundled as raw little-endian float32 and int32 files.
///
/// ```swift
/// let train = try DataSource.digits.loadTrain()   // these files: 1347 rows x BundledDigits.featureCount (64)
/// ```
public enum BundledDigits {
    /// Pixels per image (8 x 8).
    public static let featureCount = 64

    /// Every directory searched for the `digits` resource, in order.
    ///
    /// `$PS_DATA_DIR/digits`; `SwiftPS_PSData.resources/digits` (then any `*.resources/digits`) next to the
    /// executable; the same next to the test bundle and in its parent (under `swift test` the `.xctest` lives in
    /// `.build/debug/`); `/usr/share/swiftps/digits`. `Bundle.module` is not used: it stops the process when the
    /// bundle is missing.
    public static func candidateDirectories() -> [String] {
        var roots: [URL] = []
        if let executable = Bundle.main.executableURL {
            roots.append(executable.deletingLastPathComponent())
            roots.append(executable.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        if let argument = CommandLine.arguments.first, argument.contains("/") {
            let url = URL(fileURLWithPath: argument)
            roots.append(url.deletingLastPathComponent())
            roots.append(url.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        let bundle = Bundle.main.bundleURL
        roots.append(bundle.deletingLastPathComponent())
        roots.append(bundle.deletingLastPathComponent().deletingLastPathComponent())
        roots.append(bundle)
        var candidates: [String] = []
        if let dataDirectory = ProcessInfo.processInfo.environment["PS_DATA_DIR"], !dataDirectory.isEmpty {
            candidates.append(URL(fileURLWithPath: dataDirectory).appendingPathComponent("digits").path)
        }
        for root in roots {
            candidates.append(root.appendingPathComponent("SwiftPS_PSData.resources/digits").path)
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
            for entry in entries.sorted() where entry.hasSuffix(".resources") && entry != "SwiftPS_PSData.resources" {
                candidates.append(root.appendingPathComponent(entry).appendingPathComponent("digits").path)
            }
        }
        candidates.append("/usr/share/swiftps/digits")
        var seen = Set<String>()
        return candidates.filter { seen.insert($0).inserted }
    }

    /// The first candidate directory that holds `digits_train.f32`, or an error listing every place searched.
    public static func directory() throws(DataError) -> String {
        let candidates = candidateDirectories()
        for candidate in candidates
        where FileManager.default.fileExists(atPath: candidate + "/digits_train.f32") {
            return candidate
        }
        throw DataError(
            file: "digits",
            message: "the bundled digits data set was not found; searched "
                + candidates.joined(separator: ", ") + " (set PS_DATA_DIR to a directory holding digits/)")
    }

    /// Loads `digits_<split>.f32` and `digits_<split>.labels.i32` (split `train` or `test`).
    static func load(split: String) throws(DataError) -> Dataset {
        let directory = try directory()
        let featuresPath = "\(directory)/digits_\(split).f32"
        let labelsPath = "\(directory)/digits_\(split).labels.i32"
        let pixelBytes = try FileBytes.read(featuresPath)
        let labelBytes = try FileBytes.read(labelsPath)
        let rowBytes = featureCount * 4
        guard pixelBytes.count % rowBytes == 0 else {
            throw DataError(
                file: featuresPath, message: "\(pixelBytes.count) bytes is not a whole number of \(rowBytes)-byte rows")
        }
        let rowCount = pixelBytes.count / rowBytes
        guard labelBytes.count == rowCount * 4 else {
            throw DataError(
                file: labelsPath, message: "\(labelBytes.count / 4) labels but \(featuresPath) holds \(rowCount) rows")
        }
        let features = littleEndianValues(pixelBytes) { Float(bitPattern: $0) }
        let labels = littleEndianValues(labelBytes) { Float(Int32(bitPattern: $0)) }
        for (row, label) in labels.enumerated() where !Dataset.isClassIndex(label) {
            throw DataError(file: labelsPath, location: "row \(row)", message: "label \(label) is not a class index")
        }
        return Dataset(
            name: featuresPath, featureCount: featureCount, features: features, labels: labels,
            classCount: Dataset.inferredClassCount(labels: labels))
    }

    private static func littleEndianValues(_ bytes: [UInt8], _ convert: (UInt32) -> Float) -> [Float] {
        var values = [Float](repeating: 0, count: bytes.count / 4)
        bytes.withUnsafeBytes { raw in
            for i in 0..<values.count {
                values[i] = convert(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
            }
        }
        return values
    }
}
