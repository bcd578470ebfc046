/// What to do with a push computed from weights older than the bound allows.
public enum StalePolicy: String, Codable, Sendable, CaseIterable {
    /// Refuse the push; the worker is told and pulls fresh weights.
    case drop
    /// Apply the push with its learning rate divided by (staleness + 1).
    case scale
}

/// The decision for one push in a non-BSP mode.
public enum StaleDecision: Sendable, Equatable {
    /// Apply the push as it is.
    case apply
    /// Apply the push with the learning rate multiplied by `scale` (= 1 / (staleness + 1)).
    case applyScaled(scale: Float, staleness: UInt64)
    /// Discard the push; its gradient is `staleness` versions old.
    case drop(staleness: UInt64)
}

/// The stale-gradient bound (`--max-gradient-staleness k`, `--stale-policy drop|scale`).
///
/// A push carries the shard version its gradient was computed from; its staleness is the shard's current version
/// minus that base (0 when the base is not older). With policy `drop` a push staler than k is dropped; with `scale`
/// its learning rate is divided by (staleness + 1). Without a bound, `drop` never drops and `scale` scales every
/// push whose staleness is above 0.
public struct StalenessRule: Sendable, Equatable {
    /// The largest staleness applied unchanged; nil for no bound.
    public let maxStaleness: UInt64?
    /// What happens to a push beyond the bound.
    public let policy: StalePolicy

    /// The rule the flags `--max-gradient-staleness k` and `--stale-policy` give: without k, `scale` scales every
    /// stale push (bound 0) and `drop` drops none.
    public init(maxGradientStaleness: UInt64?, policy: StalePolicy) {
        self.init(maxStaleness: maxGradientStaleness ?? (policy == .scale ? 0 : nil), policy: policy)
    }

    /// Creates a rule; `maxStaleness` nil means no bound.
    public init(maxStaleness: UInt64?, policy: StalePolicy) {
        self.maxStaleness = maxStaleness
        self.policy = policy
    }

    /// `currentVersion - baseVersion`, or 0 when the base is not older than the current version.
    public static func staleness(currentVersion: UInt64, baseVersion: UInt64) -> UInt64 {
        currentVersion > baseVersion ? currentVersion - baseVersion : 0
    }

    /// Decides what to do with a push computed from `baseVersion` arriving at a shard at `currentVersion`.
    public func decide(currentVersion: UInt64, baseVersion: UInt64) -> StaleDecision {
        let staleness = Self.staleness(currentVersion: currentVersion, baseVersion: baseVersion)
        switch policy {
        case .drop:
            guard let maxStaleness, staleness > maxStaleness else { return .apply }
            return .drop(staleness: staleness)
        case .scale:
            guard staleness > (maxStaleness ?? 0) else { return .apply }
            return .applyScaled(scale: 1 / (Float(staleness) + 1), staleness: staleness)
        }
    }
}
