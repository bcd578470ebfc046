#if canImport(Glibc)
    import Glibc
#endif

/// A value guarded by a `pthread_mutex_t`, with a condition variable on the same mutex for threads that wait
/// for the value to change.
///
/// This is the one lock type of the package, in the shape of swift-nio's `NIOLockedValueBox` and
/// `ConditionLock`. It wraps the pthread calls (and not `Synchronization.Mutex`, a bare futex on Linux) so that
/// ThreadSanitizer sees every acquire and release. The condition runs on `CLOCK_MONOTONIC`, so a wait's deadline
/// is immune to wall-clock jumps.
///
/// The value lives in memory of its own, reached through a pointer rather than a stored property: a class's
/// `var` costs a dynamic exclusivity check (`swift_beginAccess`, about 80 instructions) on every access, and the
/// lock already makes the accesses exclusive. Give it a value that means something (a count, a flag), never
/// `Void`: a lock that guards nothing is a lock in the wrong place.
///
/// Rules for callers: a closure passed to `withLock` or `wait` does arithmetic or a copy on the value and
/// returns; it never sends, receives, logs or writes a file, and never takes another `LockedValue`'s lock unless
/// the types involved document the order.
public final class LockedValue<Value>: @unchecked Sendable {
    // @unchecked Sendable: `storage.pointee` is read and written only while `mutex` is held; the pointers never
    // change.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let storage: UnsafeMutablePointer<Value>

    /// Wraps `value`; the lock and the condition are created here (`pthread_mutex_init`, `pthread_cond_init`), in
    /// one allocation, with attributes built once per process.
    public init(_ value: Value) {
        storage = .allocate(capacity: 1)
        storage.initialize(to: value)
        let primitives = UnsafeMutableRawPointer.allocate(
            byteCount: Self.conditionOffset + MemoryLayout<pthread_cond_t>.size,
            alignment: max(MemoryLayout<pthread_mutex_t>.alignment, MemoryLayout<pthread_cond_t>.alignment))
        mutex = primitives.bindMemory(to: pthread_mutex_t.self, capacity: 1)
        condition = (primitives + Self.conditionOffset).bindMemory(to: pthread_cond_t.self, capacity: 1)
        let mutexResult = withUnsafePointer(to: LockAttributes.mutex) { pthread_mutex_init(mutex, $0) }
        precondition(mutexResult == 0, "pthread_mutex_init failed: \(mutexResult)")
        let conditionResult = withUnsafePointer(to: LockAttributes.condition) { pthread_cond_init(condition, $0) }
        precondition(conditionResult == 0, "pthread_cond_init failed: \(conditionResult)")
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        UnsafeMutableRawPointer(mutex).deallocate()  // the one allocation that also holds `condition`
        storage.deinitialize(count: 1)
        storage.deallocate()
    }

    /// Where the condition starts in the allocation it shares with the mutex.
    private static var conditionOffset: Int {
        let alignment = MemoryLayout<pthread_cond_t>.alignment
        return (MemoryLayout<pthread_mutex_t>.size + alignment - 1) / alignment * alignment
    }

    /// Runs `body` with exclusive access to the value and returns its result.
    @inlinable
    public func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        lock()
        defer { unlock() }
        return try body(&valueStorage)
    }

    /// Runs `body` like `withLock`, then wakes every thread waiting in `wait(until:while:_:)` so it re-checks
    /// its condition. Use it for every change that a waiter may be waiting for.
    ///
    /// The wake-up comes right after the unlock, not before it: a waiter woken while the lock was still held ran
    /// on another core only to block on the mutex (a futex wait, and a wake from the unlock). No wake-up is lost:
    /// a waiter that checked its condition before the change was already waiting when the lock was released,
    /// and one that checks after it sees the change.
    @inlinable
    public func withLockAndBroadcast<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        lock()
        defer {
            unlock()
            pthread_cond_broadcast(conditionPointer)
        }
        return try body(&valueStorage)
    }

    /// Runs `body` like `withLock`, then wakes the waiting threads only if `key(value)` changed. For a value whose
    /// waiters' conditions read nothing but what `key` returns: a change they cannot see wakes nobody, instead of
    /// every waiter waking to find its condition unchanged and sleeping again. The wake-up follows the unlock, as
    /// in `withLockAndBroadcast`.
    @inlinable
    public func withLock<Result, Key: Equatable>(
        broadcastingChangesOf key: (Value) -> Key, _ body: (inout Value) -> Result
    ) -> Result {
        lock()
        let before = key(valueStorage)
        let result = body(&valueStorage)
        let changed = key(valueStorage) != before
        unlock()
        if changed { pthread_cond_broadcast(conditionPointer) }
        return result
    }

    /// Wakes every waiting thread without changing the value (a waiter's condition depends on something else,
    /// such as a peer hanging up).
    public func broadcast() {
        // The lock is taken and released first so that a waiter between its check and its wait is waiting by the
        // time the wake-up comes.
        lock()
        unlock()
        pthread_cond_broadcast(condition)
    }

    /// Blocks while `isBlocked(value)` holds and the deadline has not passed, then runs `body` under the same
    /// lock acquisition and returns its result.
    ///
    /// - Parameters:
    ///   - deadline: a `MonotonicClock` reading in nanoseconds; nil waits until woken with the condition false.
    ///   - isBlocked: checked under the lock, first before any wait and again after every wake-up.
    ///   - body: runs under the lock; its second argument is `true` when the deadline passed with `isBlocked`
    ///     still holding.
    public func wait<Result>(
        until deadline: UInt64?, while isBlocked: (Value) -> Bool,
        _ body: (inout Value, _ timedOut: Bool) -> Result
    ) -> Result {
        lock()
        defer { unlock() }
        var timedOut = false
        while isBlocked(storage.pointee) {
            guard let deadline else {
                pthread_cond_wait(condition, mutex)
                continue
            }
            if MonotonicClock.nanoseconds() >= deadline {
                timedOut = true
                break
            }
            var time = timespec(
                tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            _ = pthread_cond_timedwait(condition, mutex, &time)
        }
        return body(&storage.pointee, timedOut)
    }

    /// Blocks while `isBlocked(value)` holds, until the deadline; returns true when the condition cleared and
    /// false when the deadline passed first.
    @discardableResult
    public func wait(until deadline: UInt64?, while isBlocked: (Value) -> Bool) -> Bool {
        wait(until: deadline, while: isBlocked) { _, timedOut in !timedOut }
    }

    // MARK: Raw access for the inlinable wrappers

    @usableFromInline
    func lock() {
        let result = pthread_mutex_lock(mutex)
        precondition(result == 0, "pthread_mutex_lock failed: \(result)")
    }

    @usableFromInline
    func unlock() {
        let result = pthread_mutex_unlock(mutex)
        precondition(result == 0, "pthread_mutex_unlock failed: \(result)")
    }

    @usableFromInline
    var conditionPointer: UnsafeMutablePointer<pthread_cond_t> { condition }

    @usableFromInline
    var valueStorage: Value {
        _read { yield storage.pointee }
        _modify { yield &storage.pointee }
    }
}

/// The attributes of every `LockedValue`'s mutex (error-checking: a relock by the owner or an unlock by another
/// thread fails, and the precondition stops the process, instead of hanging or corrupting it) and condition
/// (`CLOCK_MONOTONIC` deadlines), built once instead of once per lock.
private enum LockAttributes {
    static let mutex: pthread_mutexattr_t = {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ERRORCHECK))
        return attributes
    }()

    static let condition: pthread_condattr_t = {
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        return attributes
    }()
}

extension MonotonicClock {
    /// The `MonotonicClock` reading `seconds` from now, saturating instead of overflowing (for deadlines).
    public static func deadline(afterSeconds seconds: Double) -> UInt64 {
        let now = nanoseconds()
        guard seconds.isFinite, seconds > 0 else { return seconds > 0 ? UInt64.max : now }
        let delta = seconds * 1e9
        guard delta < Double(UInt64.max - now) else { return UInt64.max }
        return now + UInt64(delta)
    }
}
