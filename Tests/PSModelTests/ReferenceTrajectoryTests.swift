import Foundation
import PSMath
import PSModel
import XCTest

/// Replays shared/reference/README.md: softmax regression on digits, SGD lr 0.1, B = 64, 10 epochs of 21 steps,
/// epoch e in the order splitmixPermutation(1347, seed: e); every step loss and the final W, b within 1e-5.
final class ReferenceTrajectoryTests: XCTestCase {
    /// `shared/`: `$PS_SHARED_DIR` if set, else `<package root>/../shared` (the package root is three levels above
    /// this file).
    private func sharedDirectory() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["PS_SHARED_DIR"] {
            return URL(fileURLWithPath: path)
        }
        let packageRoot = URL(fileURLWithPath: "\(#filePath)").deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
        guard FileManager.default.fileExists(atPath: shared.appendingPathComponent("reference").path) else {
            throw XCTSkip("no shared/ directory at \(shared.path) (set PS_SHARED_DIR to run this test)")
        }
        return shared
    }

    /// The file's little-endian 32- or 64-bit words.
    private func words<Word: FixedWidthInteger>(_ url: URL, as: Word.Type) throws -> [Word] {
        let data = try Data(contentsOf: url)
        let size = MemoryLayout<Word>.size
        XCTAssertEqual(data.count % size, 0, url.path)
        return data.withUnsafeBytes { raw in
            (0..<(data.count / size)).map {
                Word(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * size, as: Word.self))
            }
        }
    }

    func test_softmaxSGD_digitsB64_reproducesTheReferenceTrajectory() throws {
        let shared = try sharedDirectory()
        let digits = shared.appendingPathComponent("datasets/digits")
        let reference = shared.appendingPathComponent("reference")
        let (rowCount, featureCount, classCount, batch, epochs) = (1347, 64, 10, 64, 10)

        let features = try words(digits.appendingPathComponent("digits_train.f32"), as: UInt32.self)
            .map(Float.init(bitPattern:))
        let labels = try words(digits.appendingPathComponent("digits_train.labels.i32"), as: UInt32.self)
            .map { Float(Int32(bitPattern: $0)) }
        let stepLosses = try String(
            contentsOf: reference.appendingPathComponent("sync_ref_softmax_B64_steploss.txt"), encoding: .utf8
        )
        .split(whereSeparator: \.isNewline).compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        let finalParameters = try words(
            reference.appendingPathComponent("sync_final_params_softmax_B64.f64"), as: UInt64.self
        ).map(Double.init(bitPattern:))
        XCTAssertEqual(features.count, rowCount * featureCount)
        XCTAssertEqual(labels.count, rowCount)
        XCTAssertEqual(finalParameters.count, 650)
        let stepsPerEpoch = rowCount / batch
        XCTAssertEqual(stepLosses.count, stepsPerEpoch * epochs)
        guard features.count == rowCount * featureCount, labels.count == rowCount,
            stepLosses.count == stepsPerEpoch * epochs, finalParameters.count == 650
        else { return }

        let spec = ModelSpec(kind: .softmax, inputCount: featureCount, outputCount: classCount)
        let computer = ModelComputer(spec: spec, maxBatch: batch)
        try labels.withUnsafeBufferPointer { try computer.validate(labels: $0) }
        var optimizer = OptimizerState(config: OptimizerConfig(kind: .sgd, learningRate: 0.1), count: 650)
        var parameters = spec.initialParameters()
        var gradient = [Float](repeating: 0, count: 650)
        var batchFeatures = [Float](repeating: 0, count: batch * featureCount)
        var batchLabels = [Float](repeating: 0, count: batch)
        var maxLossError = 0.0
        for epoch in 0..<epochs {
            let order = splitmixPermutation(count: rowCount, seed: UInt64(epoch))
            for step in 0..<stepsPerEpoch {
                for (slot, row) in order[(step * batch)..<((step + 1) * batch)].enumerated() {
                    batchFeatures.replaceSubrange(
                        (slot * featureCount)..<((slot + 1) * featureCount),
                        with: features[(row * featureCount)..<((row + 1) * featureCount)])
                    batchLabels[slot] = labels[row]
                }
                let loss = parameters.withUnsafeBufferPointer { p in
                    batchFeatures.withUnsafeBufferPointer { x in
                        batchLabels.withUnsafeBufferPointer { y in
                            gradient.withUnsafeMutableBufferPointer { g in
                                computer.lossAndGradient(
                                    parameters: p, features: x, labels: y, rows: batch, gradient: g)
                            }
                        }
                    }
                }
                let t = epoch * stepsPerEpoch + step
                maxLossError = max(maxLossError, abs(loss - stepLosses[t]))
                XCTAssertEqual(loss, stepLosses[t], accuracy: 1e-5, "step \(t) loss")
                parameters.withUnsafeMutableBufferPointer { w in
                    gradient.withUnsafeMutableBufferPointer { optimizer.apply(weights: w, gradient: $0) }
                }
            }
        }
        var maxParameterError = 0.0
        for (value, expected) in zip(parameters, finalParameters) {
            maxParameterError = max(maxParameterError, abs(Double(value) - expected))
        }
        XCTAssertLessThanOrEqual(maxParameterError, 1e-5, "final W, b")
        print(
            "reference trajectory: max |step loss error| \(maxLossError), max |final parameter error| \(maxParameterError)"
        )
    }
}
