/// A part of one tensor held by one shard: which tensor, where in the tensor, where in the shard.
public struct ShardPiece: Sendable, Equatable, Codable {
    /// The tensor's index in registration order.
    public var tensorIndex: Int
    /// The elements of the tensor (flat, row-major) this piece covers.
    public var tensorRange: Range<Int>
    /// Where those elements sit in the shard's own flat buffer.
    public var shardRange: Range<Int>

    /// Creates a piece from its parts.
    public init(tensorIndex: Int, tensorRange: Range<Int>, shardRange: Range<Int>) {
        self.tensorIndex = tensorIndex
        self.tensorRange = tensorRange
        self.shardRange = shardRange
    }
}

/// Which elements of the model each shard owns; server and workers compute the same layout from the same inputs.
///
/// All tensors, each flattened row-major, are concatenated in registration order into one vector of
/// N = `totalElements` elements. With S shards, shard s owns the flat range [s*N/S, (s+1)*N/S) (integer division):
/// contiguous, balanced within one element, every element in exactly one shard. A shard may hold pieces of several
/// tensors, and a tensor may span several shards; with S > N some shards are empty.
/// See proto-docs/protocol.md, "Shard layout".
public struct ShardLayout: Sendable, Equatable, Codable {
    /// The number of shards.
    public let shardCount: Int
    /// The sum of all tensors' elements.
    public let totalElements: Int
    /// The number of elements of each tensor, in registration order.
    public let tensorElementCounts: [Int]
    /// The flat offset of each tensor in the concatenation.
    public let tensorOffsets: [Int]

    /// Lays out tensors of the given element counts over `shardCount` shards.
    public init(tensorElementCounts: [Int], shardCount: Int) {
        precondition(shardCount >= 1, "a layout needs at least one shard, got \(shardCount)")
        var offsets: [Int] = []
        offsets.reserveCapacity(tensorElementCounts.count)
        var total = 0
        for count in tensorElementCounts {
            precondition(count >= 0, "a tensor's element count is never negative, got \(count)")
            offsets.append(total)
            total += count
        }
        self.shardCount = shardCount
        self.totalElements = total
        self.tensorElementCounts = tensorElementCounts
        self.tensorOffsets = offsets
    }

    /// Lays out the tensors of a registration over `shardCount` shards.
    public init(tensors: [TensorSpec], shardCount: Int) {
        self.init(tensorElementCounts: tensors.map(\.elementCount), shardCount: shardCount)
    }

    /// The flat range of shard `s`: [s*N/S, (s+1)*N/S).
    public func range(ofShard s: Int) -> Range<Int> {
        precondition(s >= 0 && s < shardCount, "shard \(s) is outside 0..<\(shardCount)")
        return boundary(s)..<boundary(s + 1)
    }

    /// The flat range a contiguous run of shards covers (a scale-out server's part of the model).
    public func range(ofShards shards: Range<Int>) -> Range<Int> {
        precondition(!shards.isEmpty, "an empty run of shards")
        return range(ofShard: shards.lowerBound).lowerBound..<range(ofShard: shards.upperBound - 1).upperBound
    }

    /// The number of elements shard `s` owns.
    public func elementCount(ofShard s: Int) -> Int {
        range(ofShard: s).count
    }

    /// The shard owning flat element `index` (0 <= index < totalElements).
    public func shard(ofElement index: Int) -> Int {
        precondition(index >= 0 && index < totalElements, "element \(index) is outside 0..<\(totalElements)")
        // boundary(s) <= index < boundary(s + 1) holds for s = floor(((index + 1) * S - 1) / N).
        let (high, low) = (index + 1).multipliedFullWidth(by: shardCount)
        let decremented = (high: low == 0 ? high - 1 : high, low: low &- 1)
        return totalElements.dividingFullWidth(decremented).quotient
    }

    /// The pieces of each tensor that shard s holds: (tensor index, range within the tensor, range within the shard).
    ///
    /// Pieces come in tensor order and tile the shard's range; empty tensors contribute no piece.
    public func pieces(ofShard s: Int) -> [ShardPiece] {
        let flat = range(ofShard: s)
        guard !flat.isEmpty else { return [] }
        var tensor = lastTensor(startingAtOrBefore: flat.lowerBound)
        var pieces: [ShardPiece] = []
        while tensor < tensorOffsets.count, tensorOffsets[tensor] < flat.upperBound {
            let tensorStart = tensorOffsets[tensor]
            let overlap =
                max(flat.lowerBound, tensorStart)..<min(flat.upperBound, tensorStart + tensorElementCounts[tensor])
            if !overlap.isEmpty {
                pieces.append(
                    ShardPiece(
                        tensorIndex: tensor,
                        tensorRange: (overlap.lowerBound - tensorStart)..<(overlap.upperBound - tensorStart),
                        shardRange: (overlap.lowerBound - flat.lowerBound)..<(overlap.upperBound - flat.lowerBound)
                    )
                )
            }
            tensor += 1
        }
        return pieces
    }

    /// s*N/S without overflowing for any N.
    private func boundary(_ s: Int) -> Int {
        let (high, low) = s.multipliedFullWidth(by: totalElements)
        return shardCount.dividingFullWidth((high: high, low: low)).quotient
    }

    /// The last tensor whose offset is <= `flatIndex` (binary search), or 0 if there are no tensors.
    private func lastTensor(startingAtOrBefore flatIndex: Int) -> Int {
        var low = 0
        var high = tensorOffsets.count
        while high - low > 1 {
            let middle = (low + high) / 2
            if tensorOffsets[middle] <= flatIndex { low = middle } else { high = middle }
        }
        return low
    }

    private enum CodingKeys: String, CodingKey {
        case tensorElementCounts
        case shardCount
    }

    /// Decodes the two inputs and recomputes the layout; throws instead of trapping on invalid input.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let counts = try container.decode([Int].self, forKey: .tensorElementCounts)
        let shards = try container.decode(Int.self, forKey: .shardCount)
        guard shards >= 1 else {
            throw DecodingError.dataCorruptedError(
                forKey: .shardCount,
                in: container,
                debugDescription: "shardCount must be at least 1, got \(shards)"
            )
        }
        var total = 0
        for count in counts {
            let (sum, overflow) = total.addingReportingOverflow(count)
            guard count >= 0, !overflow else {
                throw DecodingError.dataCorruptedError(
                    forKey: .tensorElementCounts,
                    in: container,
                    debugDescription: "element counts must be non-negative and sum to at most \(Int.max)"
                )
            }
            total = sum
        }
        self.init(tensorElementCounts: counts, shardCount: shards)
    }

    /// Encodes the two inputs the layout is computed from.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tensorElementCounts, forKey: .tensorElementCounts)
        try container.encode(shardCount, forKey: .shardCount)
    }
}
