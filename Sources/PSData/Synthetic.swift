import Foundation
import PSMath

/// A synthetic classification problem: one gaussian blob per class around a random centroid.
///
/// The centroids come from splitmix64 seeded with `seed ^ centroidSalt` (each coordinate standard normal), so a
/// train split (rows drawn with `seed`) and a test split (rows drawn with `seed + 1`) share them. Row i has class
/// `i % classes` and features `centroid + noise * N(0, 1)` (Box-Muller). With `noise` 0.3 and equal covariances the
/// best classifier is linear; with a dozen features or more the classes barely overlap (10 classes, 16 features:
/// nearest-centroid test accuracy above 0.95). With very few features and many classes, centroids can collide.
enum Synthetic {
    static let centroidSalt: UInt64 = 0x5EED_C0DE_CE47_401D
    static let noise = 0.3
    static let maximumValues = 1 << 30

    /// Checks the sizes; the error names `spelling` as the file.
    static func validate(rows: Int, features: Int, classes: Int, spelling: String) throws(DataError) {
        guard rows >= 1 else { throw DataError(file: spelling, message: "ROWS must be at least 1, got \(rows)") }
        guard features >= 1 else {
            throw DataError(file: spelling, message: "FEATURES must be at least 1, got \(features)")
        }
        guard classes >= 2 else {
            throw DataError(file: spelling, message: "CLASSES must be at least 2, got \(classes)")
        }
        let (total, overflow) = rows.multipliedReportingOverflow(by: features)
        guard !overflow, total <= maximumValues else {
            throw DataError(
                file: spelling, message: "\(rows) rows x \(features) features is more than \(maximumValues) values")
        }
        // The centroids hold features x classes values.
        let (centroidValues, centroidOverflow) = features.multipliedReportingOverflow(by: classes)
        guard !centroidOverflow, centroidValues <= maximumValues else {
            throw DataError(
                file: spelling,
                message: "\(classes) classes x \(features) features is more than \(maximumValues) values")
        }
    }

    /// The class centroids, `[classes][features]`, for a seed.
    static func centroids(features: Int, classes: Int, seed: UInt64) -> [Double] {
        var generator = SplitMix64(seed: seed ^ centroidSalt)
        return (0..<(features * classes)).map { _ in standardNormal(&generator) }
    }

    /// Generates `rows` rows around the centroids of `seed`, drawing the noise from `rowSeed`.
    static func make(rows: Int, features: Int, classes: Int, seed: UInt64, rowSeed: UInt64, name: String) -> Dataset {
        let centers = centroids(features: features, classes: classes, seed: seed)
        var generator = SplitMix64(seed: rowSeed)
        var values = [Float](repeating: 0, count: rows * features)
        var labels = [Float](repeating: 0, count: rows)
        for row in 0..<rows {
            let label = row % classes
            labels[row] = Float(label)
            for feature in 0..<features {
                values[row * features + feature] = Float(
                    centers[label * features + feature] + noise * standardNormal(&generator))
            }
        }
        return Dataset(name: name, featureCount: features, features: values, labels: labels, classCount: classes)
    }

    /// A standard normal deviate by Box-Muller from two uniforms (the cosine branch only).
    static func standardNormal(_ generator: inout SplitMix64) -> Double {
        let u1 = 1 - generator.nextUnitDouble()  // in (0, 1]: log is finite
        let u2 = generator.nextUnitDouble()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}
