import Foundation
import PSPosix

/// Calls `condition` every `poll` until it returns true or `timeout` passes; returns whether it became true.
@discardableResult
public func waitUntil(
    timeout: Duration = .seconds(10),
    poll: Duration = .milliseconds(10),
    _ condition: () throws -> Bool
) rethrows -> Bool {
    let deadline = MonotonicClock.nanoseconds() + nanoseconds(timeout)
    while true {
        if try condition() {
            return true
        }
        if MonotonicClock.nanoseconds() >= deadline {
            return false
        }
        Thread.sleep(forTimeInterval: seconds(poll))
    }
}

/// Whether the tests run as root (effective uid 0), as tests that create network namespaces need.
public func requireRoot() -> Bool {
    Host.effectiveUserID() == 0
}

func nanoseconds(_ duration: Duration) -> UInt64 {
    let (seconds, attoseconds) = duration.components
    guard seconds >= 0 else { return 0 }
    return UInt64(seconds) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
}

func seconds(_ duration: Duration) -> Double {
    Double(nanoseconds(duration)) / 1e9
}

/// A Foundation `Thread` running `body` once, whose result the test collects with ``join(timeout:)``.
///
/// Use it for the blocking side of a socket test (a server accepting one connection), never the Dispatch pool.
public final class TestThread<Value: Sendable>: Sendable {
    private let outcome = LockedValue<Result<Value, any Error>?>(nil)

    /// Starts a thread named `name` that runs `body`.
    public init(name: String = "test-thread", _ body: @escaping @Sendable () throws -> Value) {
        let thread = Thread { [self] in
            let result = Result { try body() }
            self.outcome.withLockAndBroadcast { $0 = result }
        }
        thread.name = name
        thread.start()
    }

    /// Whether `body` has returned or thrown.
    public var isFinished: Bool {
        outcome.withLock { $0 != nil }
    }

    /// Waits for `body` to finish and returns its value or rethrows its error; throws if `timeout` passes first.
    public func join(timeout: Duration = .seconds(30)) throws -> Value {
        let deadline = MonotonicClock.nanoseconds() + nanoseconds(timeout)
        let result = outcome.wait(until: deadline, while: { $0 == nil }) { outcome, _ in outcome }
        guard let result else {
            throw TestSupportError("test thread did not finish within \(timeout)")
        }
        return try result.get()
    }
}
