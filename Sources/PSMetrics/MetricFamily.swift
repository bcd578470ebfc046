/// One Prometheus metric family: a name, its help text, its type and its samples.
///
/// Names follow the Prometheus conventions: a `swiftps_` prefix, base units in the name (`_seconds`, `_bytes`),
/// `_total` on counters. A histogram's samples are its `_bucket`, `_sum` and `_count` series, which
/// ``histogram(_:help:labels:_:)`` builds from a ``Histogram``.
public struct MetricFamily: Sendable, Equatable {
    /// The exposition format's metric types.
    public enum Kind: String, Sendable, Equatable {
        case counter, gauge, histogram, untyped
    }

    /// One sample line: the family name plus `suffix`, its labels and its value.
    public struct Sample: Sendable, Equatable {
        public var suffix: String
        public var labels: [Label]
        public var value: Double

        public init(suffix: String = "", labels: [Label] = [], value: Double) {
            self.suffix = suffix
            self.labels = labels
            self.value = value
        }
    }

    /// A label pair, in the order written.
    public struct Label: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public var name: String
    public var help: String
    public var kind: Kind
    public var samples: [Sample]

    public init(name: String, help: String, kind: Kind, samples: [Sample]) {
        self.name = name
        self.help = help
        self.kind = kind
        self.samples = samples
    }

    /// A counter with one unlabelled sample.
    public static func counter(_ name: String, help: String, _ value: Double) -> MetricFamily {
        MetricFamily(name: name, help: help, kind: .counter, samples: [Sample(value: value)])
    }

    /// A gauge with one unlabelled sample.
    public static func gauge(_ name: String, help: String, _ value: Double) -> MetricFamily {
        MetricFamily(name: name, help: help, kind: .gauge, samples: [Sample(value: value)])
    }

    /// A histogram family from one histogram (or several, each with its own labels).
    public static func histogram(_ name: String, help: String, labels: [Label] = [], _ histogram: Histogram)
        -> MetricFamily
    {
        MetricFamily(name: name, help: help, kind: .histogram, samples: histogram.samples(labels: labels))
    }
}

/// A cumulative histogram: fixed upper bounds, a count per bucket, the sum and the count of observations.
///
/// A value type: the server keeps one under a lock and copies it out to format.
public struct Histogram: Sendable, Equatable {
    /// Upper bounds, increasing; the `+Inf` bucket is implicit.
    public let bounds: [Double]
    /// Observations per bucket (not cumulative); the last entry is the `+Inf` bucket.
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(bounds: [Double]) {
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "histogram bounds must increase")
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count + 1)
    }

    /// Exponential bounds `start, start*factor, …` (`count` of them).
    public static func exponentialBounds(start: Double, factor: Double, count: Int) -> [Double] {
        (0..<count).map { start * pow(factor, Double($0)) }
    }

    public mutating func observe(_ value: Double) {
        let index = bounds.firstIndex { value <= $0 } ?? bounds.count
        counts[index] += 1
        sum += value
        count += 1
    }

    /// The `_bucket{le=…}` (cumulative), `_sum` and `_count` samples.
    public func samples(labels: [MetricFamily.Label] = []) -> [MetricFamily.Sample] {
        var result: [MetricFamily.Sample] = []
        var cumulative: UInt64 = 0
        for (index, bound) in (bounds + [.infinity]).enumerated() {
            cumulative += counts[index]
            result.append(
                MetricFamily.Sample(
                    suffix: "_bucket", labels: labels + [MetricFamily.Label("le", PrometheusText.number(bound))],
                    value: Double(cumulative)))
        }
        result.append(MetricFamily.Sample(suffix: "_sum", labels: labels, value: sum))
        result.append(MetricFamily.Sample(suffix: "_count", labels: labels, value: Double(count)))
        return result
    }
}

private func pow(_ base: Double, _ exponent: Double) -> Double {
    var result = 1.0
    for _ in 0..<Int(exponent) { result *= base }
    return result
}
