import Foundation
import PSMath
import XCTest

final class InitializerTests: XCTestCase {
    func test_glorotUniform_seed1_firstValuesFollowTheReadmeFormula() {
        let shape = [64, 10]
        let values = Initializer.glorotUniform(seed: 1).values(shape: shape)
        let limit = (6.0 / Double(64 + 10)).squareRoot()
        let firstU = [0.56656158, 0.74578176, 0.97100275]
        for (i, u) in firstU.enumerated() {
            XCTAssertEqual(Double(values[i]), (2 * u - 1) * limit, accuracy: 1e-7, "element \(i)")
        }
        var generator = SplitMix64(seed: 1)
        for i in values.indices {
            let expected = Float((2 * generator.nextUnitDouble() - 1) * limit)
            XCTAssertEqual(values[i], expected, "element \(i) is rounded once from the float64 value")
        }
    }

    func test_glorotUniform_fans_useFirstDimensionAndTheProductOfTheRest() {
        let threeD = Initializer.glorotUniform(seed: 9).values(shape: [4, 3, 2])
        let flat = Initializer.glorotUniform(seed: 9).values(shape: [4, 6])
        XCTAssertEqual(threeD, flat)
        let vector = Initializer.glorotUniform(seed: 9).values(shape: [5])
        let limit = Float((6.0 / 10.0).squareRoot())
        XCTAssertTrue(vector.allSatisfy { abs($0) <= limit })
        let square = Initializer.glorotUniform(seed: 9).values(shape: [5, 5])
        XCTAssertEqual(vector, Array(square.prefix(5)), "a 1-D tensor of n uses fanIn = fanOut = n")
    }

    func test_zerosAndConstant_fillEveryElement() {
        XCTAssertEqual(Initializer.zeros.values(shape: [2, 3]), [Float](repeating: 0, count: 6))
        XCTAssertEqual(Initializer.constant(2.5).values(shape: [3]), [2.5, 2.5, 2.5])
        XCTAssertEqual(Initializer.constant(1).values(shape: []), [1], "a scalar has one element")
        XCTAssertEqual(Initializer.constant(1).values(shape: [0, 4]), [])
    }

    func test_uniform_staysInRangeAndIsReproducible() {
        let values = Initializer.uniform(low: -2, high: 3, seed: 5).values(shape: [1000])
        XCTAssertTrue(values.allSatisfy { $0 >= -2 && $0 <= 3 })
        XCTAssertEqual(values, Initializer.uniform(low: -2, high: 3, seed: 5).values(shape: [1000]))
        XCTAssertNotEqual(values, Initializer.uniform(low: -2, high: 3, seed: 6).values(shape: [1000]))
        var generator = SplitMix64(seed: 5)
        XCTAssertEqual(values[0], Float(-2 + 5 * generator.nextUnitDouble()))
    }

    func test_normal_hasTheRequestedMeanAndStandardDeviation() {
        let count = 4001  // odd: the last element uses only the cosine half of its pair
        let values = Initializer.normal(mean: 1.5, std: 0.5, seed: 11).values(shape: [count])
        let mean = values.reduce(0.0) { $0 + Double($1) } / Double(count)
        let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(count)
        XCTAssertEqual(mean, 1.5, accuracy: 0.03)
        XCTAssertEqual(variance.squareRoot(), 0.5, accuracy: 0.03)
        XCTAssertTrue(values.allSatisfy(\.isFinite))
        var generator = SplitMix64(seed: 11)
        let radius = (-2 * log(1 - generator.nextUnitDouble())).squareRoot()
        let angle = 2 * Double.pi * generator.nextUnitDouble()
        XCTAssertEqual(values[0], Float(1.5 + 0.5 * radius * cos(angle)))
        XCTAssertEqual(values[1], Float(1.5 + 0.5 * radius * sin(angle)))
    }

    func test_codable_roundTripsEveryCase() throws {
        let cases: [Initializer] = [
            .zeros, .constant(0.5), .uniform(low: -1, high: 1, seed: 3), .normal(mean: 0, std: 0.1, seed: 4),
            .glorotUniform(seed: 1001),
        ]
        let decoded = try JSONDecoder().decode([Initializer].self, from: JSONEncoder().encode(cases))
        XCTAssertEqual(decoded, cases)
    }
}
