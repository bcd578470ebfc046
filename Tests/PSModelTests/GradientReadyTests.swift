import Foundation
import PSMath
import PSModel
import XCTest

/// `TrainableModel.lossAndGradient(parameters:batch:gradient:ready:)`, the backward pass's report of finished
/// trailing parts of the gradient that a scale-out worker sends early: the parts it reports are final, it reads no
/// parameter in them afterwards, and the result is bitwise that of the plain call.
final class GradientReadyTests: XCTestCase {
    /// A model that implements only the plain `lossAndGradient`: it gets the protocol's default `ready`.
    private struct PlainModel: TrainableModel {
        let inner: ModelComputer
        var parameters: [ParameterSpec] { inner.parameters }
        func lossAndGradient(parameters: ParameterValues, batch: Batch, gradient: GradientValues) -> Double {
            inner.lossAndGradient(parameters: parameters, batch: batch, gradient: gradient)
        }
    }

    /// Checks the promise on one batch and returns the starts `ready` was called with.
    private func readyStarts(
        _ model: any TrainableModel, rows: Int, featureCount: Int, classes: Int,
        file: StaticString = #filePath, line: UInt = #line
    ) -> [Int] {
        let layout = TensorLayout(model.parameters)
        var generator = SplitMix64(seed: 17)
        let weights = model.parameters.flatMap { spec in
            spec.name.hasSuffix("bias")
                ? (0..<spec.elementCount).map { _ in Float(generator.nextUnitDouble() * 0.2 - 0.1) }
                : spec.initializer.values(shape: spec.shape)
        }
        let x = (0..<(rows * featureCount)).map { _ in Float(generator.nextUnitDouble()) }
        let y = (0..<rows).map { _ in Float(Int(generator.nextUnitDouble() * Double(classes))) }

        var reference = [Float](repeating: .nan, count: layout.totalCount)
        let referenceLoss = weights.withUnsafeBufferPointer { p in
            x.withUnsafeBufferPointer { f in
                y.withUnsafeBufferPointer { l in
                    reference.withUnsafeMutableBufferPointer { g in
                        model.lossAndGradient(
                            parameters: ParameterValues(flat: p, layout: layout),
                            batch: Batch(features: f, labels: l, rows: rows, featureCount: featureCount),
                            gradient: GradientValues(flat: g, layout: layout))
                    }
                }
            }
        }

        var overwritten = weights
        var gradient = [Float](repeating: .nan, count: layout.totalCount)
        var calls: [(start: Int, loss: Double, part: [UInt32])] = []
        let loss = overwritten.withUnsafeMutableBufferPointer { p in
            x.withUnsafeBufferPointer { f in
                y.withUnsafeBufferPointer { l in
                    gradient.withUnsafeMutableBufferPointer { g in
                        model.lossAndGradient(
                            parameters: ParameterValues(flat: UnsafeBufferPointer(p), layout: layout),
                            batch: Batch(features: f, labels: l, rows: rows, featureCount: featureCount),
                            gradient: GradientValues(flat: g, layout: layout)
                        ) { start, loss in
                            calls.append((start, loss, g[start...].map(\.bitPattern)))
                            // As a reply landing there would: the pass must not read these parameters any more.
                            for i in start..<p.count { p[i] = .nan }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(loss.bitPattern, referenceLoss.bitPattern, "loss", file: file, line: line)
        XCTAssertEqual(gradient.map(\.bitPattern), reference.map(\.bitPattern), "gradient", file: file, line: line)
        let starts = calls.map(\.start)
        XCTAssertEqual(starts.last, 0, "the last call is ready(0)", file: file, line: line)
        XCTAssertEqual(starts, starts.sorted(by: >), "starts only decrease", file: file, line: line)
        XCTAssertEqual(Set(starts).count, starts.count, "no start twice", file: file, line: line)
        for call in calls {
            XCTAssertEqual(call.loss.bitPattern, loss.bitPattern, "ready's loss", file: file, line: line)
            XCTAssertEqual(
                call.part, reference[call.start...].map(\.bitPattern), "part from \(call.start) was not final",
                file: file, line: line)
        }
        return starts
    }

    func test_mlp_reportsEachLayerFromTheLast_partsFinal_parametersNotReadAgain() {
        // Layers 6→5→4→3: weights and biases at 0..<35, 35..<59 and 59..<74.
        let spec = ModelSpec(kind: .mlp(hidden: [5, 4]), inputCount: 6, outputCount: 3, seed: 2)
        let model = ModelComputer(spec: spec, maxBatch: 9)
        XCTAssertEqual(readyStarts(model, rows: 9, featureCount: 6, classes: 3), [59, 35, 0])
        let softmax = ModelComputer(
            spec: ModelSpec(kind: .softmax, inputCount: 6, outputCount: 3, seed: 2), maxBatch: 9)
        XCTAssertEqual(readyStarts(softmax, rows: 9, featureCount: 6, classes: 3), [0])
    }

    func test_cnn_reportsBothDenseLayersBeforeTheConvolutions() throws {
        let geometry = try ConvNet.Geometry(
            height: 11, width: 11, channels: 1, channels1: 2, channels2: 3, hidden: 4, classes: 3)
        // Two images per chunk: the convolutions' gradients accumulate over chunks and are reported at the end.
        let model = ConvNet(geometry: geometry, seed: 4, maxBatch: 5, chunkRows: 2)
        let offsets = TensorLayout(model.parameters).offsets
        XCTAssertEqual(
            readyStarts(model, rows: 5, featureCount: geometry.inputCount, classes: 3), [offsets[6], offsets[4], 0])
    }

    func test_defaultImplementation_reportsOnlyTheWholeGradient() {
        let spec = ModelSpec(kind: .mlp(hidden: [5]), inputCount: 6, outputCount: 3, seed: 2)
        let model = PlainModel(inner: ModelComputer(spec: spec, maxBatch: 4))
        XCTAssertEqual(readyStarts(model, rows: 4, featureCount: 6, classes: 3), [0])
    }
}
