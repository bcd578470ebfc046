import Foundation
import PSMath
import PSModel
import XCTest

final class ModelSpecTests: XCTestCase {
    func test_parameters_softmax_areZeroWeightAndBias() {
        let spec = ModelSpec(kind: .softmax, inputCount: 64, outputCount: 10, seed: 1)
        XCTAssertEqual(
            spec.parameters,
            [
                ParameterSpec(name: "fc1.weight", shape: [64, 10], initializer: .zeros),
                ParameterSpec(name: "fc1.bias", shape: [10], initializer: .zeros),
            ])
        XCTAssertEqual(spec.parameterCount, 650)
        XCTAssertEqual(spec.initialParameters(), [Float](repeating: 0, count: 650))
    }

    func test_parameters_linear_haveOneOutput() {
        let spec = ModelSpec(kind: .linear, inputCount: 3, outputCount: 1)
        XCTAssertEqual(spec.parameters.map(\.name), ["fc1.weight", "fc1.bias"])
        XCTAssertEqual(spec.parameters.map(\.shape), [[3, 1], [1]])
        XCTAssertEqual(spec.parameterCount, 4)
    }

    func test_parameters_mlp_useGlorotWithSeedTimes1000PlusLayer() {
        let spec = ModelSpec(kind: .mlp(hidden: [6, 4]), inputCount: 5, outputCount: 3, seed: 7)
        XCTAssertEqual(
            spec.parameters,
            [
                ParameterSpec(name: "fc1.weight", shape: [5, 6], initializer: .glorotUniform(seed: 7001)),
                ParameterSpec(name: "fc1.bias", shape: [6], initializer: .zeros),
                ParameterSpec(name: "fc2.weight", shape: [6, 4], initializer: .glorotUniform(seed: 7002)),
                ParameterSpec(name: "fc2.bias", shape: [4], initializer: .zeros),
                ParameterSpec(name: "fc3.weight", shape: [4, 3], initializer: .glorotUniform(seed: 7003)),
                ParameterSpec(name: "fc3.bias", shape: [3], initializer: .zeros),
            ])
        XCTAssertEqual(spec.parameterCount, 5 * 6 + 6 + 6 * 4 + 4 + 4 * 3 + 3)
        XCTAssertEqual(spec.parameters.reduce(0) { $0 + $1.elementCount }, spec.parameterCount)
        let values = spec.initialParameters()
        XCTAssertEqual(values.count, spec.parameterCount)
        XCTAssertEqual(Array(values[0..<30]), Initializer.glorotUniform(seed: 7001).values(shape: [5, 6]))
        XCTAssertEqual(Array(values[30..<36]), [Float](repeating: 0, count: 6))
        XCTAssertEqual(Array(values[36..<60]), Initializer.glorotUniform(seed: 7002).values(shape: [6, 4]))
    }

    func test_initialParameters_modelSeed0Layer1_startFromTheReadmeDraws() {
        // Generator state 0 * 1000 + 1 = 1 gives the README's u = 0.56656158, 0.74578176, 0.97100275.
        let spec = ModelSpec(kind: .mlp(hidden: [128]), inputCount: 64, outputCount: 10, seed: 0)
        let values = spec.initialParameters()
        let limit = (6.0 / Double(64 + 128)).squareRoot()
        for (i, u) in [0.56656158, 0.74578176, 0.97100275].enumerated() {
            XCTAssertEqual(Double(values[i]), (2 * u - 1) * limit, accuracy: 1e-7)
        }
    }

    func test_validate_badWidths_throw() {
        XCTAssertNoThrow(try ModelSpec(kind: .softmax, inputCount: 64, outputCount: 10).validate())
        XCTAssertThrowsError(try ModelSpec(kind: .softmax, inputCount: 0, outputCount: 10).validate()) { error in
            XCTAssertEqual("\(error)", "model softmax needs at least one input feature, got 0")
        }
        XCTAssertThrowsError(try ModelSpec(kind: .linear, inputCount: 3, outputCount: 2).validate()) { error in
            XCTAssertEqual("\(error)", "model linear has exactly one output (a regression target), got 2")
        }
        XCTAssertThrowsError(try ModelSpec(kind: .mlp(hidden: []), inputCount: 3, outputCount: 2).validate())
        XCTAssertThrowsError(try ModelSpec(kind: .mlp(hidden: [4]), inputCount: 3, outputCount: 0).validate())
    }

    func test_codable_roundTrips() throws {
        let spec = ModelSpec(kind: .mlp(hidden: [6, 4]), inputCount: 5, outputCount: 3, seed: 9)
        XCTAssertEqual(try JSONDecoder().decode(ModelSpec.self, from: JSONEncoder().encode(spec)), spec)
    }

    func test_validate_parameterCountOverflowing_throwsInsteadOfTrapping() {
        let huge = ModelSpec(kind: .mlp(hidden: [Int.max / 2, Int.max / 2]), inputCount: 64, outputCount: 10)
        XCTAssertThrowsError(try huge.validate()) { error in
            XCTAssertTrue("\(error)".contains("more than \(ModelSpec.maxParameterCount) parameters"), "\(error)")
        }
        XCTAssertThrowsError(try ModelSpec(kind: .softmax, inputCount: 1 << 20, outputCount: 1 << 12).validate())
        XCTAssertThrowsError(try ModelSpec(kind: .softmax, inputCount: Int.max, outputCount: 10).validate())
        XCTAssertNoThrow(try ModelSpec(kind: .mlp(hidden: [4096, 4096]), inputCount: 784, outputCount: 10).validate())
    }
}
