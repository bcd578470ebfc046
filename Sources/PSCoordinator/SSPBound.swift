/// The stale-synchronous bound: how far ahead of the slowest live worker a worker may run.
///
/// A worker at clock c (about to compute step c) may start only when `min_j clock_j >= c - S` over the live
/// workers (Ho et al. 2013). S = 0 keeps every worker in lock step (like BSP, but not bitwise); `UInt64.max`
/// means asynchronous: nobody ever waits.
public struct SSPBound: Sendable, Equatable {
    /// The bound S, in steps; `UInt64.max` means no bound.
    public let staleness: UInt64

    /// The bound for asynchronous training: no worker ever waits.
    public static let asynchronous = SSPBound(staleness: .max)

    /// Creates a bound of `staleness` steps (`UInt64.max`: asynchronous).
    public init(staleness: UInt64) {
        self.staleness = staleness
    }

    /// True when a worker may start `step`: the slowest live worker's clock is at least `step - S` (saturating
    /// at 0). Always true when asynchronous or when no worker is live; dead and departed workers are ignored.
    public func mayStart(step: UInt64, membership: Membership) -> Bool {
        guard staleness != .max, let slowest = membership.minLiveClock else { return true }
        return slowest >= (step > staleness ? step - staleness : 0)
    }
}
