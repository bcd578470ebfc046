import Foundation
import PSPosix

// pstsan-probe: a test-only executable that proves ThreadSanitizer is live in a sanitized build.
//
//   pstsan-probe race     two threads increment a counter with no synchronization: a ThreadSanitizer build
//                         reports "ThreadSanitizer: data race" on stderr and exits 66; a plain build exits 0
//   pstsan-probe locked   the same counter under a `LockedValue`: every build runs clean and exits 0
//
// Tests/PSPosixTests/ThreadSanitizerTests.swift runs it; `make tsan` sets PS_TSAN=1 so those tests require the
// report instead of skipping.
#if canImport(Glibc)
    import Glibc
#endif

let incrementsPerThread = 10_000

let guardedCounter = LockedValue(0)

/// Runs `body` on two pthreads at once, passing each `argument`, and joins both.
func runOnTwoThreads(
    argument: UnsafeMutableRawPointer? = nil,
    _ body: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?
) {
    var threads: [pthread_t] = []
    for _ in 0..<2 {
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, body, argument)
        precondition(result == 0, "pthread_create failed: \(result)")
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}

let mode = CommandLine.arguments.dropFirst().first ?? ""
switch mode {
case "race":
    // Deliberately unsynchronized. A plain load then a plain store (no `+=`, whose in-place access the sanitizer
    // reports as a "Swift access race"), so the report is a "data race".
    let unguardedCounter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    unguardedCounter.initialize(to: 0)
    runOnTwoThreads(argument: UnsafeMutableRawPointer(unguardedCounter)) { argument in
        let counter = argument!.assumingMemoryBound(to: Int.self)
        for _ in 0..<incrementsPerThread { counter.pointee = counter.pointee + 1 }
        return nil
    }
    print("race: counter \(unguardedCounter.pointee) (at most \(2 * incrementsPerThread))")
case "locked":
    runOnTwoThreads { _ in
        for _ in 0..<incrementsPerThread { guardedCounter.withLock { $0 += 1 } }
        return nil
    }
    let total = guardedCounter.withLock { $0 }
    print("locked: counter \(total)")
    exit(total == 2 * incrementsPerThread ? 0 : 1)
default:
    FileHandle.standardError.write(Data("usage: pstsan-probe race|locked\n".utf8))
    exit(64)
}
