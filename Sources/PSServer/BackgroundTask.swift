import Foundation
import PSPosix

/// Runs blocking work (file I/O) on a thread of its own and waits for its result with a deadline, so the caller's
/// thread neither does the I/O itself nor waits forever.
enum BackgroundTask {
    /// Runs `work` on a new thread named `name`; returns its result, or nil when `seconds` passed first (the work
    /// then finishes in the background and its result is dropped).
    static func run<Result: Sendable>(
        name: String, seconds: Double, _ work: @escaping @Sendable () -> Result
    ) -> Result? {
        let outcome = LockedValue<Result?>(nil)
        let thread = Thread {
            let result = work()
            outcome.withLockAndBroadcast { $0 = result }
        }
        thread.name = name
        thread.start()
        return outcome.wait(until: MonotonicClock.deadline(afterSeconds: seconds), while: { $0 == nil }) { value, _ in
            value
        }
    }
}
