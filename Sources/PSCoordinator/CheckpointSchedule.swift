/// When the server takes its next checkpoint: every N completed steps, every S seconds, or on request.
///
/// Steps are counted as completed steps (the clock): after the barrier's `.stepCompleted(t)` the shell passes
/// `t + 1`. Both intervals are measured from the last checkpoint taken (or from the start), so a checkpoint
/// that was due but not taken stays due.
public struct CheckpointSchedule: Sendable, Equatable {
    /// Take a checkpoint once this many steps have completed since the last one; nil: not by steps.
    public let everySteps: UInt64?
    /// Take a checkpoint once this many nanoseconds have passed since the last one; nil: not by time.
    public let everyNanos: UInt64?
    /// The completed-step count at the last checkpoint (or at the start).
    public private(set) var lastCheckpointStep: UInt64
    /// The time (nanoseconds) of the last checkpoint (or of the start).
    public private(set) var lastCheckpointNanos: UInt64
    /// True while an operator's request (`psctl checkpoint`) waits for the next boundary.
    public private(set) var isRequested = false
    /// When the pending request was made (nanoseconds); nil when none is pending.
    public private(set) var requestedAtNanos: UInt64?

    /// Creates a schedule starting at `startNanos` after `completedSteps` steps (0, or the restored step).
    ///
    /// `everySteps` must be at least 1 and `everySeconds` positive and finite (the caller validates the flags).
    public init(everySteps: UInt64?, everySeconds: Double?, startNanos: UInt64, completedSteps: UInt64 = 0) {
        precondition(everySteps.map { $0 >= 1 } ?? true, "CheckpointSchedule: everySteps must be at least 1")
        precondition(
            everySeconds.map { $0 > 0 && $0.isFinite } ?? true,
            "CheckpointSchedule: everySeconds must be positive and finite")
        self.everySteps = everySteps
        self.everyNanos = everySeconds.map { UInt64(min(($0 * 1e9).rounded(), Double(UInt64.max / 2))) }
        self.lastCheckpointStep = completedSteps
        self.lastCheckpointNanos = startNanos
    }

    /// True when a checkpoint is due at this boundary (`step` = completed steps): requested, or `everySteps` steps
    /// or `everySeconds` seconds since the last checkpoint. Call `onCheckpointTaken` once it is written.
    public mutating func onStepCompleted(step: UInt64, now: UInt64) -> Bool {
        isDue(step: step, now: now)
    }

    /// True when a checkpoint is due at `step` completed steps and time `now`; changes nothing.
    public func isDue(step: UInt64, now: UInt64) -> Bool {
        if isRequested { return true }
        if let everySteps, step >= lastCheckpointStep, step - lastCheckpointStep >= everySteps { return true }
        if let everyNanos, now >= lastCheckpointNanos, now - lastCheckpointNanos >= everyNanos { return true }
        return false
    }

    /// Records an operator's request: the next boundary takes a checkpoint (in SSP or async the shell takes it at
    /// once).
    public mutating func request(now: UInt64) {
        if !isRequested { requestedAtNanos = now }
        isRequested = true
    }

    /// Records a checkpoint taken after `step` completed steps at `now`: both intervals restart, the request is met.
    public mutating func onCheckpointTaken(step: UInt64, now: UInt64) {
        lastCheckpointStep = step
        lastCheckpointNanos = now
        isRequested = false
        requestedAtNanos = nil
    }
}
