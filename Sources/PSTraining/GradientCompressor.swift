import PSWire

/// A worker's gradient compression for exchanges, as the job's `compression` says, with top-k's error feedback.
///
/// fp16 and bf16 round every value (to nearest even) and keep nothing. Top-k adds the residual (what earlier steps
/// did not send) to the new gradient, sends the largest-magnitude `fraction` of each shard of that sum as
/// (index, value) pairs, and keeps the rest as the next residual, so that the values sent plus the residual always
/// equal the sum of the raw gradients: nothing is lost, only delayed. The residual lives in this worker process
/// only: a restarted worker starts with none, and a worker that reconnects drops it (`dropResidual`), since a
/// restored job rolls back past it and a lost connection leaves unknown whether the last gradient was taken.
///
/// ```swift
/// let compressor = GradientCompressor(setting: .topK(fraction: 0.01), elementCount: layout.totalElements)
/// let body = compressor.compress(gradient, shards: [layout.range(ofShard: 0), layout.range(ofShard: 1)])
/// // send `body` in an exchange whose prefix has encoding .topK and count 2 shards' elements
/// ```
public final class GradientCompressor {
    /// How gradients are compressed.
    public let setting: CompressionSetting
    /// Top-k's error-feedback residual over the flat parameter vector (all zeros for fp16 and bf16).
    public private(set) var residual: [Float]

    /// A compressor for a model of `elementCount` flat elements.
    public init(setting: CompressionSetting, elementCount: Int) {
        precondition(setting != .none, "an uncompressed job needs no compressor")
        self.setting = setting
        self.residual = [Float](repeating: 0, count: elementCount)
    }

    /// Zeroes the residual (a worker does after reconnecting); returns whether it held anything.
    @discardableResult
    public func dropResidual() -> Bool {
        guard residual.contains(where: { $0 != 0 }) else { return false }
        residual.withUnsafeMutableBufferPointer { $0.initialize(repeating: 0) }
        return true
    }

    /// The wire encoding of this compressor's bodies.
    public var encoding: GradientEncoding { setting.encoding }

    /// The compressed body of the gradient over `shards` (flat element ranges, consecutive, in shard order: one
    /// server's run of shards), as `GradientCodec.decode` reads it. Top-k updates the residual of those elements.
    public func compress(_ gradient: UnsafeBufferPointer<Float>, shards: [Range<Int>]) -> [UInt8] {
        guard let first = shards.first, let last = shards.last else { return [] }
        let elements = first.lowerBound..<last.upperBound
        switch setting {
        case .none:
            preconditionFailure("an uncompressed job needs no compressor")
        case .fp16, .bf16:
            var body = [UInt8](repeating: 0, count: 2 * elements.count)
            body.withUnsafeMutableBytes { bytes in
                GradientCodec.encodeHalf(encoding, UnsafeBufferPointer(rebasing: gradient[elements]), into: bytes)
            }
            return body
        case .topK(let fraction):
            let counts = shards.map { CompressionSetting.topKCount(fraction: fraction, elements: $0.count) }
            var body = [UInt8](repeating: 0, count: counts.reduce(0) { $0 + GradientCodec.topKEntrySize(k: $1) })
            residual.withUnsafeMutableBufferPointer { residual in
                body.withUnsafeMutableBytes { bytes in
                    var offset = 0
                    for (shard, k) in zip(shards, counts) {
                        // The residual becomes the sum to compress: earlier steps' unsent values plus this gradient.
                        for index in shard { residual[index] += gradient[index] }
                        let sum = UnsafeMutableBufferPointer(rebasing: residual[shard])
                        let indices = GradientCodec.topKIndices(UnsafeBufferPointer(sum), k: k)
                        bytes.storeBytes(of: UInt32(k).littleEndian, toByteOffset: offset, as: UInt32.self)
                        let values = offset + 4 + 4 * k
                        for (entry, index) in indices.enumerated() {
                            let position = Int(index)
                            bytes.storeBytes(
                                of: index.littleEndian, toByteOffset: offset + 4 + 4 * entry, as: UInt32.self)
                            bytes.storeBytes(
                                of: sum[position].bitPattern.littleEndian, toByteOffset: values + 4 * entry,
                                as: UInt32.self)
                            sum[position] = 0  // sent: no longer owed
                        }
                        offset = values + 4 * k
                    }
                }
            }
            return body
        }
    }
}

/// Bytes a worker moved in its exchanges, pushes and pulls (payload after the prefixes), for benchmarks and logs.
///
/// ```swift
/// try worker.run()
/// let perStep = Double(worker.traffic.gradientBytes) / Double(max(worker.traffic.steps, 1))
/// ```
public struct WorkerTraffic: Sendable, Equatable {
    /// Gradient bytes sent, as they travelled (after compression).
    public var gradientBytes: UInt64 = 0
    /// Weight bytes received.
    public var weightBytes: UInt64 = 0
    /// Steps whose gradient was sent.
    public var steps: UInt64 = 0
    /// Scale-out: exchanges sent to a server before the backward pass had finished the rest of the gradient.
    public var earlyExchanges: UInt64 = 0

    public init() {}
}
